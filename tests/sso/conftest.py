"""A real OpenID provider (panva's oidc-provider, run by node from tests/sso/op) and the
helpers that walk a sign-in through it.

`npm ci --prefix tests/sso/op` installs it (.ci/run does); without node_modules the SSO
tests fail rather than skip, so CI cannot pass without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from django.core.cache import cache

from accounts.models import IdentityProvider
from tests.browser import free_port

OP_DIR = Path(__file__).resolve().parent / "op"
CLIENT_ID = "portcullis"
CLIENT_SECRET = "op-client-secret-for-tests-only"
OTHER_CLIENT_ID = "another-app"
TEST_SERVER_CALLBACK = "http://testserver/accounts/sso/corp/callback/"

# The people at the IdP: what they sign in with and which groups they are in.
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "claims": {"email": "alice@corp.test", "preferred_username": "alice", "groups": ["support"]},
        "acr": "urn:portcullis:test:mfa",
        "amr": ["pwd", "otp"],
    },
    "bob": {
        "claims": {"email": "bob@corp.test", "preferred_username": "bob", "groups": ["support"]},
        "acr": "urn:portcullis:test:password",
        "amr": ["pwd"],
    },
    "carol": {
        "claims": {"email": "carol@corp.test", "preferred_username": "carol", "groups": ["admins"]},
        "acr": "phr",
        "amr": ["hwk", "user"],
    },
}


@dataclass
class OpenIDProvider:
    issuer: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _clients(callbacks: list[str], backchannel: str | None) -> list[dict[str, Any]]:
    ours: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": callbacks,
        "token_endpoint_auth_method": "client_secret_basic",
    }
    if backchannel:
        ours |= {"backchannel_logout_uri": backchannel, "backchannel_logout_session_required": True}
    other = {
        "client_id": OTHER_CLIENT_ID,
        "client_secret": "another-secret",
        "redirect_uris": ["http://testserver/elsewhere/"],
    }
    return [ours, other]


def op_start(
    *, callbacks: list[str], backchannel: str | None = None, default_login: str = ""
) -> OpenIDProvider:
    if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OpenID provider is not installed: run `npm ci --prefix tests/sso/op`")
    port = free_port()
    env = {
        **os.environ,
        "OP_PORT": str(port),
        "OP_CLIENTS": json.dumps(_clients(callbacks, backchannel)),
        "OP_ACCOUNTS": json.dumps(ACCOUNTS),
        "OP_DEFAULT_LOGIN": default_login,
    }
    log = tempfile.NamedTemporaryFile(prefix="test-op-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        ["node", "op.mjs"],
        cwd=OP_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    op = OpenIDProvider(issuer=f"http://127.0.0.1:{port}", process=process, log=Path(log.name))
    deadline = time.monotonic() + 30
    while "ready" not in op.output():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the OpenID provider did not start: {op.output()[-2000:]}")
        time.sleep(0.05)
    return op


def op_stop(op: OpenIDProvider) -> None:
    op.process.terminate()
    try:
        op.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        op.process.kill()
        op.process.wait()
    op.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def openid_provider() -> Iterator[OpenIDProvider]:
    op = op_start(callbacks=[TEST_SERVER_CALLBACK])
    yield op
    op_stop(op)


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    # Discovery and JWKS are cached per issuer; each test's provider is new.
    cache.clear()


@pytest.fixture
def make_provider(db: Any) -> Callable[..., IdentityProvider]:
    def make(op: OpenIDProvider, **fields: Any) -> IdentityProvider:
        values: dict[str, Any] = {
            "name": "Corp IdP",
            "slug": "corp",
            "enabled": True,
            "issuer": op.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "allow_jit_provisioning": True,
        }
        return IdentityProvider.objects.create(**(values | fields))

    return make


def idp_login(browser: httpx.Client, authorize_url: str, login_hint: str, *, stop_at: str) -> str:
    """Follow the IdP's redirects (login, consent) until it sends the browser to `stop_at`;
    returns that URL (the callback with code and state)."""
    url = f"{authorize_url}&login_hint={login_hint}"
    for _ in range(12):
        response = browser.get(url)
        location = response.headers.get("location")
        assert location, f"the IdP stopped at HTTP {response.status_code}: {response.text[:500]}"
        url = urljoin(url, location)
        if url.startswith(stop_at):
            return url
    raise AssertionError("the IdP kept redirecting")


def callback_query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
