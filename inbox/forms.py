"""Forms of the agent pages: they parse and bound the input; services decide the rest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django import forms
from django.forms.boundfield import BoundField
from django.forms.models import ModelChoiceIterator, ModelChoiceIteratorValue
from django.http import QueryDict
from django.utils import timezone

from inbox import dlp, policy
from inbox.models import Conversation, Inbox, Label
from inbox.policy import AccessContext
from inbox.selectors import MAX_BIGINT, MAX_SEARCH_LENGTH, ConversationFilters
from inbox.services import MAX_TEXT_LENGTH


class ListedChoices(ModelChoiceIterator):
    """A field's choices read with one plain query. Django reads them through
    QuerySet.iterator(), a server-side cursor on PostgreSQL: DECLARE, FETCH and CLOSE,
    three round trips for a handful of inboxes or labels, on every pane that shows one."""

    def __iter__(self) -> Iterator[tuple[ModelChoiceIteratorValue | str, str]]:
        if self.field.empty_label is not None:
            yield ("", str(self.field.empty_label))
        for obj in self.queryset:
            yield self.choice(obj)


class ListedModelChoiceField(forms.ModelChoiceField):
    iterator = ListedChoices


class ListedModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    iterator = ListedChoices


SCOPE_CHOICES = [("mine", "Mine"), ("unassigned", "Unassigned"), ("all", "All")]


class ConversationFilterForm(forms.Form):
    """The inbox list's query string. The inbox choice is limited to the caller's segment."""

    inbox = ListedModelChoiceField(queryset=Inbox.objects.none(), required=False, empty_label="All inboxes")
    status = forms.MultipleChoiceField(
        choices=Conversation.Status.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    scope = forms.ChoiceField(choices=SCOPE_CHOICES, required=False, widget=forms.HiddenInput)
    priority = forms.TypedChoiceField(
        choices=[("", "Any priority"), *Conversation.Priority.choices],
        coerce=int,
        required=False,
        empty_value=None,
    )
    label = ListedModelChoiceField(queryset=Label.objects.all(), required=False, empty_label="Any label")
    q = forms.CharField(
        label="Search messages",
        max_length=MAX_SEARCH_LENGTH,
        required=False,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Words in the messages"}),
    )
    cursor = forms.CharField(max_length=200, required=False, widget=forms.HiddenInput)

    def __init__(self, data: QueryDict, *, ctx: AccessContext) -> None:
        if "status" not in data:
            # Open is the default; ticking it shows the agent what the list holds.
            data = data.copy()
            data.setlist("status", [Conversation.Status.OPEN])
        super().__init__(data)
        inbox_field = self.fields["inbox"]
        assert isinstance(inbox_field, forms.ModelChoiceField)  # noqa: S101  # declared above
        inbox_field.queryset = policy.visible_inboxes(ctx)

    def show_unread(self, unread_by_inbox: dict[int, int]) -> None:
        """Name each inbox of the filter with the caller's unread count in it."""
        inbox_field = self.fields["inbox"]
        assert isinstance(inbox_field, forms.ModelChoiceField)  # noqa: S101  # declared above

        def label(inbox: Inbox) -> str:
            unread = unread_by_inbox.get(inbox.pk, 0)
            return f"{inbox.name} ({unread} unread)" if unread else inbox.name

        inbox_field.label_from_instance = label  # type: ignore[assignment,method-assign]  # Django documents this hook

    def filters(self) -> ConversationFilters:
        data = self.cleaned_data
        inbox, label = data.get("inbox"), data.get("label")
        return ConversationFilters(
            inbox_id=inbox.pk if inbox else None,
            statuses=tuple(data["status"]),
            scope=data.get("scope") or "all",
            label_id=label.pk if label else None,
            priority=data.get("priority"),
            search=data.get("q", ""),
        )


class JustifiableForm(forms.Form):
    """A text outbound DLP may hold for a justification. The field is drawn by
    templates/inbox/_dlp_findings.html, and only when a rule asks for one."""

    justification = forms.CharField(
        label="Justification",
        required=False,
        max_length=dlp.services.MAX_JUSTIFICATION_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this must go out as written. Recorded with the finding for your supervisor.",
    )

    def visible_fields(self) -> list[BoundField]:
        return [field for field in super().visible_fields() if field.name != "justification"]


