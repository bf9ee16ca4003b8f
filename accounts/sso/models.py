"""Identity providers (OIDC), the accounts they vouch for, and their sessions.

Loaded by accounts/models.py, so the models belong to the accounts app.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django_otp.models import Device

from accounts import roles
from accounts.models import UserSession
from channels_app.common.crypto import EncryptedTextField

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Clock skew accepted on iat/exp/auth_time: enough for drifting clocks, too little to
# stretch a stolen token's life.
MAX_CLOCK_SKEW_SECONDS = 300


class Assurance(models.TextChoices):
    """How strongly the IdP authenticated the person, in the policy engine's words
    (inbox.models.PolicyRule.Authenticator): the weakest answer first."""

    PASSWORD = "password", "Password only"
    MFA = "totp", "Multi-factor (OTP or push)"
    PHISHING_RESISTANT = "passkey", "Phishing-resistant (passkey, security key, smart card)"


ASSURANCE_ORDER = {Assurance.PASSWORD: 0, Assurance.MFA: 1, Assurance.PHISHING_RESISTANT: 2}


class IdentityProvider(models.Model):
    """A company IdP that agents sign in with (OpenID Connect, code flow with PKCE)."""

    name = models.CharField(max_length=100, help_text='Shown as "Sign in with <name>".')
    slug = models.SlugField(max_length=40, unique=True)
    enabled = models.BooleanField(default=False)
    issuer = models.URLField(
        help_text="The IdP's issuer; its /.well-known/openid-configuration is read from there."
    )
    client_id = models.CharField(max_length=200)
    client_secret = EncryptedTextField(help_text="Encrypted at rest; never shown again.")
    scopes = models.CharField(max_length=200, default="openid email profile groups")
    groups_claim = models.CharField(max_length=60, default="groups")
    allow_jit_provisioning = models.BooleanField(
        default=False,
        help_text="Create an account on a person's first sign-in. Off: only known accounts sign in.",
    )
    minimum_assurance = models.CharField(
        max_length=16,
        choices=Assurance.choices,
        default=Assurance.MFA,
        help_text="Below this, Portcullis asks for its own second factor after the IdP.",
    )
    clock_skew_seconds = models.PositiveIntegerField(
        default=60, validators=[MaxValueValidator(MAX_CLOCK_SKEW_SECONDS)]
    )
    max_authentication_age = models.DurationField(
        default=timedelta(hours=12),
        help_text="After this, the session must authenticate at the IdP again (OIDC max_age).",
    )
    step_up_acr_values = models.CharField(
        max_length=200,
        blank=True,
        help_text=(
            "Sent as acr_values when a step-up asks for a fresh sign-in at the IdP (e.g. phr). "
            "Blank: none sent. The answer's acr/amr must still meet the minimum assurance."
        ),
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        parts = urlsplit(self.issuer)
        # Tokens and the client secret travel to the issuer: plain HTTP only on this machine.
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
            raise ValidationError({"issuer": "The issuer must use https."})
        if self.max_authentication_age <= timedelta(0):
            raise ValidationError({"max_authentication_age": "Must be positive."})


class ExternalIdentity(models.Model):
    """The IdP's subject (`sub`) bound to one Portcullis account: the only link SSO uses,
    never an email address (which an IdP may let people change)."""

    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="identities")
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "subject"], name="externalidentity_unique_subject")
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}:{self.subject}"


class IdpGroupMapping(models.Model):
    """An IdP group whose members belong to a Portcullis team or role. A new mapping is
    inactive until its change request is applied (four eyes where the rules say so)."""

    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="group_mappings")
    idp_group = models.CharField(max_length=255, help_text="The group's value in the groups claim.")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="+")
    active = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "idp_group", "group"], name="idpgroupmapping_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}:{self.idp_group} → {self.group.name}"

    def clean(self) -> None:
        if self.group_id is not None and self.group.name == roles.ADMINISTRATOR:
            raise ValidationError({"group": "No IdP group can make anyone an administrator."})


class IdpSession(models.Model):
    """Which IdP opened a Portcullis session, with which assurance: what monitoring sees
    and what back-channel logout finds by the IdP's session id (`sid`)."""

    session = models.OneToOneField(UserSession, on_delete=models.CASCADE, related_name="idp")
    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="sessions")
    subject = models.CharField(max_length=255)
    sid = models.CharField(max_length=255, blank=True)
    acr = models.CharField(max_length=255, blank=True)
    amr = models.JSONField(default=list)
    assurance = models.CharField(max_length=16, choices=Assurance.choices)
    authenticated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["provider", "sid"], name="idpsession_sid_idx")]

    def __str__(self) -> str:
        return f"{self.provider.slug} session of {self.subject}"


class IdentityProviderDevice(Device):
    """The IdP as a django-otp device: it verifies a session whose IdP sign-in met the
    provider's minimum assurance. It never accepts a typed code."""

    provider: models.ForeignKey[IdentityProvider, IdentityProvider] = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "provider"], name="identityproviderdevice_unique")
        ]

    def verify_token(self, token: str) -> bool:
        return False


class ScimGroup(models.Model):
    """A group the IdP pushes over SCIM. Its members get the teams and roles the
    provider's mappings give its display name, exactly as the groups claim would."""

    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="scim_groups")
    display_name = models.CharField(max_length=255)
    external_id = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "display_name"], name="scimgroup_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}:{self.display_name}"


class LocalSignInRule(models.Model):
    """A role whose members sign in through the IdP only, once SSO is in place: their
    password is refused at the sign-in page. Administrators always keep their local
    sign-in (password and second factor), the break-glass way in when the IdP is down."""

    role = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="+")
    local_sign_in_allowed = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.role.name}: {'password allowed' if self.local_sign_in_allowed else 'IdP only'}"

    def clean(self) -> None:
        is_administrator = self.role_id is not None and self.role.name == roles.ADMINISTRATOR
        if is_administrator and not self.local_sign_in_allowed:
            raise ValidationError({"role": "Administrators keep their local sign-in for break-glass access."})
