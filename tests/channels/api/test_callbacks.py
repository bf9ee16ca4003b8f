"""The callback signature an integration checks, and the host allowlist its URL obeys."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError

from channels_app.api import callbacks
from channels_app.models import ApiChannel

BODY = b'{"event":"message.created"}'


def signed(secret: str, timestamp: int, body: bytes = BODY) -> dict[str, str]:
    return {
        callbacks.TIMESTAMP_HEADER: str(timestamp),
        callbacks.SIGNATURE_HEADER: callbacks.signature(secret, str(timestamp), body),
    }


def test_a_fresh_signed_body_passes_and_any_change_fails() -> None:
    now = int(time.time())
    assert callbacks.signature_problem("s3cret", signed("s3cret", now), BODY) is None
    assert callbacks.signature_problem("s3cret", signed("other", now), BODY) is not None
    assert callbacks.signature_problem("s3cret", signed("s3cret", now), BODY + b" ") is not None
    assert callbacks.signature_problem("s3cret", {}, BODY) == f"missing {callbacks.TIMESTAMP_HEADER}"


def test_a_captured_callback_replayed_later_is_refused() -> None:
    then = int(time.time()) - callbacks.REPLAY_WINDOW_SECONDS - 1
    problem = callbacks.signature_problem("s3cret", signed("s3cret", then), BODY)
    assert problem is not None and "window" in problem


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/replies",
        "https://169.254.169.254/latest/meta-data",
        "http://[::1]:6379/",
        "ftp://crm/",
    ],
)
def test_the_callback_url_obeys_the_host_allowlist(api_channel: Callable[..., ApiChannel], url: str) -> None:
    channel = api_channel()
    channel.callback_url = url
    with pytest.raises(ValidationError) as refused:
        channel.full_clean()
    assert "callback_url" in refused.value.message_dict
