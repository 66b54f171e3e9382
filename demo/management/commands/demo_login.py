"""``manage.py demo_login``: how to log in to the demo, printed last by ``make run`` so it stays on screen."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser, OutputWrapper
from django.core.management.color import Style

from demo.data import ADMIN_ADDRESS
from demo.selectors import DemoLogin, demo_login


def login_write(login: DemoLogin, *, stdout: OutputWrapper, style: Style) -> None:
    """The login block, shared with ``seed_demo``."""
    stdout.write(style.MIGRATE_HEADING("Admin login"))
    stdout.write(f"  Open:     {login.url.removesuffix('admin/')}  (the dashboard, after signing in)")
    stdout.write(f"  Admin:    {login.url}")
    stdout.write(f"  Username: {login.username}")
    if login.password is not None:
        stdout.write(f"  Password: {login.password}  ({login.note})")
    else:
        stdout.write(f"  Password: {login.note}")
    if login.exists and not login.can_log_in:
        stdout.write(
            style.WARNING(
                f"  '{login.username}' is inactive or not staff: "
                "`manage.py seed_demo --reset-password` makes it a working admin again."
            )
        )


class Command(BaseCommand):
    help = "Print the demo admin login: the URL, the username and, while the account has it, the password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--address",
            default=ADMIN_ADDRESS,
            help=f"host:port the server listens on (default {ADMIN_ADDRESS}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        login_write(demo_login(address=options["address"]), stdout=self.stdout, style=self.style)
