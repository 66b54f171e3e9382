"""A project's summary, progress, health, priorities and burndown through the API (read by any member).

``/api/v1/projects/{key}/summary/``, ``/progress/``, ``/health/``, ``/priorities/`` and ``/burndown/``.
The figures come from insights.selectors, cached there (the admin reads the same entries): any change
to the project's tasks, repositories or ingestions is seen on the next request.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apm.api.serializers import DayField
from apm.cache import project_key, stamped
from apm.replicas import replica_reads
from insights.analytics import MAX_BURNDOWN_DAYS, TREND_DAYS, Quadrant, burndown_range_validate
from insights.api.serializers import ProjectSummarySerializer
from insights.selectors import (
    ANALYTICS_FORMAT,
    project_burndown_cached,
    project_health_cached,
    project_progress_cached,
    project_summary_cached,
    task_priorities_cached,
)
from projects.api.base import ProjectFiguresViewSet
from projects.models import HealthLevel
from projects.selectors import project_id_visible
from tasks.models import Task

BURNDOWN_DEFAULT_DAYS = 30


# --- Query parameters ---------------------------------------------------------------------------------


class ProgressQuerySerializer(serializers.Serializer[Any]):
    days = serializers.IntegerField(
        required=False,
        default=TREND_DAYS,
        min_value=7,
        max_value=365,
        help_text=f"The trend compares today with this many days ago (default {TREND_DAYS}).",
    )


class PriorityQuerySerializer(serializers.Serializer[Any]):
    quadrant = serializers.ChoiceField(
        choices=Quadrant.choices, required=False, help_text="Only the tasks of this Eisenhower quadrant."
    )


class BurndownQuerySerializer(serializers.Serializer[Any]):
    start = DayField(
        required=False,
        help_text=f"First day (YYYY-MM-DD); default {BURNDOWN_DEFAULT_DAYS - 1} days before end.",
    )
    end = DayField(required=False, help_text="Last day, included (YYYY-MM-DD); default today.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end") or timezone.localdate()
        start = attrs.get("start") or end - datetime.timedelta(days=BURNDOWN_DEFAULT_DAYS - 1)
        burndown_range_validate(start=start, end=end)
        return {"start": start, "end": end}


# --- Responses ----------------------------------------------------------------------------------------


class ProgressPointSerializer(serializers.Serializer[Any]):
    date = serializers.DateField()
    progress = serializers.FloatField(help_text="Weighted progress on that day, 0.0 to 1.0.")


class ProjectProgressSerializer(serializers.Serializer[Any]):
    """Progress weighted by estimate (docs/analytics.md), task counts and the trend."""

    progress = serializers.FloatField(
        help_text="Estimate hours done over estimate hours in scope (top-level tasks, cancelled ones left "
        "out), 0.0 to 1.0."
    )
    tasks_total = serializers.IntegerField(help_text="Every task of the project, cancelled ones included.")
    tasks_open = serializers.IntegerField(help_text="Tasks neither done nor cancelled.")
    tasks_done = serializers.IntegerField()
    tasks_cancelled = serializers.IntegerField()
    tasks_counted = serializers.IntegerField(help_text="Top-level tasks in the weighted progress.")
    estimate_hours_total = serializers.FloatField(
        help_text="Hours in scope: estimates of the top-level tasks, the default estimate for those without."
    )
    estimate_hours_done = serializers.FloatField(
        help_text="Hours done: each task's hours times its progress."
    )
    default_estimate_hours = serializers.FloatField(
        help_text="Weight of a task without an estimate: the project's median estimate, 1 if none has one."
    )
    trend_days = serializers.IntegerField(help_text="The period the trend is measured over, in days.")
    progress_then = serializers.FloatField(
        help_text="The same progress measure trend_days ago, from history."
    )
    trend = serializers.FloatField(
        help_text="Change of progress per week over the period (negative: going back)."
    )
    weekly = ProgressPointSerializer(many=True, help_text="Progress 8, 7, ... 1 weeks ago and today.")


class HealthSignalSerializer(serializers.Serializer[Any]):
    name = serializers.ChoiceField(
        choices=["dormant", "overdue", "stale", "blocked", "activity", "bus_factor", "churn"],
        help_text="Which signal.",
    )
    penalty = serializers.IntegerField(help_text="Points this signal takes from 100.")
    max_penalty = serializers.IntegerField(help_text="The most this signal can take.")
    value = serializers.FloatField(
        help_text="What was measured: a number of tasks, weeks or days, a chain length, a ratio or a share."
    )
    reason = serializers.CharField(help_text="What was found, for people.")
    examples = serializers.ListField(
        child=serializers.CharField(),
        help_text="Up to 5 task keys, file paths, weeks or days behind the signal.",
    )


class ProjectHealthSerializer(serializers.Serializer[Any]):
    """Health computed now, and the level last recorded by the scheduled recompute."""

    score = serializers.IntegerField(help_text="100 minus the signals' penalties: 100 healthy, 0 critical.")
    level = serializers.ChoiceField(choices=HealthLevel.choices, help_text="The level of the score.")
    checked_at = serializers.DateTimeField(help_text="When this was computed.")
    signals = HealthSignalSerializer(many=True)
    reasons = serializers.ListField(
        child=serializers.CharField(), help_text="Reasons of the signals that cost points."
    )
    stored_level = serializers.CharField(
        allow_null=True, help_text="Level last recorded (as in level); null before the first recompute."
    )
    stored_score = serializers.IntegerField(allow_null=True, help_text="Score last recorded.")
    stored_checked_at = serializers.DateTimeField(allow_null=True, help_text="When it was recorded.")


class TaskPrioritySerializer(serializers.Serializer[Any]):
    """An open task with its priority score; the list is ordered by score, highest first."""

    key = serializers.CharField(help_text="Task key, e.g. APM-12.")
    title = serializers.CharField()
    status = serializers.ChoiceField(choices=Task.Status.choices)
    priority = serializers.ChoiceField(choices=Task.Priority.choices)
    due_date = serializers.DateField(allow_null=True)
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    blocks_open = serializers.IntegerField(help_text="Open tasks waiting on this one.")
    urgency = serializers.IntegerField(
        help_text="0 to 50 from the due date: 50 overdue, 35 within 3 days, 20 within 14, 0 later or none."
    )
    importance = serializers.IntegerField(
        help_text="0 to 50: priority (critical 30, high 20, medium 10, low 0) plus 5 per open task it blocks "
        "(at most 20)."
    )
    score = serializers.IntegerField(help_text="Urgency plus importance, 0 to 100.")
    quadrant = serializers.ChoiceField(
        choices=Quadrant.choices,
        help_text="Eisenhower quadrant: urgent is urgency >= 35, important is >= 20.",
    )


class BurndownDaySerializer(serializers.Serializer[Any]):
    date = serializers.DateField()
    scope = serializers.IntegerField(help_text="Tasks existing and not cancelled at the end of the day.")
    done = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="Scope minus done.")
    added = serializers.IntegerField(
        help_text="Tasks that entered the scope that day (created, un-cancelled)."
    )
    removed = serializers.IntegerField(help_text="Tasks cancelled that day.")
    reopened = serializers.IntegerField(help_text="Done tasks moved back to an open status that day.")
    scope_hours = serializers.FloatField()
    done_hours = serializers.FloatField()
    remaining_hours = serializers.FloatField()
    added_hours = serializers.FloatField()
    removed_hours = serializers.FloatField()
    ideal = serializers.FloatField(
        help_text="Ideal remaining tasks: first day's remaining down to 0 at target."
    )
    ideal_hours = serializers.FloatField()


class ProjectBurndownSerializer(serializers.Serializer[Any]):
    """Daily burndown (remaining) and burnup (scope, done) from the tasks' history."""

    start = serializers.DateField()
    end = serializers.DateField()
    target_date = serializers.DateField(
        help_text="Where the ideal line reaches 0: the project's target or end."
    )
    default_estimate_hours = serializers.FloatField(help_text="Hours of a task without an estimate.")
    days = BurndownDaySerializer(many=True)


