"""The proof itself: what a valid one is, and each way an attacker's is not."""

from __future__ import annotations

import time
from unittest import mock

import jwt
import pytest

from accounts.devices.proofs import ProofRefused, nonce_issue, proof_verify
from tests.devices.conftest import DeviceKey

URL = "https://inbox.example/conversations/1/note/"


def refused(token: str, *, method: str = "POST", url: str = URL) -> str:
    with pytest.raises(ProofRefused) as error:
        proof_verify(token, method=method, url=url)
    return error.value.code


def test_a_fresh_proof_names_its_key_and_works_once() -> None:
    key = DeviceKey()
    token = key.proof("POST", URL)
    proof = proof_verify(token, method="POST", url=URL)
    assert proof.thumbprint == key.thumbprint and proof.jwk == key.jwk
    assert refused(token) == "replayed"


def test_a_proof_is_for_one_method_and_url() -> None:
    key = DeviceKey()
    assert refused(key.proof("POST", URL), method="DELETE") == "wrong_request"
    assert refused(key.proof("POST", URL), url=URL.replace("/1/", "/2/")) == "wrong_request"


def test_stale_proofs_and_forged_or_expired_nonces_are_refused() -> None:
    key = DeviceKey()
    assert refused(key.proof("POST", URL, iat=time.time() - 400)) == "stale"
    assert refused(key.proof("POST", URL, iat=time.time() + 400)) == "stale"
    assert refused(key.proof("POST", URL, nonce="made-up:nonce")) == "nonce"
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 3600):
        old_nonce = nonce_issue()
    assert refused(key.proof("POST", URL, nonce=old_nonce)) == "nonce"


def test_a_signature_by_another_key_or_algorithm_is_refused() -> None:
    key, other = DeviceKey(), DeviceKey()
    # Signed by `other`, claiming `key`'s public key.
    forged = other.proof("POST", URL, header={"jwk": key.jwk})
    assert refused(forged) == "signature"
    claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": "a" * 16, "nonce": nonce_issue()}
    hmac = jwt.encode(claims, "secret" * 6, algorithm="HS256", headers={"typ": "dpop+jwt", "jwk": key.jwk})
    assert refused(hmac) == "malformed"
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"typ": "dpop+jwt", "jwk": key.jwk})
    assert refused(unsigned) == "malformed"
    head, body, signature = key.proof("POST", URL).split(".")
    assert refused(f"{head}.{body}.{signature[:-4]}AAAA") == "signature"


def test_malformed_proofs_are_refused_not_crashed_on() -> None:
    key = DeviceKey()
    private = {**key.jwk, "d": "AAAA"}
    assert refused(key.proof("POST", URL, header={"jwk": private})) == "malformed"
    assert refused(key.proof("POST", URL, header={"typ": "JWT"})) == "malformed"
    assert refused(key.proof("POST", URL, header={"jwk": {**key.jwk, "crv": "P-384"}})) == "malformed"
    assert refused(key.proof("POST", URL, jti="short")) == "malformed"
    assert refused("") == "missing"
    assert refused("not.a.jws") == "malformed"
    assert refused("x" * 5000) == "malformed"
