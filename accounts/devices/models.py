"""The device registry. Django finds these models through accounts.models."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class BrowserDevice(models.Model):
    """One browser profile that signed in: the public half of a key pair it made itself
    (WebCrypto ECDSA P-256, the private half non-extractable in its IndexedDB), or — for a
    browser without WebCrypto, where policy allows — a random device cookie, which a thief
    copies with the session and which therefore earns a lower trust level."""

    class Binding(models.TextChoices):
        KEY = "key", "Device key"
        COOKIE = "cookie", "Device cookie (weaker)"

    class Approval(models.TextChoices):
        UNREVIEWED = "unreviewed", "Not reviewed"
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved", "Approved"
        # Opened by its owner's passkey (DEVICE_NEW_DEVICE "passkey_or_approval"): a state
        # of its own, not APPROVED with a note, so everything that reads APPROVED as "a
        # supervisor vouched for it" (trust, rules, the admin's filter) stays true.
        CONFIRMED = "confirmed", "Confirmed by its owner's passkey"

    class Trust(models.TextChoices):
        # The levels policy rules compare (inbox.policy.rules.DEVICE_TRUST_ORDER).
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="browser_devices"
    )
    name = models.CharField(max_length=100)
    binding = models.CharField(max_length=10, choices=Binding.choices)
    # KEY: the JWK SHA-256 thumbprint (RFC 7638). COOKIE: SHA-256 of the device cookie.
    key_thumbprint = models.CharField(max_length=64)
    public_key = models.JSONField(null=True, blank=True, help_text="Public JWK; never a private key.")
    user_agent = models.CharField(max_length=300, blank=True)
    browser_family = models.CharField(max_length=50, blank=True)
    browser_version = models.CharField(max_length=30, blank=True)
    os_family = models.CharField(max_length=50, blank=True)
    client_hints = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)
    approval = models.CharField(max_length=12, choices=Approval.choices, default=Approval.UNREVIEWED)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The last signed posture attestation of an MDM/EDR for this key (accounts.devices.attestation).
    posture = models.JSONField(default=dict, blank=True)
    posture_expires_at = models.DateTimeField(null=True, blank=True)
    # The last passkey that verified a session of this device (accounts.passkeys), for its
    # posture: device-bound or synced, and the authenticator model. A link, not a copy, so a
    # removed passkey vouches for nothing any more. Shown, never a reason for more trust.
    last_passkey = models.ForeignKey(
        "accounts.Passkey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_passkey_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "key_thumbprint"], name="browserdevice_user_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} of {self.user_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def posture_compliant(self) -> bool | None:
        """What the device's management last attested, while that still holds; None: nothing
        fresh was attested."""
        if self.posture_expires_at is None or self.posture_expires_at <= timezone.now():
            return None
        return self.posture.get("compliant") is True

    @property
    def browser_outdated(self) -> bool:
        """Older than DEVICE_MIN_BROWSER_VERSIONS asks of its browser family (a family the
        setting does not name has no minimum). The version is what the browser sent: a
        posture signal, not a proof, so it can only lower trust."""
        minimum = settings.DEVICE_MIN_BROWSER_VERSIONS.get(self.browser_family)
        if minimum is None:
            return False
        major = self.browser_version.partition(".")[0]
        return not major.isdigit() or int(major) < minimum

    def _trust(self) -> tuple[str, list[str]]:
        """The level rules read, with the signals that decided it (the person and the
        supervisor see why). A key a supervisor approved, or whose management attests it
        compliant, is high; an unreviewed key, or one its owner confirmed with a passkey,
        medium; a cookie, a device waiting for approval, one attested non-compliant, or an
        outdated browser, low."""
        compliant = self.posture_compliant
        lowering = [
            reason
            for reason, applies in (
                ("device cookie", self.binding == self.Binding.COOKIE),
                ("waiting for approval", self.approval == self.Approval.PENDING),
                ("attested non-compliant", compliant is False),
                ("browser out of date", self.browser_outdated),
            )
            if applies
        ]
        if lowering:
            return self.Trust.LOW, lowering
        raising = [
            reason
            for reason, applies in (
                ("approved by a supervisor", self.approval == self.Approval.APPROVED),
                ("attested compliant", bool(compliant)),
            )
            if applies
        ]
        if raising:
            return self.Trust.HIGH, raising
        # The owner's passkey proves the person, not that the browser is one the company
        # knows: the device opens, but only a supervisor's review makes it high.
        if self.approval == self.Approval.CONFIRMED:
            return self.Trust.MEDIUM, ["confirmed by its owner's passkey, not reviewed"]
        return self.Trust.MEDIUM, ["device key, not reviewed"]

    @property
    def trust_level(self) -> str:
        return self._trust()[0]

    @property
    def passkey_posture(self) -> str:
        """What the last passkey verified here was: "device-bound passkey (YubiKey 5)" or
        "synced passkey (…)"; empty when none was (or it was removed since). Information
        for people, not an input of `trust_level`: a passkey proves the person at the
        ceremony, not this browser — a synced one lives on every device of its account, a
        bound one may be a security key plugged into any computer."""
        passkey = self.last_passkey
        if passkey is None:
            return ""
        kind = "device-bound" if passkey.is_device_bound else "synced"
        return f"{kind} passkey ({passkey.authenticator_name})"

    @property
    def trust_explanation(self) -> str:
        """The level and why, e.g. "high: approved by a supervisor · device-bound passkey (YubiKey 5)"."""
        level, reasons = self._trust()
        posture = self.passkey_posture
        return f"{level}: {' · '.join([*reasons, posture] if posture else reasons)}"
