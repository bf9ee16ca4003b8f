"""The OpenAPI schema: valid, generated without warnings, and only for verified callers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from drf_spectacular.validation import validate_schema

from accounts import roles
from accounts.models import User
from tests.api.conftest import token_client
from tests.conftest import start_session
from tests.inbox.conftest import Segments

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/"
JSON = {"accept": "application/vnd.oai.openapi+json"}
PATHS = {
    "/api/v1/inboxes/": {"get"},
    "/api/v1/conversations/": {"get"},
    "/api/v1/conversations/{conversation_id}/": {"get"},
    "/api/v1/conversations/{conversation_id}/messages/": {"get", "post"},
    "/api/v1/conversations/{conversation_id}/notes/": {"get", "post"},
    "/api/v1/contacts/{contact_id}/": {"get"},
}


def test_verified_user_gets_a_valid_schema(make_user: Any, verified_client: Any) -> None:
    response = verified_client(make_user(roles.AGENT)).get(SCHEMA_URL, headers=JSON)
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert {path: set(ops) - {"parameters"} for path, ops in schema["paths"].items()} == PATHS
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "pcl_<lookup_id>_<secret>",
        "description": "A scoped, expiring token of a service account, issued in the admin.",
    }
    contact = schema["components"]["schemas"]["ContactDetail"]
    assert "invoices" in contact["properties"] and "invoices" not in contact["required"]


def test_schema_is_refused_to_anonymous_and_unverified(make_user: Any) -> None:
    assert Client().get(SCHEMA_URL, headers=JSON).status_code == 401
    assert Client(headers={"authorization": "Basic eDp5"}).get(SCHEMA_URL).status_code == 401
    unverified = Client()
    start_session(unverified, make_user(roles.AGENT), verified=False)
    assert unverified.get(SCHEMA_URL, headers=JSON).status_code == 403


def test_schema_is_served_to_a_token(segments: Segments, service_account: User, issue_token: Any) -> None:
    client = token_client(issue_token(service_account, [segments.support]).plaintext)
    assert client.get(SCHEMA_URL, headers=JSON).status_code == 200


def test_schema_generates_without_warnings(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    assert "/api/v1/conversations/" in target.read_text()
