"""Benchmarks that cannot lie: a missing floor or an uncomputable ratio fails the run (exit
status 1, an error line) instead of printing a figure."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks import report


def _last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_a_complete_result_prints_floor_ratio_and_machine_load(capsys: pytest.CaptureFixture[str]) -> None:
    report.emit({"benchmark": "x", "rate": 10}, floor={"rate": 20}, ratio={"rate": 0.5})
    line = _last_line(capsys)
    assert line["floor"] == {"rate": 20} and line["ratio"] == {"rate": 0.5}
    machine = line["machine"]
    assert isinstance(machine, dict) and len(machine["load_average"]) == 3


@pytest.mark.parametrize(
    ("floor", "ratio"),
    [
        (None, 1.0),
        ({}, 1.0),
        ({"rate": 20}, None),
        ({"rate": 20}, {"p99": None}),
        ({"rate": 1}, {"a": {"b": None}}),
    ],
)
def test_a_missing_floor_or_ratio_fails_the_benchmark(
    capsys: pytest.CaptureFixture[str], floor: object, ratio: object
) -> None:
    with pytest.raises(SystemExit) as exit_:
        report.emit({"benchmark": "x"}, floor=floor, ratio=ratio)
    assert exit_.value.code == 1
    assert "error" in _last_line(capsys)
