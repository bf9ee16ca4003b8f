from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.db.models import ManyToManyField, QuerySet
from django.forms import ModelMultipleChoiceField
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import roles, services, supervision, tokens
from accounts.devices import admin as device_admin  # noqa: F401  # registers BrowserDeviceAdmin
from accounts.live import sockets_recheck
from accounts.models import ApiToken, ApprovalRule, ChangeKind, ChangeRequest, User, UserSession
from accounts.passkeys import admin as passkey_admin  # noqa: F401  # registers PasskeyAdmin
from inbox import policy
from inbox.admin import (
    ManagedUsersAdminMixin,
    administrator_only,
    bind_request,
    change_submit,
    submit_membership,
)
from inbox.policy import AccessContext


def _ctx(request: HttpRequest) -> AccessContext:
    return AccessContext.from_request(request)


def _request_change_url(kind: ChangeKind, subject_ids: list[int]) -> str:
    query = urlencode({"kind": kind.value, "subject": ",".join(str(pk) for pk in subject_ids)})
    return f"{reverse('admin:accounts_changerequest_add')}?{query}"


class SupervisedUserChangeForm(UserChangeForm):
    change_reason = forms.CharField(
        label="Reason for new teams or roles",
        max_length=300,
        required=False,
        help_text="Adding a team or role is a privilege change: say why. Removing one applies at once.",
    )

    def added_groups(self) -> list[Group]:
        current = set(self.instance.groups.values_list("pk", flat=True)) if self.instance.pk else set()
        return [group for group in self.cleaned_data.get("groups", []) if group.pk not in current]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.added_groups() and not cleaned.get("change_reason", "").strip():
            self.add_error("change_reason", "Say why this person gets these teams or roles.")
        return cleaned


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Accounts a supervisor manages: those whose whole reach lies inside their delegation.

    Profile fields change directly; a new account, a new team or role, a reactivation and a
    password or second-factor reset are change requests that a second supervisor approves.
    """

    form = SupervisedUserChangeForm
    list_display = ("username", "email", "is_active", "is_staff", "is_locked_display", "last_login")
    list_filter = ("is_active", "is_staff", "is_service_account", "groups")
    search_fields = ("username", "email", "first_name", "last_name")
    actions = ("unlock_accounts", "reset_second_factor", "reset_password", "end_all_sessions")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("is_active", "groups", "change_reason", "is_staff", "is_superuser")}),
        ("Security", {"fields": ("is_service_account", "locked_at", "lock_reason", "otp_failure_count")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    # Staff status follows the roles; superusers and model permissions are not handed out
    # in the admin at all.
    ALWAYS_READONLY = (
        "is_staff",
        "is_superuser",
        "is_service_account",
        "locked_at",
        "lock_reason",
        "otp_failure_count",
        "last_login",
        "date_joined",
    )

    @admin.display(description="Locked", boolean=True)
    def is_locked_display(self, obj: User) -> bool:
        return obj.is_locked

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        ctx = _ctx(request)
        own = User.objects.filter(pk=ctx.user.pk)
        return (policy.managed_users(ctx) | own).distinct().prefetch_related("groups")

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple[str, ...]:
        readonly = list(self.ALWAYS_READONLY)
        # Nobody edits their own access: a stolen supervisor session cannot escalate.
        if obj is not None and obj.pk == request.user.pk:
            readonly += ["is_active", "groups", "change_reason"]
        return tuple(readonly)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField | None:
        if db_field.name == "groups" and not administrator_only(request):
            kwargs["queryset"] = Group.objects.exclude(name=roles.ADMINISTRATOR)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and obj.pk != request.user.pk and not policy.can_manage(_ctx(request), obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Accounts are deactivated, not deleted: the trail refers to them.
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # A new account is a change request; the request form asks for everything it needs.
        return HttpResponseRedirect(_request_change_url(ChangeKind.CREATE_ACCOUNT, []))

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        # Setting someone's password would let the setter sign in as them: it is a reset,
        # approved by a second supervisor, after which the person sets their own.
        return HttpResponseRedirect(_request_change_url(ChangeKind.RESET_PASSWORD, [int(id)]))

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        reactivating = obj.is_active and "is_active" in form.changed_data
        if reactivating:
            obj.is_active = False
        super().save_model(request, obj, form, change)
        if reactivating:
            change_submit(
                request,
                kind=ChangeKind.REACTIVATE,
                summary=f"Reactivate {obj.get_username()}",
                reason=form.cleaned_data.get("change_reason", ""),
                subject=obj,
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        user: User = form.instance
        if "groups" not in form.cleaned_data:
            return
        kept = {group.pk for group in form.cleaned_data["groups"]}
        # Leaving a team or role only narrows access: at once.
        user.groups.remove(*user.groups.exclude(pk__in=kept))
        for group in form.added_groups():
            submit_membership(request, user=user, group=group, reason=form.cleaned_data["change_reason"])

    def _targets(self, request: HttpRequest, queryset: QuerySet[User]) -> list[User]:
        ctx = _ctx(request)
        return [user for user in queryset if user.pk != request.user.pk and policy.can_manage(ctx, user)]

    @admin.action(description="Unlock selected accounts", permissions=["change"])
    def unlock_accounts(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # Unlocking restores nothing the account did not have, and the person still needs
        # their own password and second factor.
        for user in self._targets(request, queryset.filter(locked_at__isnull=False)):
            services.account_unlock(user=user, by=request.user, request=request)  # type: ignore[arg-type]
        messages.success(request, "Accounts unlocked.")

    @admin.action(description="Request a second-factor reset", permissions=["change"])
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse:
        users = [user.pk for user in self._targets(request, queryset)]
        return HttpResponseRedirect(_request_change_url(ChangeKind.RESET_FACTOR, users))

    @admin.action(description="Request a password reset", permissions=["change"])
    def reset_password(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse:
        users = [user.pk for user in self._targets(request, queryset)]
        return HttpResponseRedirect(_request_change_url(ChangeKind.RESET_PASSWORD, users))

    @admin.action(description="End all sessions of the selected users", permissions=["change"])
    def end_all_sessions(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        targets = self._targets(request, queryset)
        for user in targets:
            services.sessions_end_all(user=user, reason=UserSession.EndReason.REVOKED)
        messages.success(
            request, f"Sessions of {len(targets)} account(s) ended; their open pages sign out now."
        )


class ChangeRequestForm(forms.ModelForm[ChangeRequest]):
    """Ask for a privilege change. The kind decides which fields matter; the checks are
    the supervision service's, run again when the request is submitted and approved."""

    REQUESTABLE = (
        ChangeKind.CREATE_ACCOUNT,
        ChangeKind.ADD_TO_GROUP,
        ChangeKind.RESET_PASSWORD,
        ChangeKind.RESET_FACTOR,
        ChangeKind.REACTIVATE,
    )

    kind = forms.ChoiceField(choices=[(kind.value, kind.label) for kind in REQUESTABLE])
    subjects = forms.ModelMultipleChoiceField(
        label="Accounts", queryset=User.objects.none(), required=False, help_text="Who the change is about."
    )
    group = forms.ModelChoiceField(
        label="Team or role",
        queryset=Group.objects.none(),
        required=False,
        help_text="For “add to a team or role”.",
    )
    username = forms.CharField(max_length=150, required=False, help_text="For a new account.")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    groups = forms.ModelMultipleChoiceField(
        label="Teams and roles of the new account", queryset=Group.objects.none(), required=False
    )

    class Meta:
        model = ChangeRequest
        fields = ["reason"]

    request: HttpRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ctx = _ctx(self.request)
        groups = (
            Group.objects.all()
            if policy.is_administrator(ctx.user)
            else Group.objects.exclude(name=roles.ADMINISTRATOR)
        )
        self._set_queryset("subjects", policy.managed_users(ctx))
        self._set_queryset("group", groups)
        self._set_queryset("groups", groups)
        if "reason" in self.fields:  # a decided or pending request shows it read-only
            self.fields["reason"].help_text = "Required. The approver and the audit trail see it."

    def _set_queryset(self, name: str, queryset: QuerySet[Any]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101  # declared above
        field.queryset = queryset

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind == ChangeKind.CREATE_ACCOUNT:
            if not cleaned.get("username"):
                self.add_error("username", "A new account needs a username.")
        elif not cleaned.get("subjects"):
            self.add_error("subjects", "Choose the accounts this change is about.")
        if kind == ChangeKind.ADD_TO_GROUP and not cleaned.get("group"):
            self.add_error("group", "Choose the team or role.")
        return cleaned


@admin.register(ChangeRequest)
class ChangeRequestAdmin(admin.ModelAdmin[ChangeRequest]):
    """The four-eyes queue: pending privilege changes, approved or rejected by a second
    supervisor with scope over them; decided ones stay as the record."""

    form = ChangeRequestForm
    change_form_template = "admin/accounts/changerequest/change_form.html"
    list_display = (
        "id",
        "summary",
        "kind",
        "state_now",
        "requested_by",
        "subject",
        "created_at",
        "expires_at",
    )
    list_filter = ("state", "kind")
    search_fields = ("summary", "reason", "requested_by__username", "subject__username")
    actions = ("approve", "reject")
    REQUEST_FIELDS = (
        "kind",
        "subjects",
        "group",
        "username",
        "first_name",
        "last_name",
        "email",
        "groups",
        "reason",
    )
    readonly_fields = (
        "kind",
        "state_now",
        "summary",
        "reason",
        "requested_by",
        "subject",
        "payload",
        "created_at",
        "expires_at",
        "decided_by",
        "decided_at",
        "decision_note",
    )

    @admin.display(description="State", ordering="state")
    def state_now(self, obj: ChangeRequest) -> str:
        if obj.state == ChangeRequest.State.PENDING and not obj.is_open:
            return str(ChangeRequest.State.EXPIRED.label)
        return obj.get_state_display()

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChangeRequest]:
        return supervision.change_requests_in_scope(_ctx(request))

    def get_form(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return bind_request(super().get_form(request, *args, **kwargs), request)

    def get_fields(self, request: HttpRequest, obj: ChangeRequest | None = None) -> Any:
        if obj is None:
            return (
                "kind",
                "subjects",
                "group",
                "username",
                "first_name",
                "last_name",
                "email",
                "groups",
                "reason",
            )
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: ChangeRequest | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = {"kind": request.GET.get("kind", "")}
        subjects = [pk for pk in request.GET.get("subject", "").split(",") if pk.isdigit()]
        if subjects:
            initial["subjects"] = subjects
        return initial

    def has_delete_permission(self, request: HttpRequest, obj: ChangeRequest | None = None) -> bool:
        return False  # the record of who asked and who approved stays

    def save_model(self, request: HttpRequest, obj: ChangeRequest, form: Any, change: bool) -> None:
        if change:
            return  # decided with the buttons, never edited
        data = form.cleaned_data
        kind = ChangeKind(data["kind"])
        if kind == ChangeKind.CREATE_ACCOUNT:
            payload = {
                "username": data["username"],
                "email": data.get("email", ""),
                "first_name": data.get("first_name", ""),
                "last_name": data.get("last_name", ""),
                "group_ids": [group.pk for group in data.get("groups", [])],
            }
            self._submit(
                request, kind, None, f"Create the account {data['username']}", payload, data["reason"]
            )
            return
        for subject in data["subjects"]:
            summary, payload = f"{kind.label}: {subject.get_username()}", {}
            if kind == ChangeKind.ADD_TO_GROUP:
                summary, payload = (
                    f"Add {subject.get_username()} to {data['group'].name}",
                    {"group_id": data["group"].pk},
                )
            self._submit(request, kind, subject, summary, payload, data["reason"])

    def _submit(
        self,
        request: HttpRequest,
        kind: ChangeKind,
        subject: User | None,
        summary: str,
        payload: dict[str, Any],
        reason: str,
    ) -> None:
        outcome = change_submit(
            request, kind=kind, summary=summary, reason=reason, subject=subject, payload=payload
        )
        if outcome is not None:
            self._show_code(request, outcome)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    def log_addition(self, request: HttpRequest, obj: ChangeRequest, message: Any) -> Any:
        return None  # the change requests themselves are the record (and auditlog tracks them)

    def response_add(
        self, request: HttpRequest, obj: ChangeRequest, post_url_continue: str | None = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:accounts_changerequest_changelist"))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST" and ("_approve" in request.POST or "_reject" in request.POST):
            change = self.get_object(request, object_id)
            if change is None:
                raise Http404
            self._decide(request, change, approve="_approve" in request.POST)
            return HttpResponseRedirect(reverse("admin:accounts_changerequest_changelist"))
        return super().change_view(request, object_id, form_url, extra_context)

    def _decide(self, request: HttpRequest, change: ChangeRequest, *, approve: bool) -> None:
        ctx = _ctx(request)
        try:
            if approve:
                outcome = supervision.change_approve(ctx=ctx, request=request, change_id=change.pk)
                messages.success(request, f"#{change.pk} {change.summary}: approved and applied.")
                self._show_code(request, outcome)
            else:
                supervision.change_reject(ctx=ctx, request=request, change_id=change.pk)
                messages.success(request, f"#{change.pk} {change.summary}: rejected.")
        except supervision.SupervisionRefused as refused:
            messages.error(request, f"#{change.pk} {change.summary}: {refused}")

    def _show_code(self, request: HttpRequest, outcome: supervision.Outcome) -> None:
        if outcome.enrollment_code is None:
            return
        link = (
            request.build_absolute_uri(reverse("accounts:activate"))
            + "?"
            + urlencode({"code": outcome.enrollment_code})
        )
        # The one and only time the code is shown: only its hash is stored.
        messages.warning(
            request,
            f"Hand this enrollment code to {outcome.change.subject} in person or by phone, never by "
            f"email; it is shown once and expires: {outcome.enrollment_code}  ({link})",
        )

    @admin.action(description="Approve the selected changes", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ChangeRequest]) -> None:
        for change in queryset:
            self._decide(request, change, approve=True)

    @admin.action(description="Reject the selected changes", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ChangeRequest]) -> None:
        for change in queryset:
            self._decide(request, change, approve=False)


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(admin.ModelAdmin[ApprovalRule]):
    """Which changes need four eyes: administrators decide."""

    list_display = ("kind", "requires_second_approval")
    list_editable = ("requires_second_approval",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request)

    def has_view_permission(self, request: HttpRequest, obj: ApprovalRule | None = None) -> bool:
        return administrator_only(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request)

    def has_change_permission(self, request: HttpRequest, obj: ApprovalRule | None = None) -> bool:
        return administrator_only(request)

    def has_delete_permission(self, request: HttpRequest, obj: ApprovalRule | None = None) -> bool:
        return False


