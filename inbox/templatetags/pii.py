"""Template filters that mask personal data for a viewer without "view PII".

A view puts `pii_masked = not policy.pii_visible(ctx)` in the context once; templates then
write `{{ message.text|pii_text:pii_masked }}`, `{{ identity.handle|pii_handle:pii_masked }}`
and `{{ contact.name|pii_name:pii_masked }}`."""

from __future__ import annotations

from django import template

from inbox.dlp.masking import mask_handle, mask_name, mask_text

register = template.Library()


@register.filter
def pii_text(value: str, masked: bool) -> str:
    return mask_text(value) if masked and value else value


@register.filter
def pii_handle(value: str, masked: bool) -> str:
    return mask_handle(value) if masked and value else value


@register.filter
def pii_name(value: str, masked: bool) -> str:
    return mask_name(value) if masked and value else value
