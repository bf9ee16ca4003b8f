"""Takes the README's screenshots from a running demo (`make run`) with headless Chromium.

Usage: `.venv/bin/python docs/screenshots.py [http://127.0.0.1:8000]`. Signs in through the
real two-step form with the demo credentials that `make run` wrote to
var/demo-credentials.txt, and writes PNGs to docs/img/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyotp
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def credentials(username: str) -> tuple[str, str]:
    text = (ROOT / "var" / "demo-credentials.txt").read_text()
    match = re.search(rf"^{username}  password: (\S+)  TOTP key: (\S+)", text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"No demo credentials for {username}: run `make run` first.")
    return match.group(1), match.group(2)


def sign_in(page: Page, base: str, username: str) -> None:
    password, key = credentials(username)
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.fill("input[name=token]", pyotp.TOTP(key).now())
    page.click("form button.primary")
    page.wait_for_url(re.compile(r".*/(\?.*)?$"))


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        agent = browser.new_page(viewport={"width": 1366, "height": 800})
        sign_in(agent, base, "alice")
        agent.screenshot(path=out / "agent-inbox.png")
        agent.click("a[href^='/conversations/']")
        agent.wait_for_load_state("networkidle")
        agent.screenshot(path=out / "agent-conversation.png")
        supervisor = browser.new_page(viewport={"width": 1366, "height": 800})
        sign_in(supervisor, base, "supervisor")
        supervisor.goto(f"{base}/admin/")
        supervisor.screenshot(path=out / "admin.png")
        supervisor.goto(f"{base}/admin/inbox/inbox/")
        supervisor.click("a[href*='/admin/inbox/inbox/'][href$='/change/'] >> nth=0")
        supervisor.screenshot(path=out / "admin-inbox-grants.png", full_page=True)
        browser.close()
    print(f"Screenshots written to {out}")  # noqa: T201


if __name__ == "__main__":
    main()
