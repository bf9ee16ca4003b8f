"""Server processes tune Python's garbage collector once loaded (config.process): what they
loaded is frozen; a process serving sockets runs young passes less often, a pages-only
process and a Celery worker keep Python's thresholds. Each checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config.process import SOCKET_SERVER_THRESHOLDS

# Python's own (this test process has imported config.asgi: its are tuned).
PYTHON_THRESHOLDS = (700, 10, 10)
REPORT = "import gc, json; print(json.dumps([gc.get_freeze_count(), gc.get_threshold()]))"


def _collector_after(code: str, **env: str) -> tuple[int, tuple[int, ...]]:
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{REPORT}"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    frozen, thresholds = json.loads(result.stdout.strip().splitlines()[-1])
    return frozen, tuple(thresholds)


@pytest.mark.parametrize(
    ("serves", "thresholds"),
    [("sockets", SOCKET_SERVER_THRESHOLDS), ("all", SOCKET_SERVER_THRESHOLDS), ("http", PYTHON_THRESHOLDS)],
)
def test_an_asgi_process_freezes_what_it_loaded(serves: str, thresholds: tuple[int, ...]) -> None:
    frozen, tuned = _collector_after("import config.asgi", ASGI_SERVES=serves)
    assert frozen > 10_000  # Django, the apps and their URL maps
    assert tuned == thresholds


def test_a_celery_worker_freezes_its_tasks_and_keeps_the_thresholds() -> None:
    before = "import django; django.setup()\nfrom config.celery import app\nfrom celery import signals\n"
    frozen, tuned = _collector_after(f"{before}signals.worker_process_init.send(sender=None)")
    assert frozen > 10_000 and tuned == PYTHON_THRESHOLDS
    # Not yet loaded, not yet frozen: the tuning waits for the worker's signal.
    assert _collector_after(before)[0] == 0
