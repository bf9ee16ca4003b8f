"""The HTTP gate: a session bound to a device key, and what a stolen cookie can do."""

from __future__ import annotations

import re
import time
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts import roles
from accounts.devices import services as device_services
from accounts.models import BrowserDevice, UserSession
from audit.models import SecurityEvent
from inbox.models import Note
from tests.devices.conftest import DeviceKey, stolen, url
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = pytest.mark.django_db

# The devices page, whatever the number of devices: one query lists them with their sessions
# (the session check reads the session with its device, so the gate asks for no row of its own).
QUERIES_DEVICES_PAGE = 4


@pytest.fixture
def conversation(make_user: Any) -> Any:
    from inbox.models import ChannelKind, Inbox

    inbox = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL)
    return make_conversation(inbox)


def agent_on(conversation: Any, make_user: Any) -> Any:
    agent = make_user(roles.AGENT)
    grant_inbox(conversation.inbox, agent)
    return agent


def note(client: Client, conversation: Any, *, proof: str | None = None) -> Any:
    path = f"/conversations/{conversation.pk}/note/"
    data = {"note": "checked the invoice"}
    if proof is not None:
        data["device_proof"] = proof
    return client.post(path, data)


def test_a_write_carries_a_fresh_proof_of_the_sessions_device_key(
    conversation: Any, make_user: Any, bound_client: Any
) -> None:
    client, key = bound_client(agent_on(conversation, make_user))
    path = f"/conversations/{conversation.pk}/note/"
    assert note(client, conversation, proof=key.proof("POST", url(path))).status_code in (200, 302)
    assert Note.objects.filter(conversation=conversation, text="checked the invoice").count() == 1
    # The header form, as fetch and htmx send it.
    response = client.post(
        path,
        {"note": "second"},
        headers={"Device-Proof": key.proof("POST", url(path)), "Accept": "text/html"},
    )
    assert response.status_code in (200, 302) and response.has_header("Device-Nonce")


def test_a_stolen_cookie_with_the_victims_user_agent_changes_nothing(
    conversation: Any, make_user: Any, bound_client: Any
) -> None:
    agent = agent_on(conversation, make_user)
    client, key = bound_client(agent)
    thief = stolen(client)
    path = f"/conversations/{conversation.pk}/note/"
    assert note(thief, conversation).status_code == 403
    # A proof of the thief's own key is as good as none; so is the victim's proof replayed.
    assert note(thief, conversation, proof=DeviceKey().proof("POST", url(path))).status_code == 403
    seen = key.proof("POST", url(path))
    assert note(client, conversation, proof=seen).status_code in (200, 302)
    assert note(thief, conversation, proof=seen).status_code == 403
    api = thief.post(
        f"/api/v1/conversations/{conversation.pk}/notes/", {"text": "x"}, content_type="application/json"
    )
    assert api.status_code == 401 and api.json()["code"] == "device_proof_required"
    assert Note.objects.filter(conversation=conversation).count() == 1  # the victim's
    refusals = SecurityEvent.objects.filter(kind="device_proof_refused", user=agent)
    assert {e.detail["code"] for e in refusals} >= {"proof_missing", "proof_other_device", "proof_replayed"}
    # The victim's session goes on.
    assert client.get("/").status_code == 200


def test_reads_stop_when_the_bound_cookie_runs_out_and_only_a_proof_renews_it(
    conversation: Any, make_user: Any, bound_client: Any, settings: Any
) -> None:
    client, key = bound_client(agent_on(conversation, make_user))
    thief = stolen(client)
    assert thief.get("/").status_code == 200  # inside the refresh window
    later = time.time() + settings.DEVICE_REFRESH_SECONDS + 1
    with mock.patch("django.core.signing.time.time", return_value=later):
        held = thief.get("/")
        assert held.status_code == 401 and b"data-device-confirm" in held.content
        assert (
            thief.get("/", headers={"Accept": "application/json"}).json()["code"] == "device_refresh_required"
        )
        # Renewing takes a signature of the server's nonce by the session's device key.
        refresh = "/accounts/devices/refresh/"
        own_key = DeviceKey().proof("POST", url(refresh), iat=later)
        assert thief.post(refresh).status_code == 403
        assert (
            thief.post(refresh, headers={"Device-Proof": own_key}).json()["code"] == "device_proof_required"
        )
        renewed = client.post(refresh, headers={"Device-Proof": key.proof("POST", url(refresh), iat=later)})
        assert renewed.status_code == 200 and renewed.json()["nonce"]
    assert renewed.cookies[device_services.bound_cookie_name()]["httponly"]
    assert client.get("/").status_code == 200


