"""How every benchmark reports: one JSON line with its figures, its floor, its ratio to the
floor and the machine's load while it ran, or a failure (exit status 1) when a baseline or
a floor could not be measured. A ratio over a timed-out or failed baseline is no figure."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn


def machine() -> dict[str, Any]:
    """The load average (1, 5, 15 min) and cores: the machine may be shared, and a figure
    measured under load is only comparable with that load beside it."""
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def fail(benchmark: str, reason: str, /, **figures: Any) -> NoReturn:
    print(json.dumps({"benchmark": benchmark, "error": reason, **figures, "machine": machine()}))
    sys.exit(1)


def emit(figures: dict[str, Any], *, floor: Any, ratio: Any) -> None:
    """Print the result. The floor and the ratio are required: a benchmark without them
    says how fast, not how good."""
    benchmark = str(figures.get("benchmark", "?"))
    if floor in (None, {}) or ratio in (None, {}):
        fail(benchmark, "no floor or no ratio was measured", **figures)
    missing = _none_inside(ratio)
    if missing:
        fail(benchmark, f"ratio not computable for: {', '.join(missing)}", **figures, ratio=ratio)
    print(json.dumps({**figures, "floor": floor, "ratio": ratio, "machine": machine()}))


def _none_inside(value: Any, path: str = "ratio") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [found for key, inner in value.items() for found in _none_inside(inner, f"{path}.{key}")]
    return []
