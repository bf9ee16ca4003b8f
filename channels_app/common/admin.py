"""Admin bases every channel family shares: secrets typed in, never rendered back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models

SECRET_HELP = "Stored encrypted and never shown again. Leave empty to keep the current one."  # noqa: S105


def https_urls(field: Any, **kwargs: Any) -> forms.Field | None:
    """A scheme-less URL typed into the form means https."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    formfield: forms.Field | None = field.formfield(**kwargs)
    return formfield


class SecretsForm(forms.ModelForm[Any]):
    """Secrets are typed in, never rendered back: an empty field keeps the stored one."""

    secret_fields: tuple[str, ...] = ()
    # Secrets that may stay empty (generated on save).
    optional_secrets: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            self.fields[name] = forms.CharField(
                label=self.fields[name].label,
                required=False,
                strip=True,
                widget=forms.PasswordInput(render_value=False),
                help_text=SECRET_HELP,
            )
            self.initial[name] = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.secret_fields:
            value = cleaned.get(name) or (getattr(self.instance, name, "") if self.instance.pk else "")
            if not value and name not in self.optional_secrets:
                self.add_error(name, "Required.")
            cleaned[name] = value
        return cleaned
