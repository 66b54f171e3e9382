"""``manage.py create_api_token USERNAME [--name N] [--scope read|write] [--expires-days D]``.

Prints the token's secret once, for provisioning integrations from a deploy script.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apm.errors import validation_text
from apm.models import ApiToken
from apm.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print its secret (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="What the token is for.")
        parser.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.WRITE)
        parser.add_argument(
            "--expires-days", type=int, default=None, help="Days until it expires (default: never)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {options['username']!r}.")
        days = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be a positive number of days.")
        expires_at = timezone.now() + datetime.timedelta(days=days) if days else None
        try:
            token, raw = api_token_create(
                user=user, name=options["name"], scope=options["scope"], expires_at=expires_at
            )
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        self.stdout.write(raw)
        self.stderr.write(
            f"Token {token.prefix}… ({token.scope}) for {user.get_username()}; "
            "store it now, it is not shown again."
        )
