"""The export request form: the inbox choice is limited to what the caller can see."""

from __future__ import annotations

from django import forms

from inbox import policy
from inbox.exports.models import ExportJob
from inbox.models import Inbox
from inbox.policy import AccessContext


class ExportForm(forms.Form):
    inbox = forms.ModelChoiceField(queryset=Inbox.objects.none(), empty_label=None)
    kind = forms.ChoiceField(choices=ExportJob.Kind.choices, label="What")
    format = forms.ChoiceField(choices=ExportJob.Format.choices)

    def __init__(self, *args: object, ctx: AccessContext, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # Form's own signature
        inbox_field = self.fields["inbox"]
        assert isinstance(inbox_field, forms.ModelChoiceField)  # noqa: S101  # declared above
        # Which of them allow exports is the policy's answer at the request.
        inbox_field.queryset = policy.visible_inboxes(ctx).order_by("name")