class ReplyForm(JustifiableForm):
    reply = forms.CharField(
        label="Reply",
        max_length=MAX_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Sent to the contact on this conversation's channel.",
    )


class NoteForm(JustifiableForm):
    note = forms.CharField(
        label="Internal note",
        max_length=MAX_TEXT_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Only agents see notes; the contact never does.",
    )


class AssignForm(forms.Form):
    # Empty means unassign. Whether the agent may receive it is the service's decision.
    # Beyond bigint is malformed, not merely absent.
    assignee = forms.IntegerField(min_value=1, max_value=MAX_BIGINT, required=False, label="Assign to")


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Conversation.Status.choices)
    snoozed_until = forms.DateTimeField(
        label="Snooze until",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Only for snoozing. Time in UTC.",
    )


class PriorityForm(forms.Form):
    priority = forms.TypedChoiceField(choices=Conversation.Priority.choices, coerce=int, label="Priority")


@dataclass(frozen=True)
class SnoozePreset:
    label: str
    until: datetime


def snooze_presets(now: datetime | None = None) -> list[SnoozePreset]:
    """Later today, tomorrow morning and next Monday morning, in UTC like the form's field
    (the agent's own time zone is not known to the server)."""
    now = (now or timezone.now()).astimezone(UTC)
    morning = now.replace(hour=9, minute=0, second=0, microsecond=0)
    return [
        SnoozePreset("Later today", now.replace(second=0, microsecond=0) + timedelta(hours=3)),
        SnoozePreset("Tomorrow", morning + timedelta(days=1)),
        SnoozePreset("Next week", morning + timedelta(days=7 - now.weekday())),
    ]


class LabelsForm(forms.Form):
    labels = ListedModelMultipleChoiceField(
        queryset=Label.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )


MAX_BULK = 100
# Snoozing needs a time per conversation: it is done one at a time.
BULK_STATUS_CHOICES = [("", "Status…"), *[c for c in Conversation.Status.choices if c[0] != "snoozed"]]
BULK_PRIORITY_CHOICES = [("", "Priority…"), *Conversation.Priority.choices]


class ConversationIdsField(forms.Field):
    """The ticked rows of the list: ids only, each loaded through the policy later."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> list[int]:
        values = value if isinstance(value, list | tuple) else [] if value in (None, "") else [value]
        try:
            ids = [int(str(item)) for item in values]
        except ValueError:
            raise forms.ValidationError("Choose conversations from the list.") from None
        if any(not 0 < pk <= MAX_BIGINT for pk in ids):
            raise forms.ValidationError("Choose conversations from the list.")
        if len(ids) > MAX_BULK:
            raise forms.ValidationError(f"Choose at most {MAX_BULK} conversations at once.")
        return list(dict.fromkeys(ids))


class BulkForm(forms.Form):
    ACTIONS = [
        ("assign_me", "Assign to me"),
        ("unassign", "Unassign"),
        ("status", "Set status"),
        ("label", "Add label"),
        ("priority", "Set priority"),
    ]

    conversation = ConversationIdsField(error_messages={"required": "Tick at least one conversation."})
    action = forms.ChoiceField(choices=ACTIONS, label="With the ticked")
    status = forms.ChoiceField(choices=BULK_STATUS_CHOICES, required=False)
    label = ListedModelChoiceField(queryset=Label.objects.all(), required=False, empty_label="Label…")
    priority = forms.TypedChoiceField(
        choices=BULK_PRIORITY_CHOICES, coerce=int, empty_value=None, required=False
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("action") == "status" and not data.get("status"):
            self.add_error("status", "Choose the status to set.")
        if data.get("action") == "label" and not data.get("label"):
            self.add_error("label", "Choose the label to add.")
        if data.get("action") == "priority" and data.get("priority") is None:
            self.add_error("priority", "Choose the priority to set.")
        return data
