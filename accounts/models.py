from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


def person_name(first_name: str, last_name: str, username: str) -> str:
    """How pages name a person: the full name, or the username without one (as
    `get_full_name() or get_username()`), for rows read as plain values."""
    return f"{first_name} {last_name}".strip() or username


class User(AbstractUser):  # type: ignore[django-manager-missing]  # django-otp's Device (untyped) subclassed in accounts.sso
    """A person (or an integration's service account) who signs in to Portcullis."""

    # Consecutive failed second-factor attempts across all devices; throttling slows
    # guessing per device, this counter ends it by locking the account.
    otp_failure_count = models.PositiveIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)
    lock_reason = models.CharField(max_length=200, blank=True)
    # Service accounts never log in interactively; API tokens are bound to them.
    is_service_account = models.BooleanField(default=False)

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None


class UserSession(models.Model):
    """The server's record of one signed-in browser session.

    The session store holds the session's data; this row is the authority on whether the
    session may still be used, so a supervisor (or "log out everywhere") can end sessions
    on other machines, and sockets can check it. Only a hash of the session key is kept.
    """

    class EndReason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        LOGOUT_EVERYWHERE = "logout_everywhere", "Logged out everywhere"
        IDLE = "idle", "Idle timeout"
        ABSOLUTE = "absolute", "Absolute timeout"
        DEVICE_CHANGED = "device_changed", "Browser changed"
        LOCKED = "locked", "Account locked"
        REVOKED = "revoked", "Revoked by a supervisor"
        FACTOR_CHANGED = "factor_changed", "Second factor changed"
        DEVICE_REVOKED = "device_revoked", "Device revoked"
        DEVICE_UNBOUND = "device_unbound", "Not bound to a device"
        IDP_LOGOUT = "idp_logout", "Signed out at the identity provider"
        IDP_REAUTHENTICATE = "idp_reauthenticate", "Identity provider sign-in too old"
        DEPROVISIONED = "deprovisioned", "Deprovisioned by the identity provider"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # The session is bound to the browser that opened it: a stolen cookie replayed from
    # another user agent ends the session.
    user_agent_hash = models.CharField(max_length=64)
    # The device whose key this session is bound to (accounts.devices); revoking it ends us.
    device = models.ForeignKey(
        "accounts.BrowserDevice", null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    # Device Bound Session Credentials (accounts.devices.dbsc): the key the browser keeps for
    # this session itself (in a TPM where it has one), registered once. Its thumbprint is also
    # the DBSC session identifier the browser refreshes under.
    dbsc_public_key = models.JSONField(null=True, blank=True, help_text="Public JWK; never a private key.")
    dbsc_key_thumbprint = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["user"], condition=models.Q(ended_at__isnull=True), name="usersession_active_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.user_id}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None


class ApiToken(models.Model):
    """A scoped, expiring credential for an integration, bound to a service account.

    Only a SHA-256 of the secret is stored; the full token is shown once at creation.
    The service account still needs grants: a token only narrows them, to its inboxes
    and to read (or read/write).
    """

    PREFIX = "pcl"

    name = models.CharField(max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        limit_choices_to={"is_service_account": True},
    )
    inboxes = models.ManyToManyField("inbox.Inbox", related_name="api_tokens")
    can_write = models.BooleanField(default=False, help_text="Off: read only.")
    lookup_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set: the token provisions this IdP's accounts over SCIM and opens nothing else.
    scim_provider = models.ForeignKey(
        "accounts.IdentityProvider",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="scim_tokens",
        help_text="Only for SCIM provisioning from this identity provider; the inbox API refuses it.",
    )
    # The person an integration acts for: their offboarding ends it too (accounts.scim).
    revoked_with = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Revoked at once when this person is deactivated by the company's directory (SCIM).",
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}_{self.lookup_id}_…)"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class ChangeKind(models.TextChoices):
    """Privilege changes that can need a second supervisor's approval."""

    CREATE_ACCOUNT = "create_account", "Create an account"
    ADD_TO_GROUP = "add_to_group", "Add someone to a team or role"
    GRANT = "grant", "Grant access without an expiry or beyond the maximum"
    RESET_PASSWORD = "reset_password", "Reset another person's password"
    RESET_FACTOR = "reset_factor", "Reset another person's second factor"
    CHANGE_SUPERVISOR = "change_supervisor", "Change a supervisor's account"
    REACTIVATE = "reactivate", "Reactivate an account"
    IDP_GROUP_MAPPING = "idp_group_mapping", "Map an identity provider's group to a team or role"


class ApprovalRule(models.Model):
    """Whether a kind of change needs four eyes. Administrators set it; a kind without a
    row needs a second approval (deny by default)."""

    kind = models.CharField(max_length=32, choices=ChangeKind.choices, unique=True)
    requires_second_approval = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {'four eyes' if self.requires_second_approval else 'one person'}"


class ChangeRequest(models.Model):
    """A privilege change waiting for a second supervisor, or its record once decided.

    The payload holds what will be applied (ids and names, never a secret); the requester,
    the approver and the subject are three different people.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        APPLIED = "applied", "Approved and applied"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        FAILED = "failed", "Could not be applied"

    kind = models.CharField(max_length=32, choices=ChangeKind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="change_requests_made"
    )
    # The account the change is about (None until a requested account exists).
    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="change_requests_about",
    )
    payload = models.JSONField(default=dict)
    summary = models.CharField(max_length=300)
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="change_requests_decided",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=models.Q(state="pending"), name="changerequest_pending_idx"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"

    @property
    def is_open(self) -> bool:
        return self.state == self.State.PENDING and self.expires_at > timezone.now()


class EnrollmentCode(models.Model):
    """A single-use, expiring code that lets a person set up their sign-in after an
    approved change (new account, password or factor reset). Handed over out of band;
    only its hash is stored, so neither the database nor the password opens the account."""

    class Purpose(models.TextChoices):
        NEW_ACCOUNT = "new_account", "New account"
        PASSWORD_RESET = "password_reset", "Password reset"
        FACTOR_RESET = "factor_reset", "Second factor reset"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    code_hash = models.CharField(max_length=64, unique=True)
    change_request = models.ForeignKey(ChangeRequest, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} code for {self.user_id}"

    @property
    def sets_password(self) -> bool:
        return self.purpose in (self.Purpose.NEW_ACCOUNT, self.Purpose.PASSWORD_RESET)


# The device registry and single sign-on live in packages of their own; Django finds their
# models through here.
from accounts.devices.models import BrowserDevice  # noqa: E402
from accounts.passkeys.models import Passkey  # noqa: E402
from accounts.sso.models import (  # noqa: E402
    ExternalIdentity,
    IdentityProvider,
    IdentityProviderDevice,
    IdpGroupMapping,
    IdpSession,
    LocalSignInRule,
    ScimGroup,
)

__all__ = [
    "ApiToken",
    "ApprovalRule",
    "BrowserDevice",
    "ChangeKind",
    "ChangeRequest",
    "EnrollmentCode",
    "ExternalIdentity",
    "IdentityProvider",
    "IdentityProviderDevice",
    "IdpGroupMapping",
    "IdpSession",
    "LocalSignInRule",
    "Passkey",
    "ScimGroup",
    "User",
    "UserSession",
]
