"""Reads of the demo: how to log in to it."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password

from demo.data import ADMIN_ADDRESS, ADMIN_USERNAME, DEFAULT_PASSWORD


@dataclass(frozen=True)
class DemoLogin:
    """The demo admin login as far as it is known: a password is only shown when the account has it."""

    url: str
    username: str
    exists: bool
    can_log_in: bool
    password: str | None
    note: str


def demo_login(*, password_set: str | None = None, address: str = ADMIN_ADDRESS) -> DemoLogin:
    """The demo admin's login on the server at ``address``. ``password_set`` is a password written in
    this run (by ``seed_demo``).

    The password is shown when the account still has it: the one just set, or the demo password it was
    created with. Otherwise it is the owner's own, and not ours to print. Hashes are compared without
    upgrading them, so reading the login writes nothing.
    """
    url = f"http://{address}/admin/"
    admin = get_user_model().objects.filter(username=ADMIN_USERNAME).first()
    if admin is None:
        return DemoLogin(
            url=url,
            username=ADMIN_USERNAME,
            exists=False,
            can_log_in=False,
            password=None,
            note="no such account yet: `manage.py seed_demo` creates it",
        )
    if password_set is not None and check_password(password_set, admin.password):
        password, note = password_set, "set now"
    elif check_password(DEFAULT_PASSWORD, admin.password):
        password, note = DEFAULT_PASSWORD, "the demo password seed_demo set, unchanged since"
    else:
        password, note = (
            None,
            "the one you set (`manage.py seed_demo --reset-password` sets the demo one again)",
        )
    return DemoLogin(
        url=url,
        username=ADMIN_USERNAME,
        exists=True,
        can_log_in=admin.is_active and admin.is_staff,
        password=password,
        note=note,
    )
