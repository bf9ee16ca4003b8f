"""PostgreSQL restarted under a running app server: while it is down, a page and an API
request answer 503 at once (the site's page, or JSON under /api/), never a 500 or a hang;
once it is back, the same server answers them again, with no restart of its own. Both
connection modes are run: a connection per request (health-checked when reused) and the
per-process pool that ASGI servers use in production.

Runs against a PostgreSQL of its own (tests/scale/conftest.py), never the shared one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from django.db import IntegrityError, OperationalError, ProgrammingError
from django.test import Client, RequestFactory

from accounts import roles
from accounts.models import User
from config import api
from tests.browser import serve_app
from tests.conftest import start_session
from tests.scale.conftest import PrivatePostgres
from tests.test_error_pages import _styled

PAGE = "/"
API = "/api/v1/conversations/"
# A down database is answered within this; a request must never wait on it.
ANSWERED_WITHIN = 2.0
RECOVERED_WITHIN = 10.0


def _answered_quickly(http: httpx.Client, path: str) -> httpx.Response:
    started = time.monotonic()
    response = http.get(path)
    elapsed = time.monotonic() - started
    assert response.status_code in (200, 503), (path, response.status_code, response.text[:300])
    assert elapsed <= ANSWERED_WITHIN, (path, elapsed)
    return response


def _unavailable(http: httpx.Client, path: str) -> httpx.Response:
    response = _answered_quickly(http, path)
    assert response.status_code == 503, (path, response.status_code)
    return response


def _failures_until_answered(http: httpx.Client) -> int:
    """Requests the page and the API until both answer 200 (each failure a quick 503),
    within RECOVERED_WITHIN; how many answers were not 200."""
    deadline = time.monotonic() + RECOVERED_WITHIN
    failures = 0
    pending = {PAGE, API}
    while pending:
        assert time.monotonic() < deadline, f"still failing {RECOVERED_WITHIN} s after the restart: {pending}"
        for path in sorted(pending):
            if _answered_quickly(http, path).status_code == 200:
                pending.discard(path)
            else:
                failures += 1
        time.sleep(0.05 if pending else 0)
    return failures


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "connections",
    [{"DB_CONN_MAX_AGE": "60"}, {"DB_POOL_SIZE": "4"}],
    ids=["persistent", "pool"],
)
def test_a_database_restart_answers_503_at_once_and_the_server_recovers_by_itself(
    role_groups: None,
    make_user: Callable[..., User],
    private_postgres: PrivatePostgres,
    tmp_path: Path,
    connections: dict[str, str],
) -> None:
    client = Client()
    start_session(client, make_user(roles.AGENT), verified=True)
    database_url = private_postgres.copy_test_database()
    cookies = {key: morsel.value for key, morsel in client.cookies.items()}

    with (
        serve_app(tmp_path, DATABASE_URL=database_url, **connections) as base,
        # The session is bound to the browser that opened it: here, one that sends none.
        httpx.Client(base_url=base, cookies=cookies, headers={"User-Agent": ""}, timeout=30) as http,
    ):
        assert http.get(PAGE).status_code == 200
        assert http.get(API).status_code == 200

        # A restart between two requests: the connections the server holds are all broken
        # now, and are checked before use. Without a pool that costs no request; a pool
        # drops two dead connections per request at worst (psycopg_pool backs off after the
        # second in a row, past the request's wait), never one request per connection.
        private_postgres.stop()
        private_postgres.start()
        assert _failures_until_answered(http) <= int(connections.get("DB_POOL_SIZE", 0)) // 2

        private_postgres.stop()
        page = _unavailable(http, PAGE)
        _styled(page, "Portcullis is briefly unavailable")
        api = _unavailable(http, API)
        assert api.headers["Content-Type"] == "application/json"
        assert api.json() == {"detail": "The service is briefly unavailable; try again shortly."}
        # Clients are told when to try again.
        assert int(page.headers["Retry-After"]) > 0 and int(api.headers["Retry-After"]) > 0
        # The health check a load balancer polls says the same.
        _unavailable(http, "/healthz")
        # Later requests, with no broken connection left to find, do not wait any longer
        # for a new one (on the pool, say).
        _unavailable(http, PAGE)

        private_postgres.start()
        _failures_until_answered(http)


def _answer_while_handling(error: Exception, path: str) -> int:
    """What Django's handler answers for an unhandled `error`: it calls server_error inside
    its `except` block."""
    try:
        raise error
    except Exception:
        return api.server_error(RequestFactory().get(path)).status_code


@pytest.mark.parametrize("path", ["/conversations/1/", API])
def test_only_an_unreachable_database_is_a_503(path: str) -> None:
    """A bug (a broken query, a violated constraint) must not pass for an outage that
    clears by itself: it stays a 500, and is fixed rather than waited out."""
    assert _answer_while_handling(OperationalError("the server closed the connection"), path) == 503
    for error in (IntegrityError("duplicate key"), ProgrammingError("syntax error"), ValueError("bug")):
        assert _answer_while_handling(error, path) == 500