@admin.register(UserSession)
class UserSessionAdmin(ManagedUsersAdminMixin, admin.ModelAdmin[UserSession]):
    list_display = (
        "user",
        "created_at",
        "last_seen_at",
        "ip_address",
        "user_agent",
        "ended_at",
        "end_reason",
    )
    list_filter = ("end_reason", ("ended_at", admin.EmptyFieldListFilter))
    search_fields = ("user__username", "ip_address")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "created_at",
        "last_seen_at",
        "ip_address",
        "user_agent",
        "user_agent_hash",
        "ended_at",
        "end_reason",
    )
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UserSession | None = None) -> bool:
        return False

    @admin.action(description="End selected sessions", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[UserSession]) -> None:
        open_sessions = queryset.filter(ended_at__isnull=True)
        user_ids = set(open_sessions.values_list("user_id", flat=True))
        count = open_sessions.update(ended_at=timezone.now(), end_reason=UserSession.EndReason.REVOKED)
        sockets_recheck(user_ids=user_ids)
        messages.success(request, f"{count} session(s) ended; their open pages sign out now.")


class DeviceAdmin(ManagedUsersAdminMixin, admin.ModelAdmin[Any]):
    """Second factors, listed (never their keys). Removing one is a second-factor reset,
    which goes through a change request."""

    list_display = ("user", "name", "confirmed")
    list_select_related = ("user",)
    search_fields = ("user__username", "name")
    fields = ("user", "name", "confirmed")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


