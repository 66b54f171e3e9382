"""Factories for APM's models. Tasks are created through the task service so they get real numbers."""

from __future__ import annotations

import datetime
import uuid

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from projects.models import Membership, Project
from reports.models import ExportJob
from repos.models import Commit, CommitTaskLink, File, FileChange, IngestionRun, Repository
from tasks.models import Task, TaskEvent, TimeEntry
from tasks.services import task_create
from webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    key = factory.Sequence(lambda n: f"P{n:03d}")
    name = factory.Sequence(lambda n: f"Project {n}")
    status = Project.Status.ACTIVE


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"Task {n}")
    status = Task.Status.TODO
    priority = Task.Priority.MEDIUM

    @classmethod
    def _create(cls, model_class: type[Task], *args: object, **kwargs: object) -> Task:
        return task_create(source=TaskEvent.Source.SYSTEM, **kwargs)  # type: ignore[arg-type]


class TimeEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TimeEntry

    task = factory.SubFactory(TaskFactory)
    minutes = 30
    spent_on = factory.LazyFunction(lambda: timezone.now().date())
    source = TimeEntry.Source.ADMIN


class RepositoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Repository

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"repo{n}")
    kind = Repository.Kind.REMOTE
    source = factory.Sequence(lambda n: f"https://git.example.com/team/repo{n}.git")
    default_branch = "main"
    webhook_secret = factory.Sequence(lambda n: f"webhook-secret-{n:04d}")


class CommitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Commit

    repository = factory.SubFactory(RepositoryFactory)
    sha = factory.Sequence(lambda n: f"{n:040x}")
    author_name = "Ada Lovelace"
    author_email = "ada@example.com"
    committer_name = "Ada Lovelace"
    committer_email = "ada@example.com"
    authored_at = factory.LazyFunction(timezone.now)
    timestamp = factory.LazyFunction(timezone.now)
    message = factory.Sequence(lambda n: f"Change {n}\n\nLonger description of change {n}.")
    additions = 10
    deletions = 2
    files_changed = 1


class FileChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FileChange

    commit = factory.SubFactory(CommitFactory)
    repository = factory.SelfAttribute("commit.repository")
    path = factory.Sequence(lambda n: f"src/module_{n}.py")
    change_type = FileChange.ChangeType.MODIFIED
    added = 10
    deleted = 2


class FileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = File

    repository = factory.SubFactory(RepositoryFactory)
    project = factory.SelfAttribute("repository.project")
    path = factory.Sequence(lambda n: f"src/file_{n}.py")
    language = "Python"
    size = 1200
    lines = 40
    churn = 120
    commit_count = 4
    last_changed_at = factory.LazyFunction(timezone.now)


class IngestionRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IngestionRun

    repository = factory.SubFactory(RepositoryFactory)
    status = IngestionRun.Status.SUCCEEDED
    commits_total = 10
    commits_done = 10
    started_at = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(seconds=5))
    finished_at = factory.LazyFunction(timezone.now)


class CommitTaskLinkFactory(factory.django.DjangoModelFactory):
    """A commit naming a task (``refs KEY-N``): a reference, nothing asked of the task."""

    class Meta:
        model = CommitTaskLink

    task = factory.SubFactory(TaskFactory)
    commit = factory.SubFactory(CommitFactory, repository__project=factory.SelfAttribute("...task.project"))


class ExportJobFactory(factory.django.DjangoModelFactory):
    """A queued export of a project's tasks; ``reports.exports.export_run`` writes its file."""

    class Meta:
        model = ExportJob

    project = factory.SubFactory(ProjectFactory)
    kind = ExportJob.Kind.TASKS_CSV


class WebhookSubscriptionFactory(factory.django.DjangoModelFactory):
    """An active subscription to ``task.created`` at a public address (it passes the SSRF checks)."""

    class Meta:
        model = WebhookSubscription

    project = factory.SubFactory(ProjectFactory)
    url = factory.Sequence(lambda n: f"https://93.184.215.14/hook/{n}")
    events = factory.LazyFunction(lambda: [WebhookEvent.TASK_CREATED.value])
    secret = factory.Sequence(lambda n: f"secret-{n}")


class WebhookDeliveryFactory(factory.django.DjangoModelFactory):
    """A pending delivery of ``task.created`` to a subscription."""

    class Meta:
        model = WebhookDelivery

    subscription = factory.SubFactory(WebhookSubscriptionFactory)
    event = WebhookEvent.TASK_CREATED.value
    delivery_id = factory.LazyFunction(uuid.uuid4)
    payload = factory.LazyAttribute(
        lambda delivery: {"id": str(delivery.delivery_id), "event": delivery.event}
    )
