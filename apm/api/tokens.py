"""API tokens: create (the secret is shown once), list, revoke; and who am I."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import authentication, exceptions, mixins, serializers, status, throttling, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apm.api.authentication import NulSafeBasicAuthentication, TokenAuthentication
from apm.api.serializers import StrictModelSerializer
from apm.api.throttling import FailedAuthenticationThrottle, ScopedThrottle, UserThrottle
from apm.models import ApiToken
from apm.services import api_token_create, api_token_revoke
from apm.users import request_user


class ApiTokenSerializer(StrictModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "scope",
            "expires_at",
            "is_active",
            "last_used_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = ["id", "prefix", "is_active", "last_used_at", "revoked_at", "created_at"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret. Shown this once: store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


@extend_schema_view(
    list=extend_schema(summary="Your API tokens (secrets are never shown again)"),
    create=extend_schema(
        summary="Create an API token; the response carries its secret, once",
        description="Also accepts HTTP Basic authentication (username and password), to get a first token.",
        responses={201: ApiTokenCreatedSerializer},
    ),
    retrieve=extend_schema(summary="One of your tokens"),
    destroy=extend_schema(summary="Revoke a token", responses={204: OpenApiResponse(description="Revoked.")}),
)
class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ApiTokenSerializer
    # Token first: DRF takes the WWW-Authenticate challenge from the first class, and Session has none,
    # so with Session first a missing or wrong credential (a bad Basic password) answered 403, not 401.
    authentication_classes = [
        TokenAuthentication,
        NulSafeBasicAuthentication,
        authentication.SessionAuthentication,
    ]
    throttle_scope = "tokens"
    filterset_fields = ["scope"]
    ordering = ["-created_at", "-id"]

    def get_throttles(self) -> list[throttling.BaseThrottle]:
        # Creating tokens is rate-limited on its own scope; listing and revoking only as any request.
        if self.action == "create":
            return [UserThrottle(), ScopedThrottle()]
        return [UserThrottle()]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        failures = FailedAuthenticationThrottle()
        if failures.exhausted(request):
            # DRF raises Throttled(wait) with None too (no estimate); its stubs say float only.
            self.throttled(request, failures.wait())  # type: ignore[arg-type]
        try:
            super().initial(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            failures.failure_record(request)
            raise

    def get_queryset(self) -> QuerySet[ApiToken]:
        # Everyone, staff included, sees and revokes their own tokens only; operators use the admin.
        return ApiToken.objects.filter(user_id=request_user(self.request).pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if isinstance(request.auth, ApiToken):
            # A leaked token must not outlive its own expiry or revocation by minting a successor.
            raise exceptions.PermissionDenied(
                "Tokens are created with a password (HTTP Basic) or a signed-in session, not with a token."
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, raw = api_token_create(user=request_user(request), **serializer.validated_data)
        token.token = raw  # type: ignore[attr-defined]  # the secret, for the serializer, this once
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        api_token_revoke(token=instance)


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField()
    token = ApiTokenSerializer(allow_null=True, help_text="The token this request was made with, if any.")


class MeView(APIView):
    """Who the request is authenticated as, and with which token."""

    @extend_schema(summary="The authenticated user", responses=MeSerializer)
    def get(self, request: Request) -> Response:
        user = request_user(request)
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return Response(
            MeSerializer(
                {
                    "id": user.pk,
                    "username": user.get_username(),
                    "email": user.email,
                    "is_staff": user.is_staff,
                    "token": token,
                }
            ).data
        )
