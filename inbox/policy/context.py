"""Who is asking, from where, with which signals: the input of every decision."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.http import Http404, HttpRequest
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.devices.services import TRUST_META_KEY as DEVICE_TRUST_META_KEY
from accounts.models import ApiToken, User
from accounts.services import (
    IDP_ASSURANCE_KEY,
    OTP_VERIFIED_AT_KEY,
    PASSKEY_FLAGS_KEY,
    SESSION_STARTED_KEY,
    PasskeyFlags,
    verification_is_fresh,
)
from audit.services import SESSION_ID_KEY, client_ip


class Action(enum.StrEnum):
    VIEW = "view"
    REPLY = "reply"  # reply, notes, status and labels: working the conversation
    ASSIGN = "assign"
    EXPORT = "export"
    MANAGE = "manage"


INBOX_CODENAMES = {action: f"{action.value}_inbox" for action in Action}
# Conversation-level grants (escalations) carry view and reply only.
CONVERSATION_CODENAMES = {Action.VIEW: "view_conversation", Action.REPLY: "reply_conversation"}
BILLING_PERMISSION = "inbox.view_invoice"

Surface = Literal["web", "api", "socket", "task"]


class Denied(Exception):
    """Allowed to see the object but not to do this to it: answered with 403."""


class StepUpRequired(Denied):
    """A fresh second factor would allow this: pages ask for one inline and continue, the
    API answers 403 with the code `step_up_required`."""

    def __init__(self, message: str, rule_ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.rule_ids = rule_ids

    def body(self) -> dict[str, object]:
        """The API's answer, the same from DRF views and from the pages' gate."""
        return {"detail": str(self), "code": "step_up_required", "rules": list(self.rule_ids)}


def _passkey_flags(persistent_id: str | None, flags: object) -> PasskeyFlags | None:
    """The session's passkey flags, if they are those of the device that verified it."""
    if isinstance(flags, dict) and persistent_id and flags.get("device") == persistent_id:
        return flags  # type: ignore[return-value]  # written only by session_mark_verified
    return None


def _authenticator(
    persistent_id: str | None, idp_assurance: str | None, passkey_flags: PasskeyFlags | None
) -> str | None:
    # django-otp's persistent ids name the device's model: "otp_totp.totpdevice/3".
    if not persistent_id:
        return None
    # A session the company's IdP verified is as strong as the IdP's acr/amr said.
    if persistent_id.startswith("accounts.identityproviderdevice/"):
        return idp_assurance or "other"
    if persistent_id.startswith("accounts.passkey/"):
        # Device-bound: the private key never leaves that authenticator (no sync account to
        # phish or take over), and the person unlocked it (UV), not merely touched it.
        bound = passkey_flags is not None and passkey_flags["device_bound"] and passkey_flags["user_verified"]
        return "passkey_bound" if bound else "passkey"
    if persistent_id.startswith("otp_totp."):
        return "totp"
    if persistent_id.startswith("otp_static."):
        return "backup"
    return "other"


@dataclass(frozen=True)
class AccessContext:
    """The user plus session, token and address, and the signals rules read: session age,
    second factor, step-up freshness. Signals a later part provides (device trust, risk)
    are None — absent — until then, and a rule condition on an absent signal is not met.
    """

    user: User
    session_id: int | None = None
    api_token: ApiToken | None = None
    ip_address: str | None = None
    surface: Surface = "web"
    session_started_at: float | None = None
    verified_at: float | None = None
    authenticator: str | None = None
    # What the verifying passkey proved, when a passkey verified the session.
    passkey_flags: PasskeyFlags | None = None
    device_trust: str | None = None
    risk_score: int | None = None
    # Memo for the user's group ids, read only when a rule filters on roles or teams.
    _memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_request(cls, request: HttpRequest) -> AccessContext:
        user = request.user
        if not isinstance(user, User):
            raise Http404
        token = getattr(request, "auth", None)
        session = getattr(request, "session", None)
        get = session.get if session is not None else {}.get
        authenticator, passkey_flags = cls.session_factor(get)
        return cls(
            user=user,
            session_id=get(SESSION_ID_KEY),
            api_token=token if isinstance(token, ApiToken) else None,
            ip_address=client_ip(request),
            surface="api" if request.path_info.startswith("/api/") else "web",
            session_started_at=get(SESSION_STARTED_KEY),
            verified_at=get(OTP_VERIFIED_AT_KEY),
            authenticator=authenticator,
            passkey_flags=passkey_flags,
            # Set by the device gate (accounts.devices) for a session bound to a device.
            device_trust=request.META.get(DEVICE_TRUST_META_KEY),
        )

    @staticmethod
    def session_factor(get: Callable[[str], Any]) -> tuple[str | None, PasskeyFlags | None]:
        """The second factor a session's data names: the `authenticator` signal and the
        passkey's flags, the same for a request and for a socket reading the session store."""
        persistent_id = get(DEVICE_ID_SESSION_KEY)
        passkey_flags = _passkey_flags(persistent_id, get(PASSKEY_FLAGS_KEY))
        return _authenticator(persistent_id, get(IDP_ASSURANCE_KEY), passkey_flags), passkey_flags

    @classmethod
    def for_task(cls, user: User) -> AccessContext:
        return cls(user=user, surface="task")

    @property
    def authenticator_input(self) -> str:
        """The second factor as a rule's record shows it: "passkey (synced)" says what a
        device-bound requirement would have blocked, not only that a passkey was used."""
        flags = self.passkey_flags
        if self.authenticator != "passkey" or flags is None:
            return self.authenticator or "absent"
        return "passkey (synced)" if not flags["device_bound"] else "passkey (no user verification)"

    @property
    def step_up_fresh(self) -> bool:
        return verification_is_fresh(self.verified_at)

    @property
    def group_ids(self) -> frozenset[int]:
        if "group_ids" not in self._memo:
            membership = User.groups.through.objects.filter(user_id=self.user.pk)
            self._memo["group_ids"] = frozenset(membership.values_list("group_id", flat=True))
        return self._memo["group_ids"]  # type: ignore[return-value]  # set just above
