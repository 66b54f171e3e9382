"""Repositories and what ingestion reads from them: commits, file changes, files and runs."""

from __future__ import annotations

import uuid

from django.db import models

from apm.db import PrefixIndex
from apm.models import TimeStampedModel


def mirror_key_new() -> str:
    return uuid.uuid4().hex


class Repository(TimeStampedModel):
    """A git repository that feeds a project: a remote URL or a local path under ``APM_REPO_ROOTS``."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Local path"
        REMOTE = "remote", "Remote URL"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="repositories")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source = models.CharField(
        max_length=1000, help_text="https:// (or ssh://) URL, or a local path under APM_REPO_ROOTS."
    )
    default_branch = models.CharField(max_length=255, blank=True)
    # Tip of the default branch at the end of the last successful ingestion; the next run starts there.
    last_ingested_sha = models.CharField(max_length=64, blank=True)
    last_ingested_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(
        default=True, help_text="Inactive repositories are skipped by ingest_all."
    )
    # Shared with the git host to sign push webhooks (HMAC-SHA256). Kept in clear because verifying a
    # signature needs the secret itself; shown once, when it is created or rotated.
    webhook_secret = models.CharField(max_length=64, blank=True, editable=False)
    # Names this repository's mirror in APM_WORKSPACE and is written into the mirror's own config: a
    # mirror is used only when it carries this key and mirrors this source. Ids repeat across
    # installations sharing a workspace and after a database reset; a random key does not.
    mirror_key = models.CharField(max_length=32, default=mirror_key_new, editable=False)
    # Set when a run of the default branch starts writing the file index and its figures, cleared when
    # one finishes: still set at the next plan, a run failed half-way (its file slices may have indexed
    # part of a newer tree), so that run lists the whole tree and rebuilds the figures.
    files_unsettled = models.BooleanField(default=False, editable=False)
    # Set when its deletion is requested (repos.deletion): from then on no list, page or ingestion sees
    # it, while a background task deletes its rows in batches and finally the row itself. Rows deleted
    # so far, per table, are kept in deletion_progress for operators to follow.
    deleting_since = models.DateTimeField(null=True, blank=True, editable=False)
    deletion_progress = models.JSONField(default=dict, blank=True, editable=False)
    # Not a column: the latest run, set on the repositories of a page by repos.selectors.last_runs_attach.
    last_run: IngestionRun | None

    class Meta:
        db_table = "repositories"
        ordering = ["project_id", "name"]
        verbose_name_plural = "repositories"
        constraints = [
            # A source is registered once per project; webhooks find the repository by it.
            models.UniqueConstraint(fields=["project", "source"], name="repository_project_source_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class Commit(models.Model):
    """A commit reachable from a repository's ingested branch."""

    # No index of its own: commit_repository_sha_unique and idx_commits_repo_time both start with it,
    # and one index less is one less to maintain for every commit ingested.
    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="commits", db_index=False
    )
    sha = models.CharField(max_length=64)
    parents = models.JSONField(default=list, blank=True)
    author_name = models.CharField(max_length=255, blank=True)
    author_email = models.CharField(max_length=255, blank=True)
    authored_at = models.DateTimeField()
    committer_name = models.CharField(max_length=255, blank=True)
    committer_email = models.CharField(max_length=255, blank=True)
    # Commit (committer) time: what history, activity and burndown are ordered by.
    timestamp = models.DateTimeField(db_index=False)
    message = models.TextField(blank=True)
    additions = models.PositiveIntegerField(default=0)
    deletions = models.PositiveIntegerField(default=0)
    files_changed = models.PositiveIntegerField(default=0)
    is_merge = models.BooleanField(default=False)
    # Not a column: the keys of the linked tasks, set on a page by repos.selectors.task_keys_attach.
    task_keys: list[str]

    class Meta:
        db_table = "commits"
        constraints = [
            # Idempotent ingestion: a redelivered chunk inserts nothing twice (ON CONFLICT DO NOTHING).
            models.UniqueConstraint(fields=["repository", "sha"], name="commit_repository_sha_unique"),
        ]
        indexes = [
            # Activity across all repositories over a time range (the guide's index).
            models.Index(fields=["timestamp"], name="idx_commits_timestamp"),
            # A repository's history, newest first (commit lists, cursor pagination).
            models.Index(fields=["repository", "-timestamp"], name="idx_commits_repo_time"),
            # Contributor statistics and the author filter.
            models.Index(fields=["author_email", "timestamp"], name="idx_commits_author_time"),
        ]

    def __str__(self) -> str:
        return self.sha[:12]

    @property
    def short_sha(self) -> str:
        return self.sha[:12]

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]


