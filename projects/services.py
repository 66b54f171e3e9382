"""Writes to projects and memberships. Every entry point (admin, API, commands) goes through here."""

from __future__ import annotations

import datetime
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from apm.cache import PORTFOLIO_NAMESPACE, cache_invalidate, project_key
from apm.dates import days_validate
from apm.db import is_deadlock
from projects.models import Invitation, Membership, Project
from projects.workflow import GRAMMAR_FIELDS

# Fields a project update may change. The key is fixed once tasks are numbered under it.
# The commit grammar (repos.grammar): how commit messages move the project's tasks.
PROJECT_GRAMMAR_FIELDS = frozenset(GRAMMAR_FIELDS)
PROJECT_UPDATABLE_FIELDS = frozenset(
    {"name", "description", "status", "start_date", "target_date", *PROJECT_GRAMMAR_FIELDS}
)


def project_cache_invalidate(*, project_id: int) -> None:
    """Drop the cached views of one project and of the portfolio, once the change is committed.

    One generation bump for everything derived from the project (summary, charts, page fragments) and
    one for the portfolio, so no caller has to know which keys exist (apm.cache).
    """

    def invalidate() -> None:
        cache_invalidate(generations=[project_key(project_id), PORTFOLIO_NAMESPACE])

    transaction.on_commit(invalidate)


def project_key_suggest(*, name: str) -> str:
    """A free project key derived from ``name``: initials ("Test Project" -> "TP"), then TP2, TP3, ..."""
    words = re.findall(r"[A-Za-z][A-Za-z0-9]*", name)
    if len(words) >= 2:
        base = "".join(word[0] for word in words)[:8].upper()
    elif words:
        base = words[0][:4].upper()
    else:
        base = "PRJ"
    if len(base) < 2:
        base = (base + "PRJ")[:3]
    # Suffixed keys may shorten the base (see _key_with_suffix), so look at everything sharing its start.
    # All projects: one being deleted still holds its key until its row goes.
    taken = set(Project.all_objects.filter(key__startswith=base[:7]).values_list("key", flat=True))
    if base not in taken:
        return base
    suffix = 2
    while _key_with_suffix(base, suffix) in taken:
        suffix += 1
    return _key_with_suffix(base, suffix)


def _key_with_suffix(base: str, suffix: int) -> str:
    # The base gives way to the number, so keys stay within 10 characters and distinct.
    digits = str(suffix)
    return f"{base[: 10 - len(digits)]}{digits}"


def _project_validate(project: Project, *, exclude: list[str] | None = None) -> None:
    # full_clean checks field validators, choices, the key's uniqueness and the date constraint, and
    # reports each problem under its field name.
    _project_days_validate(project)
    project.full_clean(exclude=exclude)


def _project_days_validate(project: Project) -> None:
    # Here, not as model validators: those would need a migration of projects. Year 1 and 9999 fit the
    # column but not a plan (apm.dates).
    days_validate(start_date=project.start_date, target_date=project.target_date)


# Concurrent creations deriving the same key each lose at most once per winner: the loser's transaction
# is rolled back and it derives again, now seeing the winner's key.
_DERIVED_KEY_ATTEMPTS = 50


class _DerivedKeyTaken(Exception):
    pass


def project_create(
    *,
    name: str,
    key: str | None = None,
    owner: User | None = None,
    description: str = "",
    status: str = Project.Status.ACTIVE,
    start_date: datetime.date | None = None,
    target_date: datetime.date | None = None,
    **grammar: Any,
) -> Project:
    """Create a project, and make ``owner`` (when given) its first owner.

    ``grammar`` may set the commit grammar fields (``PROJECT_GRAMMAR_FIELDS``); the defaults otherwise.

    Without ``key`` one is derived from the name. Two concurrent creations with the same derived key
    cannot both win: the unique index decides, and the loser derives the next free key and tries again
    in a new transaction. A new transaction, not a savepoint: InnoDB keeps the locks a failed insert
    took until the transaction ends, and two losers retrying inside theirs deadlock each other.
    """
    unknown = set(grammar) - PROJECT_GRAMMAR_FIELDS
    if unknown:
        raise ValidationError({name: ["Not a field of a new project."] for name in sorted(unknown)})
    fields = {
        "name": name,
        "description": description,
        "status": status,
        "start_date": start_date,
        "target_date": target_date,
        **grammar,
    }
    retry_allowed = not transaction.get_connection().in_atomic_block
    for _attempt in range(1 if key is not None else _DERIVED_KEY_ATTEMPTS):
        try:
            with transaction.atomic():
                return _project_insert(key=key, owner=owner, fields=fields)
        except _DerivedKeyTaken:
            continue
        except OperationalError as exc:
            if not (retry_allowed and is_deadlock(exc)):
                raise
    raise ValidationError({"key": ["Could not find a free project key; give one explicitly."]})