for device_model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(device_model):
        admin.site.unregister(device_model)
    admin.site.register(device_model, DeviceAdmin)


class ApiTokenForm(forms.ModelForm[ApiToken]):
    class Meta:
        model = ApiToken
        fields = ["name", "user", "inboxes", "can_write", "expires_at"]

    def clean_user(self) -> User:
        user: User = self.cleaned_data["user"]
        try:
            tokens.owner_check(user)
        except tokens.InvalidToken as error:
            raise forms.ValidationError(str(error)) from None
        return user

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data["expires_at"]
        try:
            tokens.expiry_check(expires_at)
        except tokens.InvalidToken as error:
            raise forms.ValidationError(str(error)) from None
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    form = ApiTokenForm
    list_display = ("name", "user", "inbox_names", "can_write", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("can_write", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "lookup_id", "user__username")
    list_select_related = ("user",)
    filter_horizontal = ("inboxes",)
    actions = ("revoke",)
    ISSUE_FIELDS = ("name", "user", "inboxes", "can_write", "expires_at", "revoked_with")
    RECORD_FIELDS = ("lookup_id", "created_at", "last_used_at", "revoked_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return super().get_queryset(request).prefetch_related("inboxes")

    @admin.display(description="Inboxes")
    def inbox_names(self, obj: ApiToken) -> str:
        return ", ".join(inbox.name for inbox in obj.inboxes.all())

    def _issue_fields(self, request: HttpRequest) -> tuple[str, ...]:
        # SCIM provisioning tokens create and deactivate accounts: administrators only.
        return self.ISSUE_FIELDS + (("scim_provider",) if administrator_only(request) else ())

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        fields = self._issue_fields(request)
        return fields if obj is None else fields + self.RECORD_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        # A token's reach is fixed when it is issued: widening it later would hand a
        # secret already out in the world more than it was issued for. Issue a new one.
        return () if obj is None else self._issue_fields(request) + self.RECORD_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        # Revoked, never deleted: access events refer to the token by id.
        return False

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        plaintext = tokens.credential_assign(obj)
        super().save_model(request, obj, form, change)
        tokens.token_issued_record(token=obj, by=request.user, request=request)  # type: ignore[arg-type]
        # The one and only time the secret is shown: only its hash is stored.
        messages.warning(request, f"Copy this API token now, it will not be shown again: {plaintext}")

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = tokens.tokens_revoke(tokens=queryset, by=request.user, request=request)  # type: ignore[arg-type]
        messages.success(request, f"{count} token(s) revoked.")


# Single sign-on's admin lives with its package; autodiscovery finds only this module.
from accounts.sso import admin as sso_admin  # noqa: E402, F401
