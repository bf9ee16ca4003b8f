"""The site's own 400/403/404/500 pages for people, JSON for the API, DEBUG or not."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory

from accounts import roles
from config import api
from tests.conftest import start_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent_client(make_user: Any) -> Client:
    client = Client()
    start_session(client, make_user(roles.AGENT), verified=True)
    return client


def _styled(response: Any, heading: str) -> None:
    body = response.content.decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert f'<h1 id="error-heading">{heading}</h1>' in body
    assert 'href="/static/css/app.css"' in body
    # The strict CSP holds on error pages too: no inline script or style.
    assert "<script>" not in body and "<style" not in body and " style=" not in body


@pytest.mark.parametrize("debug", [False, True])
def test_a_conversation_outside_the_segment_is_the_styled_404(
    agent_client: Client, settings: Any, debug: bool
) -> None:
    settings.DEBUG = debug
    response = agent_client.get("/conversations/999999/")
    assert response.status_code == 404
    _styled(response, "This page is not here")
    # django-csp leaves DEBUG's 404s without the header, for Django's technical page.
    assert ("Content-Security-Policy" in response) is not debug
    # A verified agent keeps the site's navigation and the idle warning on it.
    assert b'aria-label="Main"' in response.content and b"session-clock" in response.content


def test_an_unknown_page_is_the_styled_404_and_unknown_api_paths_stay_json(agent_client: Client) -> None:
    _styled(agent_client.get("/no/such/page/"), "This page is not here")
    response = agent_client.get("/api/v1/no-such-endpoint/")
    assert response.status_code == 404 and response.json() == {"detail": "No such API endpoint."}


@pytest.mark.parametrize(
    ("handler", "status", "heading"),
    [
        (lambda r: api.bad_request(r, ValueError()), 400, "That request could not be understood"),
        (lambda r: api.permission_denied(r, PermissionDenied()), 403, "You may not do this"),
        (lambda r: api.page_not_found(r, PermissionDenied()), 404, "This page is not here"),
        (api.server_error, 500, "Something went wrong on our side"),
    ],
)
def test_handlers_answer_pages_for_people_and_json_under_the_api(
    handler: Any, status: int, heading: str
) -> None:
    factory = RequestFactory()
    page = handler(factory.get("/conversations/1/"))
    assert page.status_code == status
    _styled(page, heading)
    answer = handler(factory.get("/api/v1/conversations/"))
    assert answer.status_code == status
    assert answer["Content-Type"] == "application/json" and "detail" in answer.content.decode()


def test_a_stale_form_gets_the_styled_csrf_page(make_user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    start_session(client, make_user(roles.AGENT), verified=True)
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    _styled(response, "This form has expired")