def _project_insert(*, key: str | None, owner: User | None, fields: dict[str, Any]) -> Project:
    project = Project(key=key if key is not None else project_key_suggest(name=fields["name"]), **fields)
    # Field rules, choices and the date order; the key's uniqueness is left to the unique index, which
    # is the only check that holds under concurrent creations.
    _project_days_validate(project)
    project.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            project.save(force_insert=True)
    except IntegrityError as exc:
        if key is None and Project.all_objects.filter(key=project.key).exists():
            raise _DerivedKeyTaken from exc
        if Project.all_objects.filter(key=project.key, deleting_since__isnull=False).exists():
            # Hidden already, its rows still going in the background (projects.deletion).
            raise ValidationError(
                {"key": [f"Project {project.key} is being deleted; its key is free once that is over."]}
            ) from exc
        raise ValidationError({"key": [f"Project key {project.key} is already taken."]}) from exc
    if owner is not None:
        Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    project_cache_invalidate(project_id=project.pk)
    return project


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    """Change a project's name, description, status or dates."""
    unknown = set(fields) - PROJECT_UPDATABLE_FIELDS
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in sorted(unknown)})
    for name, value in fields.items():
        setattr(project, name, value)
    _project_validate(project)
    project.save(update_fields=[*fields, "updated_at"])
    project_cache_invalidate(project_id=project.pk)
    return project


