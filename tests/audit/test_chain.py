"""The hash-chained trail: what an attacker with database access changes is found."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.db.models import F

from accounts.models import User
from audit.chain import keys
from audit.chain.canonical import canonical_json, link_hash
from audit.chain.services import chain_seal, checkpoint_write
from audit.models import AccessEvent, ChainLink, RuleDecision, SecurityEvent
from audit.services import Kind, access_event_record, security_event_record
from tests.audit.conftest import new_key, tamper

pytestmark = pytest.mark.django_db


def write_trail(user: User) -> list[AccessEvent]:
    for kind in (Kind.LOGIN_SUCCEEDED, Kind.OTP_SUCCEEDED, Kind.LOGOUT):
        security_event_record(kind=kind, user=user, detail={"b": 1, "a": [1, 2]})
    for object_id in (1, 2, 3):
        access_event_record(
            user_id=user.pk,
            session_id=None,
            api_token_id=None,
            ip_address="192.0.2.1",
            object_type="inbox.conversation",
            object_id=object_id,
            action="view",
            allowed=True,
        )
    RuleDecision.objects.create(rule_id=1, outcome="would_deny", object_type="inbox.inbox", action="view")
    return list(AccessEvent.objects.order_by("pk"))


def verify() -> str:
    """verify_audit's output; raises its CommandError when it fails."""
    from io import StringIO

    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def failure() -> str:
    with pytest.raises(CommandError) as excinfo:
        verify()
    assert excinfo.value.returncode == 1
    return str(excinfo.value)


@pytest.fixture
def sealed(make_user: Callable[..., User]) -> list[AccessEvent]:
    events = write_trail(make_user())
    checkpoint_write()
    return events


def test_an_untouched_trail_verifies(sealed: list[AccessEvent]) -> None:
    output = verify()
    assert "audit trail verified" in output
    assert "audit.accessevent: 3 chained, 0 not sealed yet" in output
    assert "audit.securityevent: 3 chained" in output
    assert "audit.ruledecision: 1 chained" in output
    assert LogEntry.objects.exists() and ChainLink.objects.filter(source="auditlog.logentry").exists()


def test_sealing_twice_chains_each_row_once(sealed: list[AccessEvent]) -> None:
    assert chain_seal() == 0
    assert ChainLink.objects.filter(source="audit.accessevent").count() == 3


def test_an_edited_row_is_named(sealed: list[AccessEvent]) -> None:
    tamper("audit_accessevent", "UPDATE audit_accessevent SET allowed = false WHERE id = %s", [sealed[1].pk])
    message = failure()
    assert f"first: modified: audit.accessevent id {sealed[1].pk} (chain position 2)" in message
    assert "1 problems" in message  # the rows after it still verify


def test_a_deleted_row_is_named(sealed: list[AccessEvent]) -> None:
    tamper("audit_accessevent", "DELETE FROM audit_accessevent WHERE id = %s", [sealed[1].pk])
    assert f"first: deleted: audit.accessevent id {sealed[1].pk} (chain position 2)" in failure()


def test_an_inserted_row_is_named(sealed: list[AccessEvent]) -> None:
    backdated = sealed[0].pk - 1
    tamper(
        "audit_accessevent",
        "INSERT INTO audit_accessevent (id, created_at, object_type, object_id, action, allowed) "
        "VALUES (%s, now() - interval '1 day', 'inbox.conversation', 9, 'view', true)",
        [backdated],
    )
    assert f"first: inserted: audit.accessevent id {backdated} is not in the chain" in failure()


def test_a_deleted_row_and_link_is_found(sealed: list[AccessEvent]) -> None:
    middle = sealed[1].pk
    tamper("audit_accessevent", "DELETE FROM audit_accessevent WHERE id = %s", [middle])
    tamper("audit_chainlink", "DELETE FROM audit_chainlink WHERE source = 'audit.accessevent' AND seq = 2")
    assert "first: deleted: audit.accessevent chain positions 2 to 2 are missing" in failure()


def test_a_rewritten_chain_fails_against_the_signed_checkpoint(sealed: list[AccessEvent]) -> None:
    # The attacker edits a row and recomputes every link after it: the chain is consistent
    # in itself, but no longer ends in the signed head.
    tamper("audit_accessevent", "UPDATE audit_accessevent SET allowed = false WHERE id = %s", [sealed[1].pk])
    links = list(ChainLink.objects.filter(source="audit.accessevent").order_by("seq"))
    rows = {row["id"]: row for row in AccessEvent.objects.values()}
    previous = bytes(links[0].chain_hash)
    for link in links[1:]:
        previous = link_hash(previous, "audit.accessevent", rows[link.row_id])
        tamper(
            "audit_chainlink", "UPDATE audit_chainlink SET chain_hash = %s WHERE id = %s", [previous, link.pk]
        )
    message = failure()
    assert "first: rewritten: audit.accessevent chain differs from the checkpoint" in message
    assert "after position 0 and at or before position 3" in message


