from __future__ import annotations

from django import forms

# The form field a page's script fills with the passkey's JSON answer before it submits.
ASSERTION_FIELD = "passkey_assertion"
# The browser's answers are a few kilobytes; anything far larger is not one.
MAX_ANSWER_LENGTH = 65536


class PasskeyAddForm(forms.Form):
    name = forms.CharField(
        label="Name of this passkey",
        max_length=64,
        help_text="So you can tell it apart later, e.g. “work laptop” or “security key”.",
    )
    # Empty on the first post (from the security page); the browser's answer on the second.
    credential = forms.CharField(required=False, max_length=MAX_ANSWER_LENGTH, widget=forms.HiddenInput)