def test_signing_in_binds_the_session_to_the_device_that_proved_its_key(make_user: Any, totp: Any) -> None:
    import re

    user = make_user(roles.AGENT)
    key = DeviceKey()
    client = Client(
        headers={
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            "Sec-CH-UA-Platform": '"Linux"',
        }
    )
    page = client.get("/accounts/login/").content.decode()
    nonce = re.search(r'data-nonce="([^"]+)"', page)
    assert nonce is not None and 'src="/static/js/device.js"' in page
    login = "/accounts/login/"
    response = client.post(
        login,
        {
            "username": user.username,
            "password": "correct horse battery staple 9",
            "device_proof": key.proof("POST", url(login), nonce=nonce.group(1)),
        },
    )
    assert response.status_code == 302
    device = BrowserDevice.objects.get(user=user)
    assert device.key_thumbprint == key.thumbprint and device.public_key == key.jwk
    assert (device.name, device.browser_version, device.os_family) == ("Chrome on Linux", "131.0", "Linux")
    assert device.client_hints == {"sec-ch-ua-platform": '"Linux"'} and device.last_ip == "127.0.0.1"
    assert UserSession.objects.get(user=user).device == device
    assert SecurityEvent.objects.filter(kind="device_registered", user=user).exists()
    verify = "/accounts/verify/"
    assert client.post(verify, {"token": totp(user).now()}).status_code == 403  # no proof
    done = client.post(verify, {"token": totp(user).now(), "device_proof": key.proof("POST", url(verify))})
    assert done.status_code == 302
    assert client.get("/").status_code == 200
    # Signing in again on the same browser finds the same device.
    assert BrowserDevice.objects.filter(user=user).count() == 1


def test_a_browser_that_cannot_keep_a_key_is_refused_or_gets_a_weaker_device(
    make_user: Any, settings: Any
) -> None:
    user = make_user(roles.AGENT)
    form = {"username": user.username, "password": "correct horse battery staple 9"}
    refused = Client().post("/accounts/login/", form)
    assert refused.status_code == 403 and b"keep a device key" in refused.content
    assert SecurityEvent.objects.filter(kind="device_refused", username_attempted=user.username).exists()
    assert not UserSession.objects.filter(user=user).exists()

    settings.DEVICE_WEAK_FALLBACK = "cookie"
    client = Client()
    assert client.post("/accounts/login/", form).status_code == 302
    device = BrowserDevice.objects.get(user=user)
    assert device.binding == "cookie" and device.trust_level == "low"
    event = SecurityEvent.objects.get(kind="device_registered", user=user)
    assert event.severity == "warning" and event.detail["binding"] == "cookie"
    # The device cookie is the weak device's key: without it the session does nothing.
    cookie = device_services.device_cookie_name()
    assert client.cookies[cookie]["httponly"]
    del client.cookies[cookie]
    assert client.get("/accounts/verify/").status_code == 401


def test_a_revoked_device_ends_its_sessions_and_its_key_is_not_taken_again(
    make_user: Any, bound_client: Any
) -> None:
    user = make_user(roles.AGENT)
    client, key = bound_client(user)
    device = BrowserDevice.objects.get(user=user)
    path = f"/accounts/devices/{device.pk}/revoke/"
    assert client.post(path, {"device_proof": key.proof("POST", url(path))}).status_code == 302
    assert UserSession.objects.get(user=user).end_reason == "device_revoked"
    assert client.get("/").status_code == 302
    assert SecurityEvent.objects.filter(kind="device_revoked", user=user).exists()
    login = "/accounts/login/"
    again = Client().post(
        login,
        {
            "username": user.username,
            "password": "correct horse battery staple 9",
            "device_proof": key.proof("POST", url(login)),
        },
    )
    assert again.status_code == 403 and b"data-device-reset" in again.content


def test_someone_elses_device_cannot_be_revoked_or_seen(make_user: Any, bound_client: Any) -> None:
    client, key = bound_client(make_user(roles.AGENT))
    bound_client(make_user(roles.AGENT))
    mine = BrowserDevice.objects.get(key_thumbprint=key.thumbprint)
    other = BrowserDevice.objects.exclude(pk=mine.pk).get()
    path = f"/accounts/devices/{other.pk}/revoke/"
    assert client.post(path, {"device_proof": key.proof("POST", url(path))}).status_code == 404
    assert BrowserDevice.objects.get(pk=other.pk).revoked_at is None
    listed = client.get("/accounts/devices/").content.decode()
    assert f"/accounts/devices/{mine.pk}/revoke/" in listed and path not in listed


def test_a_session_bound_to_no_device_ends_under_enforce_and_is_recorded_under_monitor(
    make_user: Any, settings: Any
) -> None:
    from tests.conftest import start_session

    user = make_user(roles.AGENT)
    settings.DEVICE_BINDING = "monitor"
    client = Client()
    start_session(client, user, verified=True)
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200
    # Recorded once a minute per session, not per click.
    assert (
        SecurityEvent.objects.filter(kind="device_proof_refused", detail__code="device_unbound").count() == 1
    )
    settings.DEVICE_BINDING = "enforce"
    assert client.get("/").status_code == 302
    assert UserSession.objects.get(user=user).end_reason == "device_unbound"