def test_deleting_the_newest_rows_and_links_fails_against_the_checkpoint(sealed: list[AccessEvent]) -> None:
    last = sealed[-1].pk
    tamper("audit_accessevent", "DELETE FROM audit_accessevent WHERE id = %s", [last])
    tamper("audit_chainlink", "DELETE FROM audit_chainlink WHERE source = 'audit.accessevent' AND seq = 3")
    assert "the checkpoint signed at" in failure() and "counted 3" in failure()


@pytest.mark.parametrize("model", [SecurityEvent, AccessEvent, RuleDecision, LogEntry, ChainLink])
def test_the_orm_cannot_update_or_delete_audit_rows(sealed: list[AccessEvent], model: Any) -> None:
    rows = model._default_manager.all()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        rows.update(id=F("id"))  # changes nothing, and still is refused
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        rows.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        rows.first().delete()
    assert rows.exists()


def test_a_checkpoint_signed_with_another_key_is_refused(sealed: list[AccessEvent], settings: Any) -> None:
    settings.AUDIT_SIGNING_KEY = new_key()
    message = failure()
    assert "first: checkpoint line 1 of" in message and "does not verify with the configured key" in message


def test_an_altered_checkpoint_is_refused(sealed: list[AccessEvent], chain_settings: Path) -> None:
    record = json.loads(chain_settings.read_text())
    record["chains"]["audit.accessevent"]["count"] = 2
    chain_settings.write_text(json.dumps(record) + "\n")
    assert "checkpoint line 1" in failure()


def test_the_checkpoint_verifies_with_the_public_key_alone(
    sealed: list[AccessEvent], chain_settings: Path, settings: Any
) -> None:
    public = keys.signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    record = json.loads(chain_settings.read_text())
    signature = base64.b64decode(record.pop("signature"))
    Ed25519PublicKey.from_public_bytes(public).verify(signature, canonical_json(record))
    # And the command, on a machine that holds no private key.
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_VERIFY_KEY = base64.b64encode(public).decode()
    assert "audit trail verified" in verify()


def test_the_sealer_waits_on_a_young_gap(make_user: Callable[..., User], settings: Any) -> None:
    user = make_user()
    first = AccessEvent.objects.create(
        object_type="t", object_id=1, action="view", allowed=True, user_id=user.pk
    )
    chain_seal()
    with transaction.atomic():
        AccessEvent.objects.create(object_type="t", object_id=2, action="view", allowed=True)
        transaction.set_rollback(True)  # its id stays unused: a gap
    AccessEvent.objects.create(object_type="t", object_id=3, action="view", allowed=True)
    settings.AUDIT_SEAL_GRACE_SECONDS = 60
    chain_seal()
    assert list(ChainLink.objects.filter(source="audit.accessevent").values_list("row_id", flat=True)) == [
        first.pk
    ]
    settings.AUDIT_SEAL_GRACE_SECONDS = 0
    chain_seal()
    assert ChainLink.objects.filter(source="audit.accessevent").count() == 2


def test_canonical_form_is_sorted_json_with_utc_timestamps() -> None:
    from datetime import datetime, timedelta, timezone

    when = datetime(2026, 1, 2, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert canonical_json({"b": when, "a": {"y": 1, "x": "é"}}) == (
        '{"a":{"x":"é","y":1},"b":"2026-01-02T02:05:06+00:00"}'.encode()
    )


def test_debug_generates_a_private_key_file_once(settings: Any, tmp_path: Path) -> None:
    settings.DEBUG = True
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "var" / "audit-signing.key"
    first = keys.key_id(keys.signing_key().public_key())
    assert keys.key_id(keys.signing_key().public_key()) == first
    assert stat.S_IMODE(os.stat(settings.AUDIT_SIGNING_KEY_FILE).st_mode) == 0o600


def test_production_needs_a_configured_key(settings: Any) -> None:
    settings.DEBUG = False
    settings.AUDIT_SIGNING_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="AUDIT_SIGNING_KEY"):
        checkpoint_write()


@pytest.mark.django_db(transaction=True)
def test_flushing_the_tables_between_tests_still_works(make_user: Callable[..., User]) -> None:
    # Transactional tests empty the tables with TRUNCATE, which the row triggers let by;
    # were that refused, this test's teardown would fail.
    write_trail(make_user())
    checkpoint_write()
    assert "audit trail verified" in verify()
