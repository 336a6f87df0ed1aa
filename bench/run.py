"""One command for every benchmark: ``python -m bench.run [--quick] [--only a,b]``.

Writes ``bench/results/latest.json`` (``quick.json`` with --quick): one entry per figure with
median, min, max, runs and the environment, and ``bench/RESULTS.md`` (``RESULTS-quick.md``):
a table with each figure beside its anchor and goal. A slot whose module does not exist yet is
reported as "not yet measured"; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from tqdm.auto import tqdm

from bench.common import ROOT, failed, not_measured

# (slot, module, what it measures). Issues add their module; the slot is there before it.
SLOTS: tuple[tuple[str, str, str], ...] = (
    ("pipeline", "bench.pipeline", "overhead, scaling, peak memory"),
    ("model_quality", "bench.model_quality", "champion vs tuned LightGBM and Bayes, two seeds"),
    ("features", "bench.features", "claim_features vs a plain DuckDB implementation"),
    ("training", "bench.training", "search speed-up, training throughput in the flow"),
    ("gx_suite", "bench.gx", "claims suite and drift check over 1M claims"),
    ("landing", "bench.landing", "sensor tick, ingest throughput, large-file memory"),
    ("replicate", "bench.replicate", "metrics replication to the warehouse"),
    ("serve", "bench.serve", "scoring API under load"),
    ("lakehouse", "bench.lakehouse", "history reads at 60/730/1,825 days of daily batches"),
)


def environment() -> dict[str, Any]:
    def pkg(name: str) -> str:
        try:
            return version(name)
        except Exception:
            return "not installed"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # "-dirty": measured with uncommitted changes on top of that commit
        "commit": (commit or "unknown") + ("-dirty" if dirty else ""),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": {
            name: pkg(name) for name in ("torch", "dagster", "metaflow", "duckdb", "pandas")
        },
    }


def run_slots(
    quick: bool,
    only: set[str] | None,
    registry: tuple[tuple[str, str, str], ...] = SLOTS,
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    slots = [s for s in registry if only is None or s[0] in only]
    for slot, module_name, what in tqdm(slots, desc="benchmarks", unit="slot"):
        started = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            entries.append({"slot": slot, **not_measured(slot, f"{what}: no {module_name} yet")})
            continue
        try:
            figures = module.run(quick)
        except Exception as exc:  # one broken slot must not lose the others' figures
            tqdm.write(f"{slot}: FAILED after {time.perf_counter() - started:.0f} s: {exc!r}")
            entries.append({"slot": slot, **failed(slot, exc)})
            continue
        for fig in figures:
            entries.append({"slot": slot, **fig})
        tqdm.write(f"{slot}: done in {time.perf_counter() - started:.0f} s")
    return entries


def _fmt(value: Any, unit: str, status: str = "") -> str:
    if value is None:
        return status or "not yet measured"
    if isinstance(value, float):
        text = f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Benchmark results ({'quick' if report['quick'] else 'full'})",
        "",
        f"Commit {env['commit']}, {env['date']}, {env['cpus']} CPUs, Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
        + ".",
        "Values are medians of the measured runs (warm-up runs excluded; `runs` in the JSON);"
        " ratios are measured side by side in the same run. Regenerate: "
        + ("`make bench-quick`." if report["quick"] else "`make bench`."),
        "",
        "| slot | figure | value | goal | met | anchor | runs | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["figures"]:
        met = {True: "yes", False: "**no**", None: ""}[e.get("goal_met")]
        runs = len(e.get("runs", [])) or ""
        notes = str(e.get("notes", "")).replace("|", "/")
        value = _fmt(e.get("value"), e.get("unit", ""), e.get("status", ""))
        lines.append(
            f"| {e['slot']} | {e['name']} | {value} | "
            f"{e.get('goal') or ''} | {met} | {e.get('anchor') or ''} | {runs} | {notes} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated slots")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"), help="output folder")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the other slots' figures of the last report (each keeps its own date/commit);"
        " a figure measured now replaces the old one of its name, whichever slot made it",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("USERNAME", "fraud-bench")
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    env = environment()
    figures = [
        {**f, "measured_at": env["date"], "commit": env["commit"]}
        for f in run_slots(args.quick, only)
    ]
    results = os.path.join(args.out, "results")
    os.makedirs(results, exist_ok=True)
    name = "quick" if args.quick else "latest"
    previous = os.path.join(results, f"{name}.json")
    if args.append and os.path.exists(previous):
        with open(previous) as fh:
            measured = {f["name"] for f in figures}
            kept = [
                f
                for f in json.load(fh)["figures"]
                if f["slot"] not in (only or set()) and f["name"] not in measured
            ]
        figures = kept + figures
    report = {"quick": args.quick, "environment": env, "figures": figures}
    with open(os.path.join(results, f"{name}.json"), "w") as fh:
        json.dump(report, fh, indent=2, default=str)
    table = markdown(report)
    with open(
        os.path.join(args.out, "RESULTS-quick.md" if args.quick else "RESULTS.md"), "w"
    ) as fh:
        fh.write(table)
    print(table)
    broken = sorted({f["slot"] for f in figures if f.get("status") == "failed"})
    if broken:
        print(f"failed slots: {', '.join(broken)} (their errors are in the table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
