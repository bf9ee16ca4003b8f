"""HTTP under ASGI (config.handler): a request's signals, gates and view run in one thread of
a fixed pool, the gates refuse as they did, static files are served on the loop without the
middleware, and what Django cannot read as a request still gets an answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started

from accounts.middleware import VerifiedAccessMiddleware
from tests.asgi import asgi_get

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def threads_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(step, thread name) for each request's start signal, its gate and its finish signal."""
    seen: list[tuple[str, str]] = []

    def record(step: str) -> None:
        seen.append((step, threading.current_thread().name))

    def started(**_: Any) -> None:
        record("started")

    def finished(**_: Any) -> None:
        record("finished")

    gate = VerifiedAccessMiddleware.__call__

    def gate_call(self: VerifiedAccessMiddleware, request: Any) -> Any:
        record("gate")
        return gate(self, request)

    monkeypatch.setattr(VerifiedAccessMiddleware, "__call__", gate_call)
    request_started.connect(started)
    request_finished.connect(finished)
    try:
        yield seen
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)


async def test_a_request_runs_in_one_thread_of_the_pool(threads_seen: list[tuple[str, str]]) -> None:
    for _ in range(3 * settings.HTTP_THREADS):
        assert (await asgi_get("/healthz"))[0] == 200

    requests = [threads_seen[i : i + 3] for i in range(0, len(threads_seen), 3)]
    assert len(requests) == 3 * settings.HTTP_THREADS
    for steps in requests:
        assert [step for step, _ in steps] == ["started", "gate", "finished"]
        # Signals, gate and view (within the gate) in one thread: one hand-over.
        assert len({name for _, name in steps}) == 1
    names = {steps[0][1] for steps in requests}
    # Django's stock handler made a thread per request (asgiref's ThreadSensitiveContext).
    assert all(name.startswith("http") for name in names)
    assert len(names) <= settings.HTTP_THREADS


async def test_the_gates_still_refuse_what_they_refused_under_the_handler() -> None:
    # Deny by default holds through the handler: without a session a page and the
    # supervision admin send the caller to sign in, and the API refuses; health answers.
    status, headers, _ = await asgi_get("/")
    assert status == 302 and headers[b"location"].startswith(b"/accounts/login/")
    status, _, _ = await asgi_get("/api/v1/conversations/")
    assert status in (401, 403)
    status, _, _ = await asgi_get("/admin/")
    assert status == 302
    assert (await asgi_get("/healthz"))[0] == 200


async def test_static_files_are_served_without_the_middleware(threads_seen: list[tuple[str, str]]) -> None:
    status, headers, body = await asgi_get("/static/css/app.css")

    assert status == 200
    assert headers[b"content-type"].startswith(b"text/css")
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert body == (Path(settings.BASE_DIR) / "static" / "css" / "app.css").read_bytes()
    # The file was found before any thread was asked for: no request signal, no gate. (Its
    # close, after it is sent, may have finished a request by now.)
    assert [step for step, _ in threads_seen if step != "finished"] == []


async def test_a_static_url_naming_no_file_is_a_404_with_debug_on_too(settings: Any) -> None:
    # With DEBUG on, ServeStatic raises where it looked; that is an answer, not a crash.
    settings.DEBUG = True
    status, _, body = await asgi_get("/static/css/no-such-file.css")
    assert status == 404
    assert b"did not find the file 'css/no-such-file.css'" in body
    # Production sends the URL on to the views: the site's own 404.
    settings.DEBUG = False
    status, _, body = await asgi_get("/static/css/no-such-file.css")
    assert status == 404
    assert b"did not find" not in body


async def test_a_request_django_cannot_read_is_answered_400(threads_seen: list[tuple[str, str]]) -> None:
    status, _, _ = await asgi_get("/healthz", query=b"q=\xff")

    assert status == 400
    assert [step for step, _ in threads_seen if step != "finished"] == []