class FileChange(models.Model):
    """One path touched by one commit, with its line counts."""

    class ChangeType(models.TextChoices):
        ADDED = "A", "Added"
        MODIFIED = "M", "Modified"
        DELETED = "D", "Deleted"
        RENAMED = "R", "Renamed"
        COPIED = "C", "Copied"
        TYPE_CHANGED = "T", "Type changed"

    commit = models.ForeignKey(Commit, on_delete=models.CASCADE, related_name="changes", db_index=False)
    # Denormalised from the commit so a file's history is read from one index. No database constraint:
    # the commit's own foreign key already ties the row to its repository, and a second check per row
    # would slow bulk ingestion for nothing.
    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    path = models.CharField(max_length=1024)
    old_path = models.CharField(max_length=1024, blank=True)
    change_type = models.CharField(max_length=1, choices=ChangeType.choices)
    # NULL for binary files, whose line counts git does not report (not the same as zero).
    added = models.PositiveIntegerField(null=True, blank=True)
    deleted = models.PositiveIntegerField(null=True, blank=True)
    is_binary = models.BooleanField(default=False)

    class Meta:
        db_table = "file_changes"
        constraints = [
            # Idempotent ingestion, and the list of paths a commit touched.
            models.UniqueConstraint(fields=["commit", "path"], name="file_change_commit_path_unique"),
        ]
        indexes = [
            # A file's history in a repository (churn, hotspots, "who touched this").
            PrefixIndex(
                fields=["repository", "path"],
                name="idx_file_changes_repo_path",
                mysql_prefix_lengths={"path": 255},
            ),
        ]

    def __str__(self) -> str:
        return f"{self.change_type} {self.path}"


class File(models.Model):
    """A file in the tree at the tip of a repository's branch, with churn aggregated from history."""

    # Denormalised from the repository (which has the constraint), so no per-row check on bulk upserts.
    project = models.ForeignKey(
        "projects.Project",
        on_delete=models.CASCADE,
        related_name="files",
        db_index=False,  # replaced by the guide's idx_files_project_id below
        db_constraint=False,
    )
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="files", db_index=False)
    path = models.CharField(max_length=1024)
    language = models.CharField(max_length=50, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    is_binary = models.BooleanField(default=False)
    churn = models.PositiveBigIntegerField(default=0, help_text="Lines added plus deleted over history.")
    commit_count = models.PositiveIntegerField(default=0)
    last_changed_at = models.DateTimeField(null=True, blank=True)
    # The ingestion run that last indexed this path; after a run that listed the whole tree, rows of
    # older runs are paths that are gone.
    seen_in_run = models.PositiveBigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "files"
        constraints = [
            # One row per path in a repository's tree; the file step upserts on it.
            models.UniqueConstraint(fields=["repository", "path"], name="file_repository_path_unique"),
        ]
        indexes = [
            # All files of a project (the guide's index): language breakdown, project-wide hotspots.
            models.Index(fields=["project"], name="idx_files_project_id"),
            # Hotspots of a repository: files ordered by churn.
            models.Index(fields=["repository", "-churn"], name="idx_files_repo_churn"),
            # Analytics (insights.code): the File admin sorted by churn or by commit count over all
            # repositories (ORDER BY churn DESC, id DESC LIMIT 100, id being the admin's tie-breaker),
            # read from the index instead of sorting every file; scanned backwards for ascending order.
            models.Index(fields=["-churn", "-id"], name="idx_files_churn"),
            models.Index(fields=["-commit_count", "-id"], name="idx_files_commit_count"),
            # The finish step: the files a run indexed get their history figures, and after a run that
            # listed the whole tree the others are deleted (repos.ingestion.files_history_refresh).
            models.Index(fields=["repository", "seen_in_run"], name="idx_files_repo_seen"),
        ]

    def __str__(self) -> str:
        return self.path


class FileHistory(models.Model):
    """Churn, commit count and last change of every path a repository's stored commits touched.

    Kept as running totals: each commit chunk adds the figures of the commits it inserted (never of
    commits stored already), so one new commit costs the rows of the paths it changed, not a pass over
    the whole history. Paths no longer in the tree keep their history, ready for when they come back.
    ``File`` rows copy these figures for the paths in the tree.
    """

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="+", db_index=False)
    path = models.CharField(max_length=1024)
    churn = models.PositiveBigIntegerField(default=0)
    commit_count = models.PositiveIntegerField(default=0)
    last_changed_at = models.DateTimeField(null=True, blank=True)
    # The run whose chunk last added to this row: the finish copies exactly these rows onto File.
    updated_in_run = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "file_histories"
        verbose_name_plural = "file histories"
        constraints = [
            # One running total per path; chunks upsert on it.
            models.UniqueConstraint(
                fields=["repository", "path"], name="file_history_repository_path_unique"
            ),
        ]
        indexes = [
            # The finish step: the paths a run changed (repos.ingestion.files_history_refresh).
            models.Index(fields=["repository", "updated_in_run"], name="idx_file_histories_run"),
        ]

    def __str__(self) -> str:
        return self.path


