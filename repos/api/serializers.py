"""Repositories, ingestion runs, commits, file changes and files as the API shows them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apm.api.serializers import BlankAsNullChoiceField, StrictModelSerializer, StrictSerializer
from projects.api.serializers import ProjectKeyField
from repos.api.hooks import push_webhook_url
from repos.models import Commit, CommitTaskLink, File, FileChange, IngestionRun, Repository

WEBHOOK_URL_HELP = (
    "Payload URL for the git host's push webhook. It names the repository (?repository=<id>), so APM "
    "verifies the body before reading it as JSON and accepts pushes up to 25 MB."
)


class IngestionRunBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = IngestionRun
        fields = ["id", "status", "trigger", "commits_done", "commits_total", "created_at", "finished_at"]
        read_only_fields = fields


class RepositorySerializer(StrictModelSerializer):
    """A registered git repository. ``source`` is fixed once registered; ingestion state is read-only."""

    project = ProjectKeyField()
    last_run = serializers.SerializerMethodField(help_text="The latest ingestion run, if any.")

    class Meta:
        model = Repository
        fields = [
            "id",
            "project",
            "name",
            "kind",
            "source",
            "default_branch",
            "is_active",
            "last_ingested_sha",
            "last_ingested_at",
            "last_run",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "kind",
            "last_ingested_sha",
            "last_ingested_at",
            "last_run",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"name": {"required": False}, "default_branch": {"required": False}}
        # Uniqueness of the source is the service's to decide: it normalises the spelling first and names
        # the repository that already has it.
        validators: list[object] = []

    @extend_schema_field(IngestionRunBriefSerializer(allow_null=True))
    def get_last_run(self, repository: Repository) -> dict[str, object] | None:
        # Attached by the view for every repository on the page at once (repos.api.views).
        run = getattr(repository, "last_run", None)
        return IngestionRunBriefSerializer(run).data if run is not None else None


class RepositoryCreatedSerializer(RepositorySerializer):
    webhook_secret = serializers.CharField(
        read_only=True,
        help_text="Secret for signing push webhooks. Shown this once; rotate to get a new one.",
    )
    webhook_url = serializers.SerializerMethodField(help_text=WEBHOOK_URL_HELP)

    class Meta(RepositorySerializer.Meta):
        fields = [*RepositorySerializer.Meta.fields, "webhook_secret", "webhook_url"]

    def get_webhook_url(self, repository: Repository) -> str:
        return push_webhook_url(self.context["request"], repository)


class RepositoryUpdateSerializer(RepositorySerializer):
    read_only_hints = {
        "source": "A repository's source cannot change; register the new source as another repository.",
        "project": "A repository stays in its project.",
    }

    class Meta(RepositorySerializer.Meta):
        read_only_fields = [*RepositorySerializer.Meta.read_only_fields, "source", "project"]


class WebhookSecretSerializer(serializers.Serializer):
    webhook_secret = serializers.CharField(read_only=True)
    webhook_url = serializers.CharField(read_only=True, help_text=WEBHOOK_URL_HELP)


class IngestSerializer(StrictSerializer):
    branch = serializers.CharField(
        required=False, allow_blank=True, max_length=255, help_text="Defaults to the repository's branch."
    )


class IngestAcceptedSerializer(serializers.Serializer):
    run = serializers.IntegerField(
        help_text="Id of the ingestion run; follow it at /api/v1/ingestion-runs/{id}/."
    )
    created = serializers.BooleanField(help_text="False when a run of this repository was already under way.")
    status = serializers.CharField()


class RepositoryDeletionSerializer(serializers.ModelSerializer):
    """A repository being deleted: gone from every list, its rows deleted in the background."""

    deleting_since = serializers.DateTimeField(read_only=True, help_text="When its deletion was requested.")
    deletion_progress = serializers.JSONField(
        read_only=True,
        help_text="Who asked, when it started, and the rows deleted so far per table (`deleted`).",
    )

    class Meta:
        model = Repository
        fields = ["id", "deleting_since", "deletion_progress"]
        read_only_fields = fields


class IngestionRunSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(
        read_only=True, help_text="Share of the planned commits done, 0.0 to 1.0."
    )
    files_scope = BlankAsNullChoiceField(
        choices=IngestionRun.FilesScope.choices,
        help_text="How the run brought the file index up to date; null before its plan.",
    )

    class Meta:
        model = IngestionRun
        fields = [
            "id",
            "repository",
            "status",
            "trigger",
            "branch",
            "from_sha",
            "to_sha",
            "commits_total",
            "commits_done",
            "commits_added",
            "progress",
            "file_changes_added",
            "lines_added",
            "lines_deleted",
            "files_total",
            "files_indexed",
            "files_scope",
            "task_links_created",
            "task_requests_applied",
            "task_requests_refused",
            "timings",
            "notes",
            "error",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


class CommitSerializer(serializers.ModelSerializer):
    tasks = serializers.SerializerMethodField(help_text="Keys of the tasks this commit is linked to.")

    class Meta:
        model = Commit
        fields = [
            "id",
            "repository",
            "sha",
            "parents",
            "author_name",
            "author_email",
            "authored_at",
            "committer_name",
            "committer_email",
            "timestamp",
            "message",
            "additions",
            "deletions",
            "files_changed",
            "is_merge",
            "tasks",
        ]
        read_only_fields = fields

    def get_tasks(self, commit: Commit) -> list[str]:
        return commit.task_keys  # attached for the whole page by the view (repos.api.views)


class FileChangeSerializer(serializers.ModelSerializer):
    sha = serializers.CharField(source="commit.sha", read_only=True)

    class Meta:
        model = FileChange
        fields = [
            "id",
            "commit",
            "sha",
            "repository",
            "path",
            "old_path",
            "change_type",
            "added",
            "deleted",
            "is_binary",
        ]
        read_only_fields = fields


class FileSerializer(serializers.ModelSerializer):
    class Meta:
        model = File
        fields = [
            "id",
            "repository",
            "path",
            "language",
            "size",
            "lines",
            "is_binary",
            "churn",
            "commit_count",
            "last_changed_at",
        ]
        read_only_fields = fields


class TaskCommitLinkSerializer(serializers.ModelSerializer):
    """A commit that names the task, and what its message asked for the task."""

    sha = serializers.CharField(source="commit.sha", read_only=True)
    repository = serializers.IntegerField(source="commit.repository_id", read_only=True)
    repository_name = serializers.CharField(source="commit.repository.name", read_only=True)
    subject = serializers.CharField(
        source="commit.subject", read_only=True, help_text="First line of the message."
    )
    author_name = serializers.CharField(source="commit.author_name", read_only=True)
    author_email = serializers.CharField(source="commit.author_email", read_only=True)
    timestamp = serializers.DateTimeField(source="commit.timestamp", read_only=True)

    class Meta:
        model = CommitTaskLink
        fields = [
            "sha",
            "repository",
            "repository_name",
            "subject",
            "author_name",
            "author_email",
            "timestamp",
            "action",
            "status",
            "minutes",
            "outcome",
            "note",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "status": {"help_text": "The status the message asked for (closing keywords ask for done)."},
            "minutes": {"help_text": "Time spent the message logged (@2h30m)."},
            "outcome": {"help_text": "What became of the request: carried out, refused, pending, history..."},
        }
