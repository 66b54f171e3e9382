"""A project's outgoing webhooks through the API: ``/api/v1/projects/{key}/webhooks/``.

Owners, maintainers and staff manage them; other members are refused (403) and non-members see no
project at all (404). The secret is returned twice only: by the creation and by each rotation.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apm.api.pagination import HistoryCursorPagination
from apm.api.serializers import StrictModelSerializer
from apm.users import request_user
from projects.api.base import ProjectInUrlMixin
from projects.models import Membership
from webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from webhooks.services import (
    webhook_delivery_list,
    webhook_ping,
    webhook_subscription_create,
    webhook_subscription_delete,
    webhook_subscription_list,
    webhook_subscription_secret_rotate,
    webhook_subscription_update,
)


class WebhookSubscriptionSerializer(StrictModelSerializer):
    """A URL that receives some of the project's events as signed JSON POSTs (docs/webhooks.md)."""

    read_only_hints = {"secret": "APM makes the secret; get a new one with POST .../rotate-secret/."}

    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        allow_empty=False,
        help_text="The events this URL receives.",
    )
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who created it."
    )

    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "is_active", "description", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Key of the X-APM-Signature-256 HMAC. Shown this once; rotate to get a new one.",
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]


class WebhookSubscriptionSecretSerializer(serializers.Serializer[Any]):
    secret = serializers.CharField(read_only=True, help_text="The new secret; the old one stops working now.")


class WebhookDeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    """One event sent to the subscription, and how its last attempt went."""

    class Meta:
        model = WebhookDelivery
        fields = [
            "delivery_id",
            "event",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "response_excerpt",
            "duration_ms",
            "created_at",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


class DeliveryCursorPagination(HistoryCursorPagination):
    # idx_webhook_deliv_sub_time: the subscription's deliveries, newest first; id breaks ties.
    ordering = ("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="Outgoing webhooks of a project (owners and maintainers)"),
    create=extend_schema(
        summary="Subscribe a URL to the project's events (owners and maintainers)",
        responses={201: WebhookSubscriptionCreatedSerializer},
    ),
    retrieve=extend_schema(summary="One outgoing webhook"),
    partial_update=extend_schema(summary="Change a webhook's URL, events, description or activity"),
    destroy=extend_schema(
        summary="Delete a webhook and its delivery log",
        responses={204: OpenApiResponse(description="Deleted.")},
    ),
)
class WebhookSubscriptionViewSet(
    ProjectInUrlMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Any],  # its deliveries action pages through WebhookDelivery
):
    """``/api/v1/projects/{key}/webhooks/{id}/``."""

    serializer_class = WebhookSubscriptionSerializer
    project_roles = Membership.ADMIN_ROLES  # reading included: the URLs are the project's business
    lookup_value_regex = "[0-9]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends: list[Any] = []
    pagination_class = None  # a project has a handful of webhooks

    def get_queryset(self) -> QuerySet[WebhookSubscription]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookSubscription.objects.none()
        return webhook_subscription_list(project=self.project())

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        project = self.project()
        serializer = WebhookSubscriptionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = webhook_subscription_create(
            project=project, created_by=request_user(request), **serializer.validated_data
        )
        return Response(
            WebhookSubscriptionCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED
        )

    def perform_update(self, serializer: Any) -> None:
        webhook_subscription_update(subscription=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: WebhookSubscription) -> None:
        webhook_subscription_delete(subscription=instance)

    @extend_schema(
        summary="Replace a webhook's signing secret (owners and maintainers)",
        request=None,
        responses={200: WebhookSubscriptionSecretSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, project_key: str, pk: str) -> Response:
        subscription = self.get_object()
        return Response({"secret": webhook_subscription_secret_rotate(subscription=subscription)})

    @extend_schema(
        summary="Send a ping event to the webhook now and report the answer",
        request=None,
        responses={200: WebhookDeliverySerializer},
    )
    @action(detail=True, methods=["post"])
    def ping(self, request: Request, project_key: str, pk: str) -> Response:
        delivery = webhook_ping(subscription=self.get_object())
        return Response(WebhookDeliverySerializer(delivery).data)

    @extend_schema(
        summary="The webhook's deliveries, newest first (cursor pagination)",
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    @action(
        detail=True,
        methods=["get"],
        serializer_class=WebhookDeliverySerializer,
        pagination_class=DeliveryCursorPagination,
    )
    def deliveries(self, request: Request, project_key: str, pk: str) -> Response:
        page = self.paginate_queryset(webhook_delivery_list(subscription=self.get_object()))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