def test_monitor_mode_lets_an_unproven_write_through_and_records_it(
    conversation: Any, make_user: Any, bound_client: Any, settings: Any
) -> None:
    settings.DEVICE_BINDING = "monitor"
    agent = agent_on(conversation, make_user)
    client, _ = bound_client(agent)
    assert note(stolen(client), conversation).status_code in (200, 302)
    event = SecurityEvent.objects.get(kind="device_proof_refused", user=agent)
    assert event.detail["mode"] == "monitor" and event.detail["code"] == "proof_missing"


def test_a_new_device_waits_for_approval_when_policy_says_so(
    make_user: Any, bound_client: Any, settings: Any
) -> None:
    settings.DEVICE_NEW_DEVICE = "approval"
    user = make_user(roles.AGENT)
    client, _ = bound_client(user, approval=BrowserDevice.Approval.PENDING)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/devices/pending/"
    assert b"Waiting for approval" in client.get("/accounts/devices/pending/").content
    BrowserDevice.objects.filter(user=user).update(approval=BrowserDevice.Approval.APPROVED)
    assert client.get("/").status_code == 200


def test_a_sign_in_by_redirect_binds_to_the_first_key_its_page_proves(make_user: Any) -> None:
    """Single sign-on's callback is a redirect: no proof can come with it. The page it lands
    on proves the browser's key at once, which binds the session; later keys bind nothing."""
    import time as clock

    from tests.conftest import start_session

    user = make_user(roles.AGENT)
    client = Client()
    start_session(client, user, verified=True)
    session = client.session
    session[device_services.BIND_BY_KEY] = clock.time() + device_services.LATE_BIND_SECONDS
    session.save()
    landing = client.get("/")
    assert landing.status_code == 200 and b'data-bind-now="1"' in landing.content
    assert client.post("/accounts/logout/everywhere/").status_code == 403  # no write before binding
    key = DeviceKey()
    refresh = "/accounts/devices/refresh/"
    assert client.post(refresh, headers={"Device-Proof": key.proof("POST", url(refresh))}).status_code == 200
    device = BrowserDevice.objects.get(user=user)
    assert device.key_thumbprint == key.thumbprint and UserSession.objects.get(user=user).device == device
    other = client.post(refresh, headers={"Device-Proof": DeviceKey().proof("POST", url(refresh))})
    assert other.status_code == 401 and BrowserDevice.objects.filter(user=user).count() == 1

    # Past the deadline an unbound session ends.
    late = Client()
    start_session(late, user, verified=True)
    session = late.session
    session[device_services.BIND_BY_KEY] = clock.time() - 1
    session.save()
    assert late.get("/").status_code == 302


def test_the_devices_page_costs_the_same_queries_for_one_device_or_many(
    make_user: Any, bound_client: Any, django_assert_num_queries: Any
) -> None:
    user = make_user(roles.AGENT)
    client, _ = bound_client(user)
    client.get("/accounts/devices/")  # the once-a-minute writes (last seen) happen here
    with django_assert_num_queries(QUERIES_DEVICES_PAGE):
        assert client.get("/accounts/devices/").status_code == 200
    for _ in range(5):
        BrowserDevice.objects.create(
            user=user, name="Firefox on Windows", binding="key", key_thumbprint=DeviceKey().thumbprint
        )
    with django_assert_num_queries(QUERIES_DEVICES_PAGE):
        page = client.get("/accounts/devices/").content.decode()
    assert page.count("Revoke Firefox on Windows") == 5


def _shape(sql: str) -> str:
    """A statement without what differs between two runs of it: a server-side cursor's
    name (numbered per use) and the time it was made."""
    return re.sub(r"'\d{4}-\d\d-\d\d [^']*'", "'now'", re.sub(r'"_django_curs_\w+"', "c", sql))


def test_binding_adds_no_statement_to_a_page(
    conversation: Any, make_user: Any, bound_client: Any, settings: Any
) -> None:
    """The session check reads the device in the statement it makes either way, so a bound
    page costs the database what the same page costs with binding off: the statements are
    the same, one for one."""
    client, _ = bound_client(agent_on(conversation, make_user))
    client.get("/")  # the once-a-minute writes (last seen) happen here
    statements = {}
    for mode in ("enforce", "off"):
        settings.DEVICE_BINDING = mode
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/").status_code == 200
        statements[mode] = [_shape(query["sql"]) for query in queries.captured_queries]
    assert statements["enforce"] == statements["off"]
    assert any("accounts_browserdevice" in sql for sql in statements["enforce"])
