from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.http import HttpRequest

from accounts.models import User

INVALID_CREDENTIALS = "Invalid username or password."


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
        self.user: User | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        username, password = cleaned.get("username"), cleaned.get("password")
        if username and password:
            # ModelBackend hashes the password even for an unknown name, so an unknown
            # user and a wrong password cost the same time and get the same message.
            user = authenticate(self.request, username=username, password=password)
            if not isinstance(user, User) or user.is_service_account:
                raise forms.ValidationError(INVALID_CREDENTIALS, code="invalid_login")
            self.user = user
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
