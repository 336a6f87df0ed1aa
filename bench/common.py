"""Shared pieces of the benchmarks: timing, figures with goals, child processes with peak RSS.

A figure is a plain dict, so every benchmark module returns JSON-ready data::

    {"name", "value", "unit", "median", "min", "max", "runs", "warmup", "goal", "goal_met",
     "anchor", "notes"}

``value`` is the median of ``runs`` (the measured repetitions; warm-up runs are excluded and
counted in ``warmup``). ``goal`` reads like ``"<= 1.2"``; ``goal_met`` is computed from it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def figure(
    name: str,
    runs: list[float],
    unit: str,
    goal: str | None = None,
    anchor: str | None = None,
    notes: str = "",
    warmup: int = 0,
) -> dict[str, Any]:
    """A figure from measured repetitions (the value is their median)."""
    if not runs:
        raise ValueError(f"figure {name!r} has no measured runs")
    value = statistics.median(runs)
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "median": value,
        "min": min(runs),
        "max": max(runs),
        "runs": list(runs),
        "warmup": warmup,
        "goal": goal,
        "goal_met": goal_met(value, goal),
        "anchor": anchor,
        "notes": notes,
    }


def goal_met(value: float, goal: str | None) -> bool | None:
    """``"<= 1.2"`` / ``">= 0.9"`` / ``"< x"`` / ``"> x"`` against ``value``; None without one."""
    if not goal:
        return None
    op, _, number = goal.partition(" ")
    target = float(number.split()[0])
    return {
        "<=": value <= target,
        ">=": value >= target,
        "<": value < target,
        ">": value > target,
    }[op]


def timed(fn: Callable[[], Any], runs: int, warmup: int = 1) -> tuple[list[float], Any]:
    """Wall seconds of ``runs`` calls after ``warmup`` unmeasured ones; and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def run_child(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module args`` and return its JSON output (last stdout line) with
    ``wall_seconds`` and ``peak_rss_mb``: the largest resident set of the child or of any
    process it waited for (Metaflow's step processes included)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    # communicate() reaped the child; its rusage is folded into RUSAGE_CHILDREN, so read the
    # peak from the child itself instead (it reports its own and its children's peaks).
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{err[-3000:]}")
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} printed no JSON result:\n{out[-2000:]}\n{err[-2000:]}")
    result = json.loads(lines[-1])
    result["wall_seconds"] = wall
    return result


def peak_rss_mb() -> float:
    """Peak resident set of this process and of its waited-for children, in MB.

    This process's own peak is read from ``VmHWM`` (the high-water mark of its memory since
    exec): ``ru_maxrss`` of a process started by fork + exec also holds the resident set of
    the parent it was forked from, so a benchmark child of a large parent reported the
    parent's size (5.9 GB for a 1.6 GB ingest). Its children were forked from it, so theirs
    is at most its own at fork time plus what they used.
    """
    import resource

    own_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as fh:
            own_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        pass  # not Linux: ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own_kb, children_kb) / 1024.0


def not_measured(slot: str, reason: str) -> dict[str, Any]:
    return {"name": slot, "value": None, "unit": "", "status": "not yet measured", "notes": reason}


def failed(slot: str, error: BaseException) -> dict[str, Any]:
    """A slot whose benchmark raised: recorded with the error, never with a number."""
    lines = [line.strip() for line in f"{type(error).__name__}: {error}".splitlines()]
    lines = [line for line in lines if line]
    # The first line says what ran; a child's traceback ends with why it failed.
    message = lines[0][:200] + (f" ... {lines[-1][:300]}" if len(lines) > 1 else "")
    return {"name": slot, "value": None, "unit": "", "status": "failed", "notes": message}
