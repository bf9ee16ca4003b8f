"""A step-up through a fresh sign-in at the company's IdP, against the real OpenID provider:
for sessions the IdP opened (whose people may have no Portcullis TOTP), refused when someone
else, an old sign-in or a weak factor answers, and continuing the interrupted post."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import IdentityProvider, IdpSession, User
from accounts.services import OTP_VERIFIED_AT_KEY
from accounts.sso import services
from audit.models import SecurityEvent
from inbox.exports.models import ExportJob
from inbox.models import ChannelKind, Inbox, Module
from tests.inbox.conftest import grant_inbox
from tests.sso.conftest import TEST_SERVER_CALLBACK, OpenIDProvider, idp_login

pytestmark = pytest.mark.django_db

EXPORT_PERMS = ("view_inbox", "export_inbox")
AN_HOUR_AGO = 3600


def _signed_in(client: Client, browser: httpx.Client, login_hint: str) -> User:
    """Signed in through the IdP (JIT), verified by its assurance; the second factor an hour
    old, so anything that needs a fresh one asks for a step-up."""
    start = client.get("/accounts/sso/corp/start/", {"next": "/"})
    callback = idp_login(browser, str(start["Location"]), login_hint, stop_at=TEST_SERVER_CALLBACK)
    assert client.get(callback.removeprefix("http://testserver")).status_code == 302
    session = client.session
    session[OTP_VERIFIED_AT_KEY] = timezone.now().timestamp() - AN_HOUR_AGO
    session.save()
    return User.objects.get(username=login_hint)


def _step_up_at_idp(client: Client, fields: dict[str, Any]) -> str:
    """Press "Confirm with Corp IdP": the page that sends the browser to the IdP; returns
    the authorization URL."""
    page = client.post("/accounts/sso/corp/step-up/", fields)
    assert page.status_code == 200, page.content.decode()[:500]
    url = str(page.context["authorization_url"])
    assert f'content="0;url={url}"'.replace("&", "&amp;") in page.content.decode()
    return url


def _answer(client: Client, browser: httpx.Client, authorize: str, login_hint: str) -> Any:
    callback = idp_login(browser, authorize, login_hint, stop_at=TEST_SERVER_CALLBACK)
    return client.get(callback.removeprefix("http://testserver"))


def _step_up_refusals(reason: str) -> list[SecurityEvent]:
    return [
        event
        for event in SecurityEvent.objects.filter(kind=SecurityEvent.Kind.OTP_FAILED)
        if event.detail.get("method") == "oidc_step_up" and event.detail.get("refused") == reason
    ]


def _fresh(client: Client) -> bool:
    return timezone.now().timestamp() - float(client.session[OTP_VERIFIED_AT_KEY]) < 60


GO_HOME = {"step_up_next": "/", "step_up_method": "GET"}


def test_an_export_steps_up_through_the_idp_and_continues_the_post(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider, step_up_acr_values="phr urn:portcullis:test:mfa")
    client = Client()
    with httpx.Client() as browser:
        alice = _signed_in(client, browser, "alice")
        alice.groups.add(Group.objects.get(name=roles.AGENT))
        inbox = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
        grant_inbox(inbox, alice, EXPORT_PERMS)
        fields = {"inbox": str(inbox.pk), "kind": "conversations", "format": "csv"}

        # Alice has no Portcullis TOTP: the step-up page offers her company's sign-in.
        prompt = client.post("/exports/", fields)
        assert prompt.status_code == 403 and "Confirm with Corp IdP" in prompt.content.decode()
        assert not ExportJob.objects.exists()

        authorize = _step_up_at_idp(client, {"step_up_next": "/exports/", "step_up_method": "POST", **fields})
        query = parse_qs(urlsplit(authorize).query)
        assert query["max_age"] == ["0"] and query["prompt"] == ["login"]
        assert query["acr_values"] == ["phr urn:portcullis:test:mfa"]
        assert query["code_challenge_method"] == ["S256"]
        back = _answer(client, browser, authorize, "alice")

    # Back from the IdP (a GET): a page posts the interrupted form again, fields and all.
    assert back.status_code == 200
    assert back.context["action"].target == "/exports/"
    assert sorted(back.context["action"].fields) == sorted(fields.items())
    assert 'action="/exports/"' in back.content.decode() and "js/step_up.js" in back.content.decode()
    assert _fresh(client)
    assert client.post("/exports/", fields).status_code == 302
    assert ExportJob.objects.filter(user=alice).count() == 1
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.OTP_SUCCEEDED, user=alice)
    assert event.detail["method"] == "oidc_step_up" and event.detail["assurance"] == "totp"
    assert IdpSession.objects.get(session__user=alice).authenticated_at > timezone.now() - timezone.timedelta(
        seconds=30
    )


def test_a_page_load_continues_with_303(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    client = Client()
    with httpx.Client() as browser:
        _signed_in(client, browser, "alice")
        back = _answer(
            client, browser, _step_up_at_idp(client, {**GO_HOME, "step_up_next": "/security/"}), "alice"
        )
    assert back.status_code == 303 and back["Location"] == "/security/"


def test_another_person_signing_in_at_the_idp_is_refused_and_recorded(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    # A stolen agent session: the thief signs in at the IdP as themself (or anyone they can).
    make_provider(openid_provider)
    client = Client()
    with httpx.Client() as browser:
        _signed_in(client, browser, "alice")
        authorize = _step_up_at_idp(client, GO_HOME)
    # At the IdP in a browser of their own (the OP would end Alice's IdP session first).
    with httpx.Client() as thiefs:
        back = _answer(client, thiefs, authorize, "carol")
    assert back.status_code == 403 and "another person" in back.content.decode()
    assert _step_up_refusals("other_subject")
    assert not _fresh(client)
    assert not User.objects.filter(username="carol").exists()


def test_an_idp_answering_from_an_old_sign_in_is_refused(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider, clock_skew_seconds=0)
    client = Client()
    with httpx.Client() as browser:
        _signed_in(client, browser, "alice")
        time.sleep(1.1)  # auth_time is in whole seconds
        authorize = _step_up_at_idp(client, GO_HOME)
        # An IdP (or someone in between) that drops max_age and prompt answers from the
        # person's existing IdP session, without authenticating anyone now.
        parts = urlsplit(authorize)
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if k not in ("max_age", "prompt")}
        back = _answer(
            client, browser, f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}", "alice"
        )
    assert back.status_code == 403 and "too old" in back.content.decode()
    assert _step_up_refusals("stale_authentication")
    assert not _fresh(client)


def test_a_password_at_the_idp_is_no_step_up(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    # This provider lets a password-only IdP sign-in open a session; a step-up still needs
    # a second factor.
    make_provider(openid_provider, minimum_assurance="password")
    client = Client()
    with httpx.Client() as browser:
        _signed_in(client, browser, "bob")
        back = _answer(client, browser, _step_up_at_idp(client, GO_HOME), "bob")
    assert back.status_code == 403 and "strong enough" in back.content.decode()
    assert _step_up_refusals("weak_assurance")
    assert not _fresh(client)


def test_a_forged_state_is_refused_and_the_real_answer_still_counts(
    openid_provider: OpenIDProvider, make_provider: Callable[..., IdentityProvider]
) -> None:
    make_provider(openid_provider)
    client = Client()
    with httpx.Client() as browser:
        _signed_in(client, browser, "alice")
        authorize = _step_up_at_idp(client, GO_HOME)
        callback = idp_login(browser, authorize, "alice", stop_at=TEST_SERVER_CALLBACK)
    code = parse_qs(urlsplit(callback).query)["code"][0]

    forged = client.get("/accounts/sso/corp/callback/", {"code": code, "state": "forged-by-attacker"})

    assert forged.status_code == 403 and _step_up_refusals("state")
    assert not _fresh(client)
    assert client.get(callback.removeprefix("http://testserver")).status_code == 303
    assert _fresh(client)
    # Used once: the same answer again is refused.
    client.post("/accounts/sso/corp/step-up/", GO_HOME)
    assert client.get(callback.removeprefix("http://testserver")).status_code == 403


def test_a_session_not_opened_by_the_idp_is_not_offered_it(
    openid_provider: OpenIDProvider,
    make_provider: Callable[..., IdentityProvider],
    verified_client: Callable[[User], Client],
    make_user: Callable[..., User],
) -> None:
    make_provider(openid_provider)
    client = verified_client(make_user(roles.AGENT))
    assert client.post("/accounts/sso/corp/step-up/", GO_HOME).status_code == 400
    assert services.STEP_UP_KEY not in client.session
