"""The export page in a real browser: request an export, watch its progress bar fill as a
real Celery worker writes it, download the watermarked file once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, expect

from accounts import roles
from inbox.models import ChannelKind, Inbox
from tests.browser import ARTIFACTS, chromium, serve_app, sign_in
from tests.exports.conftest import EXPORT_PERMS
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]


@pytest.fixture
def exporter_device(transactional_db: Any, make_user: Any) -> TOTPDevice:
    for role in roles.ROLE_PERMISSIONS:
        Group.objects.get_or_create(name=role)
    inbox = Inbox.objects.create(name="Email support", channel_kind=ChannelKind.EMAIL)
    user = make_user(roles.AGENT, username="erin")
    grant_inbox(inbox, user, ("view_inbox", "reply_inbox", *EXPORT_PERMS))
    for number in range(40):
        make_conversation(inbox, text=f"My printer {number} stopped syncing.")
    return TOTPDevice.objects.get(user=user)


@pytest.fixture
def app_server(exporter_device: TOTPDevice, tmp_path: Path, export_settings: Path) -> Iterator[str]:
    # The web server and the worker (in this process) share the export directory.
    with serve_app(tmp_path, EXPORTS_ROOT=str(export_settings)) as base:
        yield base


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    with chromium(monkeypatch) as launched:
        yield launched


def test_export_progress_bar_and_one_time_download(
    exporter_device: TOTPDevice, app_server: str, browser: Browser, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    sign_in(page, app_server, "erin", exporter_device)
    page.get_by_role("link", name="Exports").click()
    page.get_by_label("What").select_option("messages")
    page.get_by_role("button", name="Export").click()

    bar = page.get_by_label("progress", exact=False).first
    expect(bar).to_be_visible()
    link = page.get_by_role("link", name="portcullis-export-")
    # Shown by exports.js once the worker is done (or rendered, if it was done first).
    expect(link).to_be_visible(timeout=30_000)
    assert bar.evaluate("bar => bar.value") == 100
    expect(page.get_by_text("40 / 40 rows")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "export-done.png"), full_page=True)

    with page.expect_download() as waiting:
        link.click()
    download = waiting.value
    assert (
        download.suggested_filename.startswith("portcullis-export-")
        and "-messages-erin-" in download.suggested_filename
    )
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0].startswith('"# Portcullis export ') and "by erin" in lines[0]
    assert len(lines) == 2 + 40

    # The link worked once: the page no longer offers it, and the URL answers 410.
    href = link.get_attribute("href")
    page.reload()
    expect(page.get_by_text("Downloaded")).to_be_visible()
    again = page.request.get(f"{app_server}{href}")
    assert again.status == 410
