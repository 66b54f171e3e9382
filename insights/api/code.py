"""A project's code analytics through the API (read by any member): hotspots, coupling, contributors.

``/api/v1/projects/{key}/hotspots/``, ``/coupling/`` and ``/contributors/``. The figures come from
insights.selectors, cached there in the project's cache generation, which every ingestion of one of its
repositories bumps; the parameters as given are the key (with the day, which moves "the 90 days up to
today"), so a cached answer costs no query beyond the project's. Every answer says which window it
covers (``window``): the default one ends today, or on the day of the last commit when the
repositories have been quiet since.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apm.api.filters import MAX_ID
from apm.api.serializers import DayField
from insights.code import (
    COUPLING_MIN_SHARED,
    DEFAULT_DAYS,
    MAIN_AREAS,
    MAX_DAYS,
    window_resolve,
)
from insights.selectors import code_figures_cached
from projects.api.base import ProjectFiguresViewSet
from repos.models import Repository

MAX_LIMIT = 200
DEFAULT_LIMIT = 50

# --- Query parameters ---------------------------------------------------------------------------------


class CodeAnalyticsQuerySerializer(serializers.Serializer[Any]):
    since = DayField(
        required=False,
        help_text="First day of the window (YYYY-MM-DD, UTC); default: days before until.",
    )
    until = DayField(
        required=False,
        help_text="Last day of the window, included (YYYY-MM-DD, UTC); default today, or the day of the "
        "last commit when nothing was committed since (the window is then anchored to the last activity). "
        "With since alone, today.",
    )
    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"Length of the window in days (1 to {MAX_DAYS}, default {DEFAULT_DAYS}), counted back "
        "from until, or on from since; not with both since and until.",
    )
    repository = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Only this repository of the project (its id); default all of them.",
    )
    limit = serializers.IntegerField(
        required=False,
        default=DEFAULT_LIMIT,
        min_value=1,
        max_value=MAX_LIMIT,
        help_text=f"At most this many rows (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}).",
    )

    def validate_repository(self, value: int) -> int:
        # An id of another project's repository gets the same answer as one that does not exist.
        live = Repository.objects.filter(deleting_since__isnull=True)
        if not live.filter(project=self.context["project"], pk=value).exists():
            raise serializers.ValidationError(f"No repository with id {value} in this project.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The window itself is resolved with the figures (its end may be the last commit's day); here
        # only what the parameters say is checked, without reading the database.
        try:
            window_resolve(since=attrs.get("since"), until=attrs.get("until"), days=attrs.get("days"))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return {"since": None, "until": None, "days": None, "repository": None, **attrs}


class CouplingQuerySerializer(CodeAnalyticsQuerySerializer):
    min_shared = serializers.IntegerField(
        required=False,
        default=COUPLING_MIN_SHARED,
        min_value=1,
        max_value=10_000,
        help_text=f"Only pairs changed together by at least this many commits "
        f"(default {COUPLING_MIN_SHARED}).",
    )


# --- Responses ----------------------------------------------------------------------------------------


class WindowDaysSerializer(serializers.Serializer[Any]):
    since = serializers.DateField(help_text="First day of the window (UTC), included.")
    until = serializers.DateField(help_text="Last day of the window (UTC), included.")
    days = serializers.IntegerField(help_text="Days in the window.")
    anchored_to_last_activity = serializers.BooleanField(
        help_text="True when the window ends on the day of the last commit instead of today, because "
        "nothing was committed since."
    )
    last_activity_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Time of the last commit in scope, when the window's end was left to APM; else null.",
    )


class WindowSerializer(serializers.Serializer[Any]):
    since = serializers.DateTimeField(help_text="Start of the window (included), 00:00 UTC of its first day.")
    until = serializers.DateTimeField(help_text="End of the window (excluded), 00:00 UTC after its last day.")
    repository = serializers.IntegerField(
        allow_null=True, help_text="The repository the figures are confined to, or null for all."
    )
    window = WindowDaysSerializer(
        help_text="The window used, in days: pass since and until back to get the same figures."
    )


class HotspotSerializer(serializers.Serializer[Any]):
    file = serializers.IntegerField(help_text="Id of the file (/api/v1/files/{id}/).")
    repository = serializers.IntegerField(help_text="Id of its repository.")
    path = serializers.CharField(
        help_text="Path at the tip; changes made under an earlier name are not counted."
    )
    language = serializers.CharField()
    lines = serializers.IntegerField(help_text="Lines at the tip (0 for binary files).")
    changes = serializers.IntegerField(help_text="Commits that changed the file in the window.")
    churn = serializers.IntegerField(help_text="Lines added plus deleted in the window.")
    authors = serializers.IntegerField(help_text="Distinct author e-mails of those commits.")
    last_changed_at = serializers.DateTimeField(help_text="Commit time of its last change in the window.")
    score = serializers.IntegerField(
        help_text="changes x lines (lines counted as 1 for binary or empty files): the ranking."
    )


class HotspotListSerializer(WindowSerializer):
    """Files ranked by changes in the window x size (docs/analytics.md)."""

    results = HotspotSerializer(many=True)


class CouplingSerializer(serializers.Serializer[Any]):
    repository = serializers.IntegerField(help_text="Id of the repository of both files.")
    file_a = serializers.IntegerField(help_text="Id of the first file (paths in code point order).")
    path_a = serializers.CharField()
    file_b = serializers.IntegerField(help_text="Id of the second file.")
    path_b = serializers.CharField()
    shared = serializers.IntegerField(help_text="Commits that changed both files.")
    changes_a = serializers.IntegerField(help_text="Commits that changed the first file.")
    changes_b = serializers.IntegerField(help_text="Commits that changed the second file.")
    degree = serializers.FloatField(
        help_text="shared / min(changes_a, changes_b), 0.0 to 1.0: 1.0 when every change of the less "
        "often changed file also changed the other."
    )


class CouplingListSerializer(WindowSerializer):
    """Pairs of files that change in the same commits; merges and mass commits are left out."""

    max_files = serializers.IntegerField(
        help_text="Commits touching more files than this (APM_COUPLING_MAX_FILES) are not counted."
    )
    results = CouplingSerializer(many=True)


class AreaSerializer(serializers.Serializer[Any]):
    area = serializers.CharField(help_text="Top-level directory (`docs/`), or `(root)` for top-level files.")
    lines = serializers.IntegerField(help_text="Lines added plus deleted there by the author in the window.")


class ContributorSerializer(serializers.Serializer[Any]):
    author_email = serializers.CharField(help_text="Authors are told apart by e-mail.")
    author_name = serializers.CharField(help_text="The name of the author's latest commit in the window.")
    commits = serializers.IntegerField(
        help_text="Commits in the window, merges left out (as git shortlog -sne --no-merges counts)."
    )
    merges = serializers.IntegerField(help_text="Merge commits in the window.")
    lines_added = serializers.IntegerField(help_text="Merges add no lines of their own.")
    lines_deleted = serializers.IntegerField()
    active_days = serializers.IntegerField(
        help_text="Distinct days (UTC) with at least one commit, merges included."
    )
    first_commit_at = serializers.DateTimeField()
    last_commit_at = serializers.DateTimeField()
    main_areas = AreaSerializer(many=True, help_text=f"The {MAIN_AREAS} directories with most lines changed.")


class ContributorListSerializer(WindowSerializer):
    """Authors of the window, most commits (merges left out) first, then most merges."""

    results = ContributorSerializer(many=True)


# --- Views --------------------------------------------------------------------------------------------


class CodeAnalyticsViewSet(ProjectFiguresViewSet):
    """Code figures of a project. Members of every role may read them; to others it does not exist."""

    def _figures(self, figure: str, query_class: type[CodeAnalyticsQuerySerializer]) -> dict[str, Any]:
        project = self.get_object()
        query = self.query_validate(query_class, project=project)
        figures = code_figures_cached(project=project, figure=figure, **query)
        return {**figures, "window": figures["window"].as_dict()}

    @extend_schema(
        summary="Hotspots: files ranked by changes x size in a window (default the last 90 days of activity)",
        parameters=[CodeAnalyticsQuerySerializer],
        responses=HotspotListSerializer,
    )
    @action(detail=True, methods=["get"])
    def hotspots(self, request: Request, key: str) -> Response:
        return Response(HotspotListSerializer(self._figures("hotspots", CodeAnalyticsQuerySerializer)).data)

    @extend_schema(
        summary="Change coupling: pairs of files changed by the same commits",
        parameters=[CouplingQuerySerializer],
        responses=CouplingListSerializer,
    )
    @action(detail=True, methods=["get"])
    def coupling(self, request: Request, key: str) -> Response:
        return Response(CouplingListSerializer(self._figures("coupling", CouplingQuerySerializer)).data)

    @extend_schema(
        summary="Contributors: commits, merges, lines, active days and main areas per author in a window",
        parameters=[CodeAnalyticsQuerySerializer],
        responses=ContributorListSerializer,
    )
    @action(detail=True, methods=["get"])
    def contributors(self, request: Request, key: str) -> Response:
        return Response(
            ContributorListSerializer(self._figures("contributors", CodeAnalyticsQuerySerializer)).data
        )
