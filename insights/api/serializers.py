"""A project's summary and the dashboard's portfolio rows as the API shows them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from projects.api.serializers import HealthLevelField


class StatusCountsSerializer(serializers.Serializer[Any]):
    backlog = serializers.IntegerField()
    todo = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    in_review = serializers.IntegerField()
    done = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class RecentEventSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    task = serializers.CharField(help_text="Task key, e.g. APM-12.")
    kind = serializers.CharField()
    # A field named like Field.source (the stubs' attribute); DRF keeps declared fields off the class.
    source = serializers.CharField()  # type: ignore[assignment]
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    commit_sha = serializers.CharField()
    created_at = serializers.DateTimeField()


class RecentCommitSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    repository = serializers.IntegerField()
    sha = serializers.CharField()
    author_name = serializers.CharField()
    timestamp = serializers.DateTimeField()
    additions = serializers.IntegerField()
    deletions = serializers.IntegerField()


class PortfolioRowSerializer(serializers.Serializer[Any]):
    """One project of the dashboard: its task counts and progress."""

    id = serializers.IntegerField()
    key = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    health_level = HealthLevelField()
    health_score = serializers.IntegerField(allow_null=True, help_text="Last recorded health score, 0-100.")
    tasks_total = serializers.IntegerField()
    tasks_open = serializers.IntegerField()
    tasks_done = serializers.IntegerField()
    progress = serializers.FloatField(help_text="Done tasks over all tasks but cancelled ones, 0.0 to 1.0.")


class ProjectSummarySerializer(PortfolioRowSerializer):
    """Counts, progress and recent activity of one project."""

    tasks_overdue = serializers.IntegerField(help_text="Open tasks whose due date has passed.")
    tasks_by_status = StatusCountsSerializer()
    repositories = serializers.IntegerField()
    commits = serializers.IntegerField()
    last_commit_at = serializers.DateTimeField(allow_null=True)
    recent_events = RecentEventSerializer(many=True)
    recent_commits = RecentCommitSerializer(many=True)
