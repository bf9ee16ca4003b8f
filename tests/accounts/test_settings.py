"""Production settings: refuse to start insecurely, and pass Django's deploy check."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "HTTPS", "ALLOWED_HOSTS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_refuses_to_start_without_a_secret_key() -> None:
    result = manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_weak_secret_key() -> None:
    result = manage("check", DEBUG="0", SECRET_KEY="short")
    assert result.returncode != 0
    assert "at least 50 characters" in result.stderr


def test_deploy_check_is_clean_in_production() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="inbox.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_production_cookies_are_secure_and_host_prefixed() -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS > 0, s.X_FRAME_OPTIONS,"
        " s.CONTENT_SECURITY_POLICY['DIRECTIVES']['frame-ancestors'])"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="x.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "__Host-sessionid",
        "__Host-csrftoken",
        "True",
        "True",
        "True",
        "DENY",
        "[\"'none'\"]",
    ]


def test_json_logs_are_one_object_a_line_and_an_unknown_format_is_refused() -> None:
    log = "logging.getLogger('portcullis.probe').warning('stored %s', 'it', extra={'inbox': 3})"
    code = f"import logging; {log}"
    result = manage("shell", "-c", code, DEBUG="1", LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["level"] == "WARNING" and line["logger"] == "portcullis.probe"
    assert line["message"] == "stored it" and line["inbox"] == 3 and line["time"]

    refused = manage("check", DEBUG="1", LOG_FORMAT="xml")
    assert refused.returncode != 0 and "LOG_FORMAT must be plain or json" in refused.stderr
