"""The world of the API tests of every app: two projects, a user in every role, a token per user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from rest_framework.test import APIClient

from apm.models import ApiToken
from apm.services import api_token_create
from projects.models import Membership, Project
from tests.factories import (
    CommitFactory,
    FileChangeFactory,
    FileFactory,
    IngestionRunFactory,
    MembershipFactory,
    ProjectFactory,
    RepositoryFactory,
    TaskFactory,
    UserFactory,
)

ROLES = ("owner", "maintainer", "member", "viewer")


@dataclass
class World:
    project: Project
    other: Project
    users: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)

    def client(self, who: str, scope: str = ApiToken.Scope.WRITE) -> APIClient:
        """An API client authenticated with a real token of ``who`` ("anonymous": none)."""
        client = APIClient()
        if who == "anonymous":
            return client
        if scope == ApiToken.Scope.WRITE:
            raw = self.tokens[who]
        else:
            _token, raw = api_token_create(user=self.users[who], name="read-only", scope=scope)
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        return client


@pytest.fixture
def world(db: Any) -> World:
    project = ProjectFactory(key="ALPHA", name="Alpha")
    other = ProjectFactory(key="BETA", name="Beta")
    world = World(project=project, other=other)
    for role in ROLES:
        user = UserFactory(username=role)
        MembershipFactory(project=project, user=user, role=role)
        world.users[role] = user
    world.users["outsider"] = UserFactory(username="outsider")
    MembershipFactory(project=other, user=world.users["outsider"], role=Membership.Role.OWNER)
    world.users["staff"] = UserFactory(username="staff", is_staff=True)
    for name, user in world.users.items():
        world.tokens[name] = api_token_create(user=user, name="tests")[1]

    repository = RepositoryFactory(
        project=project, name="alpha-repo", source="https://git.example.com/team/alpha.git"
    )
    commit = CommitFactory(repository=repository)
    world.objects.update(
        task=TaskFactory(project=project, title="First"),
        blocker=TaskFactory(project=project, title="Second"),
        repository=repository,
        commit=commit,
        file_change=FileChangeFactory(commit=commit),
        file=FileFactory(repository=repository),
        run=IngestionRunFactory(repository=repository),
        other_task=TaskFactory(project=other, title="Beta's"),
    )
    # BETA has one of everything too, so a non-member's lists are not empty by accident.
    other_repository = RepositoryFactory(project=other, name="beta-repo")
    other_commit = CommitFactory(repository=other_repository)
    world.objects.update(
        other_repository=other_repository,
        other_commit=other_commit,
        other_file_change=FileChangeFactory(commit=other_commit),
        other_file=FileFactory(repository=other_repository),
        other_run=IngestionRunFactory(repository=other_repository),
    )
    return world
