"""Admin for outgoing webhooks: subscriptions (saved through webhooks.services) and the delivery log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apm.admin import EstimatedCountPaginator, ReadOnlyAdmin, instance_adopt
from apm.users import request_user
from projects.admin import LiveProjectRowsMixin
from webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from webhooks.services import (
    PING_EVENT,
    WEBHOOK_UPDATABLE_FIELDS,
    webhook_delivery_redeliver,
    webhook_subscription_create,
    webhook_subscription_delete,
    webhook_subscription_secret_rotate,
    webhook_subscription_update,
    webhook_url_validate,
)

if TYPE_CHECKING:
    # Django's form and admin classes take their model as a type parameter in the stubs only.
    _SubscriptionForm = forms.ModelForm[WebhookSubscription]
    _SubscriptionAdmin = admin.ModelAdmin[WebhookSubscription]
else:
    _SubscriptionForm = forms.ModelForm
    _SubscriptionAdmin = admin.ModelAdmin


class WebhookSubscriptionAdminForm(_SubscriptionForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookSubscription
        fields = ["project", "url", "events", "is_active", "description"]

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        try:
            webhook_url_validate(url=url)  # the SSRF check, shown on the field
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["url"]) from exc
        return url


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(LiveProjectRowsMixin, _SubscriptionAdmin):
    """Subscriptions; the secret is shown once, in a message, when it is created or rotated."""

    form = WebhookSubscriptionAdminForm
    list_display = ["url", "project", "event_list", "is_active", "created_at"]
    list_filter = ["is_active"]
    list_select_related = ["project"]
    search_fields = ["url", "project__key", "description"]
    autocomplete_fields = ["project"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookSubscription | None = None) -> list[str]:
        # A subscription belongs to its project; another project's webhook is a new subscription.
        return [*self.readonly_fields, "project"] if obj is not None else list(self.readonly_fields)

    @admin.display(description="Events")
    def event_list(self, obj: WebhookSubscription) -> str:
        return ", ".join(obj.events)

    def save_model(
        self,
        request: HttpRequest,
        obj: WebhookSubscription,
        form: forms.ModelForm[WebhookSubscription],
        change: bool,
    ) -> None:
        data = form.cleaned_data
        if change:
            webhook_subscription_update(
                subscription=obj,
                **{name: data[name] for name in form.changed_data if name in WEBHOOK_UPDATABLE_FIELDS},
            )
            return
        created = webhook_subscription_create(
            project=data["project"],
            url=data["url"],
            events=data["events"],
            description=data["description"],
            is_active=data["is_active"],
            created_by=request_user(request),
        )
        instance_adopt(obj, created)
        self.message_user(
            request,
            f"Signing secret of this webhook (shown once, copy it now): {created.secret}",
            level=messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: WebhookSubscription) -> None:
        webhook_subscription_delete(subscription=obj)

    @admin.action(description="Rotate the signing secret (shows the new one once)", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        for subscription in queryset:
            secret = webhook_subscription_secret_rotate(subscription=subscription)
            self.message_user(
                request, f"New signing secret of {subscription.url}: {secret}", level=messages.WARNING
            )


class WebhookEventFilter(admin.SimpleListFilter):
    """The events from their list, not from a DISTINCT over the whole delivery log."""

    title = "event"
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [*WebhookEvent.choices, (PING_EVENT, "Ping")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> QuerySet[WebhookDelivery]:
        return queryset.filter(event=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: cheap on a big table (no full count, joined subscription, indexed order)."""

    list_display = [
        "event",
        "subscription",
        "status",
        "attempts",
        "last_status_code",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["status", WebhookEventFilter]
    list_select_related = ["subscription"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["-created_at", "-id"]  # idx_webhook_deliv_time
    raw_id_fields = ["subscription"]
    actions = ["send_again"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        queryset = super().get_queryset(request)
        if request.resolver_match and (request.resolver_match.url_name or "").endswith("changelist"):
            queryset = queryset.defer("payload", "response_excerpt")  # shown on the detail page only
        return queryset

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        # Sending makes APM POST to outside URLs: operators who may only look at the log may not.
        return request.user.has_perm("webhooks.change_webhookdelivery")

    @admin.action(description="Send again (failed deliveries)", permissions=["redeliver"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        queued = sum(
            webhook_delivery_redeliver(delivery=delivery)
            for delivery in queryset.filter(status=WebhookDelivery.Status.FAILED)
            .select_related(None)
            .only("pk", "delivery_id")
        )
        self.message_user(request, f"Queued {queued} delivery(ies) again.", level=messages.SUCCESS)
