"""Passkeys. Django finds this model through accounts.models."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_otp.models import Device, TimestampMixin


class Passkey(TimestampMixin, Device):
    """A WebAuthn credential as a django-otp device, so a session it verified carries its
    persistent id ("accounts.passkey/7") and the policy reads its strength from that. It
    never accepts a typed code: it is verified by an assertion (accounts.passkeys.services)."""

    # Annotated: django-otp's Device is untyped, so the plugin cannot infer these.
    # base64url of the credential id the authenticator chose: how an assertion names it.
    credential_id: models.CharField[str, str] = models.CharField(max_length=1400, unique=True)
    public_key: models.BinaryField[bytes, bytes] = models.BinaryField()
    sign_count: models.PositiveBigIntegerField[int, int] = models.PositiveBigIntegerField(default=0)
    aaguid: models.CharField[str, str] = models.CharField(max_length=36, blank=True)
    # "single_device" (bound to one authenticator) or "multi_device" (synced).
    device_type: models.CharField[str, str] = models.CharField(max_length=16)
    backed_up: models.BooleanField[bool, bool] = models.BooleanField(default=False)

    @property
    def authenticator_name(self) -> str:
        """The authenticator model its AAGUID names (PASSKEY_AUTHENTICATOR_NAMES)."""
        return str(settings.PASSKEY_AUTHENTICATOR_NAMES.get(self.aaguid, "Unknown authenticator"))

    @property
    def is_device_bound(self) -> bool:
        """Bound to one authenticator: never backup eligible, so never copied to another
        device by a sync service (WebAuthn's backup eligibility flag, fixed at creation)."""
        return self.device_type == "single_device" and not self.backed_up

    def verify_token(self, token: str) -> bool:
        return False
