"""The OpenAPI schema: valid, generated without warnings, and only for verified callers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from drf_spectacular.validation import validate_schema

from accounts import roles
from accounts.models import User
from inbox.selectors import Cursor
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
    "/api/v1/conversations/{conversation_id}/messages/{message_id}/reveal/": {"post"},
    "/api/v1/contacts/{contact_id}/": {"get"},
    "/api/v1/contacts/{contact_id}/reveal/": {"post"},
    "/api/v1/channels/{channel_id}/messages": {"post"},
    "/api/v1/devices/attest": {"post"},
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


def _matches(schema: dict[str, Any], value: str) -> bool:
    return re.search(schema["pattern"], value) is not None


def test_schema_states_what_the_server_refuses(make_user: Any, verified_client: Any) -> None:
    schema = verified_client(make_user(roles.AGENT)).get(SCHEMA_URL, headers=JSON).json()
    text = schema["components"]["schemas"]["Text"]["properties"]["text"]
    assert (text["minLength"], text["maxLength"]) == (1, 20_000)
    assert not any(_matches(text, refused) for refused in ["", " ", "\t\n", "a\x00b"])
    assert all(_matches(text, accepted) for accepted in ["a", " a ", "two\nlines"])

    listing = schema["paths"]["/api/v1/conversations/"]["get"]
    query = {parameter["name"]: parameter["schema"] for parameter in listing["parameters"]}
    assert _matches(query["status"], "open,resolved") and _matches(query["status"], "pending")
    assert not any(_matches(query["status"], refused) for refused in ["", "open,", "open, pending", "bogus"])
    assert _matches(query["cursor"], Cursor(timezone.now(), 7).encode())
    assert not any(_matches(query["cursor"], refused) for refused in ["@@@", "abc=", "a b"])
    search = query["q"]["oneOf"][0]
    assert _matches(search, "printer jam") and not _matches(search, "a\x00b")
    assert listing["responses"].keys() >= {"200", "400", "401", "403", "404"}

    for path, name in [
        ("/api/v1/conversations/{conversation_id}/", "conversation_id"),
        ("/api/v1/contacts/{contact_id}/", "contact_id"),
    ]:
        (parameter,) = schema["paths"][path]["get"]["parameters"]
        assert parameter["name"] == name and parameter["in"] == "path"
        assert parameter["schema"] == {
            "type": "integer",
            "format": "int64",
            "minimum": 1,
            "maximum": 2**63 - 1,
        }
