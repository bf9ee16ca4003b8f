from __future__ import annotations

import enum
from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.http import HttpRequest

from accounts import throttle
from accounts.models import User
from accounts.sso.selectors import local_sign_in_allowed
from audit.services import client_ip

INVALID_CREDENTIALS = "Invalid username or password."


class PasswordOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    # The right password for a locked account: answered exactly like REFUSED.
    LOCKED = "locked"
    THROTTLED = "throttled"
    # The right password of someone whose role signs in through the IdP only: as REFUSED.
    IDP_ONLY = "idp_only"


def throttled_message(seconds: int) -> str:
    unit = "second" if seconds == 1 else "seconds"
    return f"Too many sign-in attempts. Wait {seconds} {unit} before trying again."


class LoginForm(forms.Form):
    username = forms.CharField(
        max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True})
    )
    password = forms.CharField(
        max_length=1024, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        # What the password step decided, for the view to act on and record; None when the
        # fields themselves were invalid and no password was looked at.
        self.outcome: PasswordOutcome | None = None
        self.user: User | None = None
        self.retry_after: int | None = None
        self.stuffing_detected = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        username, password = cleaned.get("username"), cleaned.get("password")
        if username and password:
            address = client_ip(self.request)
            self.retry_after = throttle.login_retry_after(username=username, address=address)
            if self.retry_after is not None:
                # Refused before the password is looked at, so the answer is the same for a
                # right and a wrong one, and for a name that exists and one that does not.
                self.outcome = PasswordOutcome.THROTTLED
                raise forms.ValidationError(throttled_message(self.retry_after), code="throttled")
            # ModelBackend hashes the password even for an unknown name, and for a locked
            # account, so neither costs a different time from a wrong password.
            user = authenticate(self.request, username=username, password=password)
            if not isinstance(user, User) or user.is_service_account:
                self.outcome = PasswordOutcome.REFUSED
            else:
                self.user = user
                if user.is_locked:
                    self.outcome = PasswordOutcome.LOCKED
                elif not local_sign_in_allowed(user):
                    self.outcome = PasswordOutcome.IDP_ONLY
                else:
                    self.outcome = PasswordOutcome.ACCEPTED
            if self.outcome is PasswordOutcome.ACCEPTED:
                throttle.login_success_record(username=username)
            else:
                # A locked account's right password counts as a failure too: if it did not,
                # the throttle never engaging would confirm the password.
                self.stuffing_detected = throttle.login_failure_record(username=username, address=address)
                raise forms.ValidationError(INVALID_CREDENTIALS, code="invalid_login")
        return cleaned


class OTPTokenForm(forms.Form):
    token = forms.CharField(
        label="Code",
        max_length=32,
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )


class EnrollForm(forms.Form):
    device_id = forms.IntegerField(widget=forms.HiddenInput)
    token = forms.RegexField(
        label="Code from your app",
        regex=r"^\s*\d{3}\s?\d{3}\s*$",
        max_length=16,
        error_messages={"invalid": "Enter the 6-digit code shown by your authenticator app."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class ActivateForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"}))
    code = forms.CharField(
        label="Enrollment code",
        max_length=64,
        help_text="The code your supervisor handed you. It works once.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    new_password = forms.CharField(
        label="New password",
        max_length=1024,
        required=False,
        strip=False,
        help_text="For a new account or a password reset.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