@transaction.atomic
def membership_set(*, project: Project, user: User, role: str, may_change_owners: bool = True) -> Membership:
    """Give ``user`` the ``role`` in ``project``, adding or changing the membership.

    ``may_change_owners=False`` (a maintainer acting) refuses to make an owner or to change one: the
    check runs under the project's lock, so it holds against a concurrent promotion.
    """
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": [f"{role!r} is not a role; choose one of {', '.join(Membership.Role.values)}."]}
        )
    # Locking the project serialises membership changes, so the last-owner check below cannot race.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    membership = Membership.objects.filter(project=project, user=user).first()
    if not may_change_owners:
        _owner_change_refuse(role, membership.role if membership is not None else None)
    if membership is None:
        membership = Membership.objects.create(project=project, user=user, role=role)
    elif membership.role != role:
        if membership.role == Membership.Role.OWNER:
            _ensure_another_owner(project=project, user=user)
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    project_cache_invalidate(project_id=project.pk)
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user: User, may_change_owners: bool = True) -> None:
    """Remove ``user`` from ``project``; a project always keeps at least one owner."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        return
    if not may_change_owners:
        _owner_change_refuse(membership.role)
    if membership.role == Membership.Role.OWNER:
        _ensure_another_owner(project=project, user=user)
    membership.delete()
    project_cache_invalidate(project_id=project.pk)


def _owner_change_refuse(*roles: str | None) -> None:
    if Membership.Role.OWNER in roles:
        raise PermissionDenied("Only an owner can make someone an owner, or change or remove an owner.")


def _ensure_another_owner(*, project: Project, user: User) -> None:
    others = Membership.objects.filter(project=project, role=Membership.Role.OWNER).exclude(user=user)
    if not others.exists():
        raise ValidationError(
            {"role": [f"{user} is the last owner of {project.key}; add another owner first."]}
        )


def invitation_username_clean(username: str) -> str:
    """``username`` as accounts store it (NFKC, no surrounding spaces); a 400 unless it could be one.

    The check is on the spelling only, never on the accounts: a name no account has is invited alike.
    """
    cleaned = User.normalize_username(username.strip())
    if not cleaned:
        raise ValidationError({"username": ["This field may not be blank."]})
    try:
        UnicodeUsernameValidator()(cleaned)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from exc
    if len(cleaned) > Invitation._meta.get_field("username").max_length:  # type: ignore[operator]
        raise ValidationError({"username": ["A username has at most 150 characters."]})
    return cleaned


def invitation_validate(*, project: Project, username: str, role: str) -> str:
    """Raise ``ValidationError`` unless ``username`` may be invited to ``project`` as ``role``.

    Returns the username as stored. The same queries for every name: whether an account has it is
    never asked.
    """
    if role not in Membership.Role.values:
        raise ValidationError(
            {"role": [f"{role!r} is not a role; choose one of {', '.join(Membership.Role.values)}."]}
        )
    username = invitation_username_clean(username)
    # Members are listed to whoever may invite, so saying so tells them nothing new.
    if Membership.objects.filter(project=project, user__username=username).exists():
        raise ValidationError({"username": [f"{username} is already a member of {project.key}."]})
    return username


@transaction.atomic
def invitation_create(
    *, project: Project, username: str, role: str, invited_by: User | None
) -> tuple[Invitation, bool]:
    """Invite ``username`` to ``project`` with ``role``; they become a member when they accept.

    No account is looked up: the answer and the queries are the same whether the username has an account
    or not, so inviting tells the inviter nothing about the installation's users. Inviting a username
    again renews its one invitation (role, inviter, expiry) instead of adding another, so N identical
    invitations, concurrent ones included, are one pending invitation. Returns the invitation and
    whether it was pending already (a renewal).
    """
    # The project's lock serialises its invitations, so two identical ones meet the same row.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    username = invitation_validate(project=project, username=username, role=role)
    fields = {
        "role": role,
        "status": Invitation.Status.PENDING,
        "invited_by": invited_by,
        "expires_at": timezone.now() + datetime.timedelta(days=settings.APM_INVITATION_EXPIRY_DAYS),
        "responded_at": None,
    }
    invitation = Invitation.objects.filter(project=project, username=username).first()
    renewed = invitation is not None and invitation.status == Invitation.Status.PENDING
    if invitation is None:
        invitation = Invitation.objects.create(project=project, username=username, **fields)
    else:
        for name, value in fields.items():
            setattr(invitation, name, value)
        invitation.save(update_fields=[*fields, "updated_at"])
    return invitation, renewed


def invitation_is_open(invitation: Invitation) -> bool:
    """Pending and not expired: the invitee may still accept it."""
    return invitation.status == Invitation.Status.PENDING and invitation.expires_at > timezone.now()


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Make ``user``, the invitee, a member of the invitation's project with its role.

    Accepting twice, or twice at once, gives one membership: the invitation's row is locked and read
    again, and the second acceptance finds it accepted and returns the membership the first made. A
    user who is a member already keeps their role (an old invitation never demotes anyone).
    """
    if invitation.username != user.get_username():
        raise PermissionDenied("This invitation is for someone else.")
    # Lock order: the project, then the invitation (membership changes and invitations take the project's).
    Project.objects.select_for_update().filter(pk=invitation.project_id).first()
    locked = Invitation.objects.select_for_update().select_related("project").get(pk=invitation.pk)
    project = locked.project
    membership = Membership.objects.filter(project=project, user=user).first()
    if locked.status == Invitation.Status.ACCEPTED and membership is not None:
        return membership
    if locked.status != Invitation.Status.PENDING:
        raise ValidationError(
            {
                "non_field_errors": [
                    f"This invitation was {locked.status}; ask an owner of {project.key} again."
                ]
            }
        )
    if not invitation_is_open(locked):
        raise ValidationError(
            {
                "non_field_errors": [
                    f"This invitation expired on {locked.expires_at:%Y-%m-%d}; "
                    f"ask an owner of {project.key} for a new one."
                ]
            }
        )
    if membership is None:
        membership = Membership.objects.create(project=project, user=user, role=locked.role)
        project_cache_invalidate(project_id=project.pk)
    _invitation_close(locked, Invitation.Status.ACCEPTED)
    return membership


@transaction.atomic
def invitation_decline(*, invitation: Invitation, user: User) -> None:
    """Refuse the invitation. Declining again, or an invitation revoked meanwhile, changes nothing."""
    if invitation.username != user.get_username():
        raise PermissionDenied("This invitation is for someone else.")
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.status == Invitation.Status.ACCEPTED:
        raise ValidationError(
            {"non_field_errors": ["This invitation was accepted; leave the project instead."]}
        )
    if locked.status == Invitation.Status.PENDING:
        _invitation_close(locked, Invitation.Status.DECLINED)


@transaction.atomic
def invitation_revoke(*, invitation: Invitation) -> None:
    """Withdraw a pending invitation; its invitee can no longer accept it. Anything else is left as is."""
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.status == Invitation.Status.PENDING:
        _invitation_close(locked, Invitation.Status.REVOKED)


def _invitation_close(invitation: Invitation, status: str) -> None:
    invitation.status = status
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at", "updated_at"])
