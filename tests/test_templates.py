"""Checks on the templates themselves, as text."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def test_no_template_comment_runs_over_a_line() -> None:
    """Django's `{# … #}` ends at its line: one that runs on is not a comment but text shown
    to people (a list pane once showed a note about locales above its rows)."""
    open_ended = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in TEMPLATES.rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.count("{#") > line.count("#}")
    ]
    assert not open_ended, f"use {{% comment %}} for comments over several lines: {open_ended}"
