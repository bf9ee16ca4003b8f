"""The security console: charts, the per-agent timeline, "who can see it now"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from accounts.models import User
from audit.alerts.services import Finding, alert_raise
from audit.models import AccessEvent, SecurityEvent
from inbox.models import Inbox
from tests.audit.monitoring import respond
from tests.audit.test_alerts import finding, people  # noqa: F401  # fixture used by name
from tests.inbox.conftest import make_conversation

pytestmark = pytest.mark.django_db

CONSOLE = "/admin/audit/alert/console/"


def activity(user: User, *, reads: int, denied: int) -> None:
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.OTP_SUCCEEDED, user=user, ip_address="192.0.2.4")
    AccessEvent.objects.bulk_create(
        [
            *(
                AccessEvent(
                    user_id=user.pk,
                    object_type="inbox.conversation",
                    object_id=n,
                    action="view",
                    allowed=True,
                )
                for n in range(reads)
            ),
            *(
                AccessEvent(
                    user_id=user.pk,
                    object_type="inbox.conversation",
                    object_id=9000 + n,
                    action="view",
                    allowed=False,
                )
                for n in range(denied)
            ),
        ]
    )


def test_the_console_draws_the_supervised_accounts_only(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
    django_assert_max_num_queries: Any,
) -> None:
    respond(finding(people["alice"]).kind)
    activity(people["alice"], reads=7, denied=2)
    activity(people["olga"], reads=50, denied=5)
    alert_raise(finding(people["alice"]))
    alert_raise(finding(people["olga"]))
    client = verified_client(people["sam"])

    with CaptureQueriesContext(connection) as few:
        page = client.get(CONSOLE)
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 4
    assert page.context["top_readers"] == [("alice", 7)]
    assert "olga" not in body
    # One sign-in of alice's in the heatmap; olga's is not hers to see.
    heatmap = str(page.context["heatmap"])
    assert heatmap.count(":00: 1</title>") == 1 and ":00: 2</title>" not in heatmap

    # More data costs no more queries: every chart is one grouped query.
    activity(people["alice"], reads=40, denied=10)
    alert_raise(finding(people["alice"], pattern="hour:05"))
    with django_assert_max_num_queries(len(few)):
        assert client.get(CONSOLE).status_code == 200


def test_the_console_is_no_page_for_an_agent(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
) -> None:
    assert verified_client(people["alice"]).get(CONSOLE).status_code in (302, 403)


def test_the_timeline_tells_one_accounts_story_to_its_supervisor_only(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
) -> None:
    alice, olga, sam = people["alice"], people["olga"], people["sam"]
    respond(finding(alice).kind)
    activity(alice, reads=2, denied=1)
    alert_raise(finding(alice))
    client = verified_client(sam)

    page = client.get(f"/admin/audit/alert/timeline/{alice.pk}/")
    assert page.status_code == 200
    kinds = {entry.what for entry in page.context["entries"]}
    assert kinds == {"sign-in", "read", "denied", "alert"}
    assert client.get(f"/admin/audit/alert/timeline/{olga.pk}/").status_code == 404
    assert client.get(f"/admin/audit/alert/timeline/{sam.pk}/").status_code == 404
    assert client.get("/admin/audit/alert/timeline/99999999/").status_code == 404


def test_who_can_see_a_conversation_and_a_contact_now(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
) -> None:
    olga, sam = people["olga"], people["sam"]
    conversation = make_conversation(Inbox.objects.get(name="Support"))
    # An escalation: olga (billing) is let into this one conversation.
    assign_perm("view_conversation", olga, conversation)

    conversation_page = verified_client(sam).get(f"/admin/inbox/conversation/{conversation.pk}/change/")
    assert conversation_page.status_code == 200
    body = conversation_page.content.decode()
    section = body[body.index("Who can see it now") :][:600]
    assert "alice" in section and "olga" in section and "sam" in section

    contact_page = verified_client(sam).get(f"/admin/inbox/contact/{conversation.contact_id}/change/")
    assert contact_page.status_code == 200
    body = contact_page.content.decode()
    section = body[body.index("Who can see it now") :][:600]
    assert "alice" in section and "olga" in section


def test_an_alert_about_an_address_is_for_administrators(
    people: dict[str, User],  # noqa: F811  # the fixture
    verified_client: Callable[[User], Client],
) -> None:
    from audit.alerts.models import AlertKind, AlertSeverity

    respond(AlertKind.PASSWORD_SPRAYING)
    spraying = alert_raise(
        Finding(
            kind=AlertKind.PASSWORD_SPRAYING,
            severity=AlertSeverity.HIGH,
            score=80,
            pattern="203.0.113.9",
            ip_address="203.0.113.9",
            summary="Passwords refused for 10 accounts.",
            evidence={"count": 10},
        )
    )
    assert spraying is not None
    listed = verified_client(people["sam"]).get("/admin/audit/alert/")
    assert spraying.pk not in [a.pk for a in listed.context["cl"].result_list]
    listed = verified_client(people["ada"]).get("/admin/audit/alert/")
    assert spraying.pk in [a.pk for a in listed.context["cl"].result_list]
