"""Device Bound Session Credentials, driven by a scripted client that speaks the protocol the
way Chrome does (registration JWT, 403 challenge, refresh), and what a thief cannot do."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts import roles
from accounts.devices import dbsc
from accounts.devices import services as device_services
from accounts.devices.services import device_revoke
from accounts.models import BrowserDevice, User, UserSession
from audit.models import SecurityEvent
from tests.conftest import PASSWORD, start_session
from tests.devices.conftest import CHROME_UA, NONCE_META, DeviceKey, stolen, url

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
VERIFY = "/accounts/verify/"
REGISTER = "/accounts/dbsc/register/"
REFRESH = "/accounts/dbsc/refresh/"
REGISTRATION_HEADER = re.compile(r'\(ES256\);path="(?P<path>[^"]+)";challenge="(?P<challenge>[^"]+)"')
CHALLENGE_HEADER = re.compile(r'"(?P<challenge>[^"]+)";id="(?P<id>[^"]+)"')


def dbsc_jwt(key: DeviceKey, claims: dict[str, Any], *, with_jwk: bool) -> str:
    """A DBSC proof as Chrome signs it: the new key in the header at registration, none after."""
    headers: dict[str, Any] = {"typ": "dbsc+jwt", **({"jwk": key.jwk} if with_jwk else {})}
    return jwt.encode(claims, key.private, algorithm="ES256", headers=headers)


def sf(value: str) -> str:
    """An sf-string, as the draft writes Secure-Session-Response and Sec-Secure-Session-Id."""
    return f'"{value}"'


def bound_cookie_set(response: HttpResponse) -> bool:
    return device_services.bound_cookie_name() in response.cookies


def refusal_codes(user: User) -> set[str]:
    return {
        event.detail["code"]
        for event in SecurityEvent.objects.filter(kind="device_proof_refused", user=user)
        if event.detail.get("surface") == "dbsc"
    }


@dataclass
class Browser:
    """One browser profile: the test client (cookies), the WebCrypto device key, and the
    key the browser keeps for DBSC."""

    user: User
    client: Client = field(
        default_factory=lambda: Client(enforce_csrf_checks=True, headers={"User-Agent": CHROME_UA})
    )
    device_key: DeviceKey = field(default_factory=DeviceKey)
    dbsc_key: DeviceKey = field(default_factory=DeviceKey)
    session_identifier: str = ""

    def csrf(self) -> str:
        return self.client.cookies[settings.CSRF_COOKIE_NAME].value

    def sign_in(self) -> str:
        """The password step with a device proof; returns the registration header it carries."""
        page = self.client.get(LOGIN).content.decode()
        nonce = NONCE_META.search(page)
        assert nonce is not None
        response = self.client.post(
            LOGIN,
            {
                "username": self.user.username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.csrf(),
                "device_proof": self.device_key.proof("POST", url(LOGIN), nonce=nonce.group(1)),
            },
        )
        assert response.status_code == 302
        return response.headers.get("Secure-Session-Registration", "")

    def register(self, challenge: str, **claims: Any) -> HttpResponse:
        token = dbsc_jwt(self.dbsc_key, {"jti": challenge, **claims}, with_jwk=True)
        return self.client.post(REGISTER, headers={"Secure-Session-Response": sf(token)})

    def signed_in_and_registered(self) -> Browser:
        offered = REGISTRATION_HEADER.fullmatch(self.sign_in())
        assert offered is not None
        response = self.register(offered["challenge"])
        assert response.status_code == 200
        self.session_identifier = response.json()["session_identifier"]
        return self

    def refresh(self, token: str | None = None) -> HttpResponse:
        headers = {"Sec-Secure-Session-Id": sf(self.session_identifier)}
        if token is not None:
            headers["Secure-Session-Response"] = sf(token)
        return self.client.post(REFRESH, headers=headers)

    def challenge(self) -> str:
        asked = self.refresh()
        assert asked.status_code == 403 and not bound_cookie_set(asked)
        issued = CHALLENGE_HEADER.fullmatch(asked.headers["Secure-Session-Challenge"])
        assert issued is not None and issued["id"] == self.session_identifier
        return issued["challenge"]

    def answer(self, challenge: str, key: DeviceKey | None = None) -> str:
        return dbsc_jwt(key or self.dbsc_key, {"jti": challenge}, with_jwk=False)


@pytest.fixture
def browser(make_user: Any) -> Callable[[], Browser]:
    return lambda: Browser(make_user(roles.AGENT))


def test_a_dbsc_session_renews_the_bound_cookie_by_itself_once_it_runs_out(
    browser: Any, totp: Any, settings: Any
) -> None:
    me = browser()
    offered = REGISTRATION_HEADER.fullmatch(me.sign_in())
    assert offered is not None and offered["path"] == REGISTER
    # The browser registers on its own: no device proof, no CSRF token, the JWT only.
    registered = me.register(offered["challenge"])
    assert registered.status_code == 200 and "no-store" in registered.headers["Cache-Control"]
    config = registered.json()
    record = UserSession.objects.get(user=me.user)
    assert config["session_identifier"] == me.dbsc_key.thumbprint == record.dbsc_key_thumbprint
    assert record.dbsc_public_key == me.dbsc_key.jwk
    assert config["refresh_url"] == REFRESH and config["scope"]["include_site"] is False
    # The config names the bound cookie with the attributes it is set with, one cookie renewed two ways.
    [credential] = config["credentials"]
    cookie = registered.cookies[credential["name"]]
    assert credential["name"] == device_services.bound_cookie_name()
    assert credential["attributes"] == "Path=/; HttpOnly; SameSite=Lax"
    assert (cookie["path"], cookie["httponly"], cookie["samesite"]) == ("/", True, "Lax")
    assert int(cookie["max-age"]) == settings.DEVICE_REFRESH_SECONDS
    event = SecurityEvent.objects.get(kind="dbsc_registered", user=me.user)
    assert event.detail == {"device": record.device_id, "key": me.dbsc_key.thumbprint}

    done = me.client.post(
        VERIFY,
        {
            "token": totp(me.user).now(),
            "csrfmiddlewaretoken": me.csrf(),
            "device_proof": me.device_key.proof("POST", url(VERIFY)),
        },
    )
    assert done.status_code == 302
    me.session_identifier = config["session_identifier"]
    assert me.client.get("/").status_code == 200

    moment = time.time() + settings.DEVICE_REFRESH_SECONDS + 1
    with mock.patch("django.core.signing.time.time", return_value=moment):
        held = me.client.get("/", headers={"Accept": "application/json"})
        assert held.status_code == 401 and held.json()["code"] == "device_refresh_required"
        challenge = me.challenge()
        renewed = me.refresh(me.answer(challenge))
        assert renewed.status_code == 200 and bound_cookie_set(renewed)
        assert renewed.json()["session_identifier"] == me.session_identifier
        assert me.client.get("/").status_code == 200
        # The same with both headers bare, not as sf-strings.
        bare = me.client.post(
            REFRESH,
            headers={
                "Sec-Secure-Session-Id": me.session_identifier,
                "Secure-Session-Response": me.answer(me.challenge()),
            },
        )
        assert bare.status_code == 200 and bound_cookie_set(bare)
    # Nothing of the ceremonies' secrets is recorded.
    recorded = json.dumps([e.detail for e in SecurityEvent.objects.filter(user=me.user)])
    assert offered["challenge"] not in recorded and challenge not in recorded


def test_a_sign_in_by_redirect_is_offered_dbsc_when_its_page_binds_the_key(make_user: Any) -> None:
    me = Browser(make_user(roles.AGENT), client=Client())
    start_session(me.client, me.user, verified=True)
    session = me.client.session
    session[device_services.BIND_BY_KEY] = time.time() + device_services.LATE_BIND_SECONDS
    session.save()
    refresh = "/accounts/devices/refresh/"
    bound = me.client.post(refresh, headers={"Device-Proof": me.device_key.proof("POST", url(refresh))})
    offered = REGISTRATION_HEADER.fullmatch(bound.headers.get("Secure-Session-Registration", ""))
    assert bound.status_code == 200 and offered is not None
    # Only the binding offers it: a later proven request of the same session does not.
    again = me.client.post(refresh, headers={"Device-Proof": me.device_key.proof("POST", url(refresh))})
    assert again.status_code == 200 and "Secure-Session-Registration" not in again.headers
    assert me.register(offered["challenge"]).status_code == 200


def test_the_registration_jwt_of_the_drafts_text_is_taken_and_its_aud_and_iat_checked(browser: Any) -> None:
    me = browser()
    offered = REGISTRATION_HEADER.fullmatch(me.sign_in())
    assert offered is not None
    challenge = offered["challenge"]

    def draft(**claims: Any) -> HttpResponse:
        # The draft's shape: the key as the claim `key`, with aud and iat beside the challenge.
        token = jwt.encode(
            {"jti": challenge, "key": me.dbsc_key.jwk, **claims},
            me.dbsc_key.private,
            algorithm="ES256",
            headers={"typ": "dbsc+jwt"},
        )
        return me.client.post(REGISTER, headers={"Secure-Session-Response": sf(token)})

    wrong_audience = draft(aud="https://elsewhere.example/accounts/dbsc/register/", iat=int(time.time()))
    assert wrong_audience.status_code == 401 and wrong_audience.json()["code"] == "dbsc_wrong_request"
    stale = draft(aud=url(REGISTER), iat=str(int(time.time()) - 3600))
    assert stale.status_code == 401 and stale.json()["code"] == "dbsc_stale"
    taken = draft(aud=url(REGISTER), iat=str(int(time.time())))
    assert taken.status_code == 200 and taken.json()["session_identifier"] == me.dbsc_key.thumbprint
    assert {"dbsc_wrong_request", "dbsc_stale"} <= refusal_codes(me.user)


@pytest.mark.parametrize("algorithm", ["none", "HS256", "RS256"])
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the small key is the point
def test_only_es256_is_taken(browser: Any, algorithm: str) -> None:
    me = browser().signed_in_and_registered()
    challenge = me.challenge()
    keys: dict[str, Any] = {
        "none": None,
        # The classic confusion: an HMAC keyed with something public.
        "HS256": me.dbsc_key.jwk["x"],
        # RSA is in the draft, but not offered; a small key least of all.
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505  # the point
    }
    forged = jwt.encode(
        {"jti": challenge},
        keys[algorithm],
        algorithm=algorithm,
        headers={"typ": "dbsc+jwt", "jwk": me.dbsc_key.jwk},
    )
    refused = me.refresh(forged)
    assert refused.status_code == 401 and refused.json()["code"] == "dbsc_algorithm"
    assert not bound_cookie_set(refused)
    # At registration likewise.
    other = browser()
    offered = REGISTRATION_HEADER.fullmatch(other.sign_in())
    assert offered is not None
    forged = jwt.encode(
        {"jti": offered["challenge"]},
        keys[algorithm],
        algorithm=algorithm,
        headers={"typ": "dbsc+jwt", "jwk": other.dbsc_key.jwk},
    )
    refused = other.client.post(REGISTER, headers={"Secure-Session-Response": sf(forged)})
    assert refused.status_code == 401 and refused.json()["code"] == "dbsc_algorithm"
    assert UserSession.objects.get(user=other.user).dbsc_key_thumbprint == ""
    assert refusal_codes(me.user) == refusal_codes(other.user) == {"dbsc_algorithm"}


def test_a_made_up_replayed_or_other_sessions_challenge_renews_nothing(browser: Any) -> None:
    me, other = browser().signed_in_and_registered(), browser().signed_in_and_registered()

    made_up = me.refresh(me.answer(secrets.token_urlsafe(32)))
    assert made_up.status_code == 403 and not bound_cookie_set(made_up)

    seen = me.answer(me.challenge())
    assert me.refresh(seen).status_code == 200
    replayed = me.refresh(seen)
    assert replayed.status_code == 403 and not bound_cookie_set(replayed)

    # A challenge the other session was given, signed by this session's key.
    theirs = me.refresh(me.answer(other.challenge()))
    assert theirs.status_code == 403 and not bound_cookie_set(theirs)
    # Each refusal answers a fresh challenge of this session, which the key's holder signs.
    issued = CHALLENGE_HEADER.fullmatch(theirs.headers["Secure-Session-Challenge"])
    assert issued is not None and me.refresh(me.answer(issued["challenge"])).status_code == 200
    refused = SecurityEvent.objects.filter(kind="device_proof_refused", user=me.user, detail__surface="dbsc")
    assert [e.detail["code"] for e in refused] == ["dbsc_challenge"] * 3

    # A registration's challenge is no refresh's, and is spent by its registration.
    fresh = browser()
    offered = REGISTRATION_HEADER.fullmatch(fresh.sign_in())
    assert offered is not None and fresh.register(offered["challenge"]).status_code == 200
    fresh.session_identifier = fresh.dbsc_key.thumbprint
    assert fresh.refresh(fresh.answer(offered["challenge"])).status_code == 403
    again = fresh.register(offered["challenge"])
    assert again.status_code == 401 and again.json()["code"] == "dbsc_challenge"


def test_a_jwt_signed_by_another_key_refreshes_nothing(browser: Any) -> None:
    me = browser().signed_in_and_registered()
    intruder = DeviceKey()
    challenge = me.challenge()
    # Even carrying its own jwk: only the registered key is ever tried.
    for forged in (
        me.answer(challenge, key=intruder),
        dbsc_jwt(intruder, {"jti": challenge}, with_jwk=True),
        # The device's WebCrypto key is not the DBSC key either.
        me.answer(challenge, key=me.device_key),
    ):
        refused = me.refresh(forged)
        assert refused.status_code == 401 and refused.json()["code"] == "dbsc_signature"
        assert not bound_cookie_set(refused)
    # The challenge is still the genuine key's to answer.
    assert me.refresh(me.answer(challenge)).status_code == 200


def test_a_session_registers_one_key_for_its_life(browser: Any) -> None:
    me = browser().signed_in_and_registered()
    record = UserSession.objects.get(user=me.user)
    # A second offer for the same session (none is ever made: the challenge is the sign-in's).
    request = RequestFactory().get("/")
    request.META[device_services.DBSC_OFFER_META_KEY] = record.pk
    response = HttpResponse()
    dbsc.dbsc_registration_offer(request=request, response=response)
    offered = REGISTRATION_HEADER.fullmatch(response["Secure-Session-Registration"])
    assert offered is not None
    me.dbsc_key = DeviceKey()
    second = me.register(offered["challenge"])
    assert second.status_code == 401 and second.json()["code"] == "dbsc_already_registered"
    record.refresh_from_db()
    assert record.dbsc_key_thumbprint == me.session_identifier != me.dbsc_key.thumbprint
    assert refusal_codes(me.user) == {"dbsc_already_registered"}
    assert SecurityEvent.objects.filter(kind="dbsc_registered", user=me.user).count() == 1


def test_a_stolen_session_cookie_can_neither_register_its_own_key_nor_refresh(
    browser: Any, settings: Any
) -> None:
    victim = browser()
    offered = REGISTRATION_HEADER.fullmatch(victim.sign_in())
    assert offered is not None
    # Copied right after sign-in: the challenge was only in the victim's sign-in response.
    thief = Browser(victim.user, client=stolen(victim.client, headers={"User-Agent": CHROME_UA}))
    early = thief.register(secrets.token_urlsafe(32))
    assert early.status_code == 401 and early.json()["code"] == "dbsc_challenge"
    assert victim.register(offered["challenge"]).status_code == 200
    victim.session_identifier = victim.dbsc_key.thumbprint
    seen = victim.answer(victim.challenge())
    assert victim.refresh(seen).status_code == 200
    # Copied again later, with the bound cookie; and it runs out.
    thief = Browser(victim.user, client=stolen(victim.client, headers={"User-Agent": CHROME_UA}))
    late = thief.register(offered["challenge"])
    assert late.status_code == 401

    moment = time.time() + settings.DEVICE_REFRESH_SECONDS + 1
    with mock.patch("django.core.signing.time.time", return_value=moment):
        assert thief.client.get(VERIFY).status_code == 401
        # Not the browser: no session identifier, no challenge.
        bare = thief.client.post(REFRESH)
        assert bare.status_code == 401 and "Secure-Session-Challenge" not in bare.headers
        # Knowing the identifier, a challenge it gets; what it signs is refused.
        thief.session_identifier = victim.session_identifier
        challenge = thief.challenge()
        assert thief.refresh(thief.answer(challenge)).status_code == 401
        assert thief.refresh(seen).status_code == 403  # the victim's answer, replayed
        assert thief.client.get(VERIFY).status_code == 401
        # The victim's browser goes on.
        assert victim.refresh(victim.answer(victim.challenge())).status_code == 200
        assert victim.client.get(VERIFY).status_code == 200
    assert {"dbsc_challenge", "dbsc_session_id", "dbsc_signature"} <= refusal_codes(victim.user)
    assert UserSession.objects.get(user=victim.user).dbsc_key_thumbprint == victim.dbsc_key.thumbprint


def test_a_revoked_devices_session_cannot_refresh(browser: Any, settings: Any) -> None:
    me = browser().signed_in_and_registered()
    challenge = me.challenge()
    device_revoke(device=BrowserDevice.objects.get(user=me.user), by=me.user)
    ended = me.refresh(me.answer(challenge))
    assert ended.status_code == 302 and not bound_cookie_set(ended)

    # Under monitor the gate lets a revoked device's request through (and records it); the
    # DBSC refresh itself still refuses, even before the revocation has ended the session.
    settings.DEVICE_BINDING = "monitor"
    other = browser().signed_in_and_registered()
    challenge = other.challenge()
    BrowserDevice.objects.filter(user=other.user).update(revoked_at=timezone.now())
    refused = other.refresh(other.answer(challenge))
    assert refused.status_code == 401 and refused.json()["code"] == "dbsc_session"
    assert not bound_cookie_set(refused)


def test_dbsc_is_offered_only_when_on(browser: Any, settings: Any) -> None:
    settings.DEVICE_DBSC = False
    me = browser()
    assert me.sign_in() == ""
    assert me.register(secrets.token_urlsafe(32)).status_code == 404
    assert me.client.post(REFRESH).status_code == 404
