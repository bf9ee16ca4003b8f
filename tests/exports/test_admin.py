"""Supervisors in the admin: the exports of their inboxes only, read-only; freezing and
lifting the exports of the people they manage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import User
from inbox.exports import selectors
from inbox.exports.models import ExportFreeze, ExportJob
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def sam(
    make_user: Callable[..., User], segments: Segments, verified_client: Callable[[User], Client]
) -> Client:
    user = make_user(roles.SUPERVISOR, is_staff=True, username="sam")
    grant_inbox(segments.support, user, perms=("view_inbox", "reply_inbox", "manage_inbox"))
    return verified_client(user)


def test_supervisors_see_exports_of_their_inboxes_only_and_change_none(
    segments: Segments, exporter: User, sam: Client
) -> None:
    mine = ExportJob.objects.create(user=exporter, inbox=segments.support, kind="contacts", format="csv")
    other = ExportJob.objects.create(
        user=segments.billing_agent, inbox=segments.billing, kind="messages", format="csv"
    )
    listing = sam.get("/admin/inbox/exportjob/")
    assert listing.status_code == 200
    rows = listing.content.decode()
    assert f"/admin/inbox/exportjob/{mine.pk}/change/" in rows
    assert f"/admin/inbox/exportjob/{other.pk}/change/" not in rows
    assert sam.post(f"/admin/inbox/exportjob/{mine.pk}/delete/").status_code in (302, 403)
    assert ExportJob.objects.filter(pk=mine.pk).exists()


def test_a_supervisor_freezes_and_lifts_a_managed_users_exports(
    segments: Segments, exporter: User, sam: Client, erin: Client
) -> None:
    until = timezone.now() + timedelta(hours=2)
    added = sam.post(
        "/admin/inbox/exportfreeze/add/",
        {
            "user": exporter.pk,
            "reason": "Unusual export volume",
            "until_0": f"{until:%Y-%m-%d}",
            "until_1": f"{until:%H:%M:%S}",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    assert selectors.freeze_of(exporter) is not None
    refused = erin.post("/exports/", {"inbox": segments.support.pk, "kind": "contacts", "format": "csv"})
    assert refused.status_code == 403 and "Unusual export volume" in refused.content.decode()

    freeze = ExportFreeze.objects.get()
    lifted = sam.post("/admin/inbox/exportfreeze/", {"action": "lift", "_selected_action": [freeze.pk]})
    assert lifted.status_code == 302
    assert selectors.freeze_of(exporter) is None
    freeze.refresh_from_db()
    assert freeze.lifted_by is not None and freeze.lifted_by.username == "sam"


def test_a_supervisor_cannot_freeze_someone_outside_their_delegation(segments: Segments, sam: Client) -> None:
    until = timezone.now() + timedelta(hours=2)
    response = sam.post(
        "/admin/inbox/exportfreeze/add/",
        {
            "user": segments.billing_agent.pk,
            "reason": "x",
            "until_0": f"{until:%Y-%m-%d}",
            "until_1": f"{until:%H:%M:%S}",
        },
    )
    assert response.status_code == 200 and not ExportFreeze.objects.exists()  # the form refuses the choice