class CommitTaskLink(models.Model):
    """A commit that mentions a task, and what the mention asked for."""

    class Action(models.TextChoices):
        REFERENCE = "reference", "Reference"
        FIX = "fix", "Fix"
        CLOSE = "close", "Close"
        TIME = "time", "Time spent"
        TRANSITION = "transition", "Transition"

    class Outcome(models.TextChoices):
        LINKED = "linked", "Linked (nothing to do)"
        PENDING = "pending", "Waiting for the default branch"
        HISTORY = "history", "History: linked only"
        APPLIED = "applied", "Applied"
        UNCHANGED = "unchanged", "Already so"
        REFUSED = "refused", "Refused"
        DISABLED = "disabled", "Automation off"

    # Outcomes that are final: the link's request was considered once and is never considered again.
    # PENDING is the only one left open: a commit seen on another branch first, whose request applies
    # when a run of the default branch reaches it.
    OPEN_OUTCOMES = frozenset({Outcome.PENDING})

    commit = models.ForeignKey(Commit, on_delete=models.CASCADE, related_name="task_links", db_index=False)
    # idx_commit_task_links_task below starts with the task, so the FK needs no index of its own.
    task = models.ForeignKey(
        "tasks.Task", on_delete=models.CASCADE, related_name="commit_links", db_index=False
    )
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.REFERENCE)
    # What the message asked beyond the link: the status it moves the task to, the minutes it logs.
    status = models.CharField(max_length=20, blank=True)
    minutes = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.LINKED)
    note = models.CharField(max_length=500, blank=True, help_text="Why the request was refused, for people.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "commit_task_links"
        constraints = [
            # A commit is linked to a task once, however often and on how many branches it mentions it.
            models.UniqueConstraint(fields=["commit", "task"], name="commit_task_link_unique"),
        ]
        indexes = [
            # A task's commits, newest link first (task page in the admin, /tasks/{key}/commits/).
            models.Index(fields=["task", "-created_at"], name="idx_commit_task_links_task"),
        ]

    def __str__(self) -> str:
        return f"{self.commit_id} -> {self.task_id} ({self.action})"


class IngestionRun(models.Model):
    """One ingestion of a repository: what it did, how far it got, how long each step took, why it failed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        COMMAND = "command", "Management command"
        ADMIN = "admin", "Admin action"
        API = "api", "API"
        WEBHOOK = "webhook", "Push webhook"
        SCHEDULE = "schedule", "Schedule"

    class FilesScope(models.TextChoices):
        UNCHANGED = "unchanged", "Unchanged (same tip)"
        CHANGES = "changes", "Paths changed since the last run"
        TREE = "tree", "Whole tree listed"
        SKIPPED = "skipped", "Not the default branch"

    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="ingestion_runs", db_index=False
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.COMMAND)
    branch = models.CharField(max_length=255, blank=True)
    from_sha = models.CharField(max_length=64, blank=True)
    to_sha = models.CharField(max_length=64, blank=True)
    commits_total = models.PositiveIntegerField(default=0)
    # Commits read so far (progress against commits_total), and of those the ones this run stored: a
    # walk of the whole branch after a force push reads thousands and may add one.
    commits_done = models.PositiveIntegerField(default=0)
    commits_added = models.PositiveIntegerField(default=0)
    # Offsets of the commit chunks already written: a chunk delivered twice is counted once.
    chunks_done = models.JSONField(default=list, blank=True, editable=False)
    files_total = models.PositiveIntegerField(default=0)
    file_changes_added = models.PositiveIntegerField(default=0)
    lines_added = models.PositiveBigIntegerField(default=0)
    lines_deleted = models.PositiveBigIntegerField(default=0)
    files_indexed = models.PositiveIntegerField(default=0)
    # Commit-to-task links written by the run, and what their messages asked: carried out or refused.
    task_links_created = models.PositiveIntegerField(default=0)
    task_requests_applied = models.PositiveIntegerField(default=0)
    task_requests_refused = models.PositiveIntegerField(default=0)
    files_scope = models.CharField(
        max_length=10,
        choices=FilesScope.choices,
        blank=True,
        help_text="How the run brought the file index up to date.",
    )
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds spent in each step.")
    notes = models.JSONField(default=list, blank=True, help_text="Warnings that did not stop the run.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Moved on by every step and chunk; a running run whose heartbeat is old was abandoned by its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "ingestion_runs"
        ordering = ["-created_at", "-id"]
        indexes = [
            # A repository's runs, newest first: "last run" in the admin, the API and the lock check.
            models.Index(fields=["repository", "-created_at"], name="idx_ingestion_runs_repo_time"),
            # Runs in a given state across all repositories (monitoring, purging old runs).
            models.Index(fields=["status", "created_at"], name="idx_ingestion_runs_status"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.repository_id} ({self.status})"

    @property
    def progress(self) -> float:
        """Share of the planned commits ingested so far, from 0.0 to 1.0."""
        if not self.commits_total:
            return 1.0 if self.status == self.Status.SUCCEEDED else 0.0
        return min(1.0, self.commits_done / self.commits_total)


class PushDelivery(models.Model):
    """A verified push webhook, kept so that the same delivery sent again starts nothing.

    A delivery is known by the id its sender gives it (GitHub's ``X-GitHub-Delivery``, Gitea's
    ``X-Gitea-Delivery``, GitLab's ``X-Gitlab-Event-UUID``; the body's SHA-256 when there is none) and
    by its body's SHA-256: the id is a header outside the signature, so a replayed body under a new id
    is still the same delivery. Rows go after ``APM_PUSH_DELIVERIES_KEEP_DAYS`` (repos.purge_push_deliveries).
    """

    repository = models.ForeignKey(
        Repository, on_delete=models.CASCADE, related_name="push_deliveries", db_index=False
    )
    delivery_id = models.CharField(max_length=100)
    body_sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)
    # The run the delivery started: null for a ping, a push APM does not follow, or a purged run. Its
    # index serves the deletion of runs (the purge, a repository's deletion), which nulls it here.
    run = models.ForeignKey(
        IngestionRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="push_deliveries"
    )

    class Meta:
        db_table = "push_deliveries"
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "push deliveries"
        constraints = [
            # Decide between two copies of a delivery arriving at once: the second insert waits for the
            # first's transaction and fails, and its request answers with the first one's run.
            models.UniqueConstraint(fields=["repository", "delivery_id"], name="push_delivery_id_unique"),
            models.UniqueConstraint(fields=["repository", "body_sha256"], name="push_delivery_body_unique"),
        ]
        indexes = [
            # The purge: deliveries received before the cutoff, oldest first.
            models.Index(fields=["received_at"], name="idx_push_deliveries_received"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id} for {self.repository_id}"