# --- Views --------------------------------------------------------------------------------------------


class ProjectAnalyticsViewSet(ProjectFiguresViewSet):
    """Read-only figures of a project. Members of every role may read them; to others it does not exist."""

    @extend_schema(
        summary="Counts, progress and recent activity of a project", responses=ProjectSummarySerializer
    )
    @action(detail=True, methods=["get"])
    def summary(self, request: Request, key: str) -> Response:
        # The most asked figure: a request served from the cache costs no query (who may see the
        # project is remembered too) and no serialization (the representation is kept).
        project_id = project_id_visible(user=request.user, key=key)
        if project_id is None:
            raise exceptions.NotFound()

        def representation() -> dict[str, Any]:
            project = self.get_object()
            return dict(ProjectSummarySerializer(project_summary_cached(project=project)).data)

        namespace = project_key(project_id)
        # Looked up in the read scope of the figures it shows (project_summary_cached reads the replica
        # when it may): a representation of the replica's figures is then kept apart and for the lag
        # allowed at most, as they are, never served to a user pinned to the primary by a recent write.
        found = replica_reads(stamped)(
            f"{namespace}:summary-api:v{ANALYTICS_FORMAT}",
            representation,
            namespace=namespace,
            family="summary",
        )
        return Response(found)

    @extend_schema(
        summary="Progress of a project, weighted by estimate, with its trend",
        parameters=[ProgressQuerySerializer],
        responses=ProjectProgressSerializer,
    )
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, key: str) -> Response:
        project = self.get_object()
        days = self.query_validate(ProgressQuerySerializer)["days"]
        return Response(ProjectProgressSerializer(project_progress_cached(project=project, days=days)).data)

    @extend_schema(summary="Health and risk signals of a project", responses=ProjectHealthSerializer)
    @action(detail=True, methods=["get"])
    def health(self, request: Request, key: str) -> Response:
        project = self.get_object()
        live = project_health_cached(project=project)
        stored = {
            "stored_level": project.health_level or None,
            "stored_score": project.health_score,
            "stored_checked_at": project.health_checked_at,
        }
        return Response(ProjectHealthSerializer({**live, **stored}).data)

    @extend_schema(
        summary="Open tasks of a project by priority score, with their Eisenhower quadrant",
        parameters=[PriorityQuerySerializer],
        responses=TaskPrioritySerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def priorities(self, request: Request, key: str) -> Response:
        project = self.get_object()
        quadrant = self.query_validate(PriorityQuerySerializer).get("quadrant", "")
        page = self.paginate_queryset(task_priorities_cached(project=project, quadrant=quadrant or None))
        return self.get_paginated_response(TaskPrioritySerializer(page, many=True).data)

    @extend_schema(
        summary=f"Daily burndown and burnup of a project (at most {MAX_BURNDOWN_DAYS} days)",
        parameters=[BurndownQuerySerializer],
        responses=ProjectBurndownSerializer,
    )
    @action(detail=True, methods=["get"])
    def burndown(self, request: Request, key: str) -> Response:
        project = self.get_object()
        query = self.query_validate(BurndownQuerySerializer)
        return Response(ProjectBurndownSerializer(project_burndown_cached(project=project, **query)).data)
