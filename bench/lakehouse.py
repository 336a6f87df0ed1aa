"""The Delta lakehouse's history reads: featurizing one day's batch, and loading the scoring
API's history, with 60, 730 and 1,825 days of daily batches already in the lakehouse.

Both read only the look-back window, so their cost should not grow with the lakehouse's age:
the goal is the slowest within 1.5x of the fastest (time, and the API's memory). The lakehouse
is laid out as a deployment leaves it, with the weekly ``lakehouse_maintenance`` job running:

* the raw and feature tables hold a partition (a file) per daily batch, every day but the last
  :data:`SINCE_MAINTENANCE` written in one commit each (a year of daily commits would only slow
  the setup down: the log is checkpointed by then anyway);
* then the real maintenance runs (``Lakehouse.maintain()``, what the job calls: the claims
  history folded from raw and its look-back window written as the window snapshot, OPTIMIZE,
  VACUUM, a checkpoint);
* then the last :data:`SINCE_MAINTENANCE` days land as the pipeline writes them (a raw commit
  and ``featurize_batch`` each), as they would in the week before the next maintenance (the
  worst case: its history reads take those days from raw);
* then the measured day's raw batch.

Each measured call opens the lakehouse afresh (a new ``Lakehouse``: a Dagster run or the API
process starting), so every table's log is read as it would be. The API's history load is the
window read (``window_history``); ``api_history_index`` adds indexing it (``HistoryIndex``), the
rest of what the scoring API does with its history at start (no goal: it is work per claim
held). The API's memory is the peak resident set of a fresh process that loads the window and
indexes it.

``api_start`` is the scoring API itself starting: each lakehouse gets the same small champion
(trained once on 20,000 other claims, as ``bench/serve.py`` trains one), and uvicorn is
launched on it until ``/readyz`` answers 200 (its imports, the bundle, the window read and
indexed, the check of the model on the example claim; polled every 0.2 s). Its peak resident
set then is read from ``/proc`` (``VmHWM``). Goal: the slowest within 1.5x of the fastest, and
the memory the same.

``python -m bench.lakehouse [--quick]`` (--quick: 500 claims a day instead of 2,000).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from bench.common import figure, peak_rss_mb, run_child, timed
from fraud_core import delta, layout
from fraud_core.claim_versions import as_raw
from fraud_core.features import build_features
from fraud_core.lakehouse import Lakehouse, _from_pandas
from fraud_core.layout import BATCH_COLUMN, FEATURES, RAW
from fraud_core.online.history import HistoryIndex
from fraud_core.pipeline import featurize_batch, window_history
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims

HISTORY_DAYS = (60, 730, 1_825)
# Days landed since the last weekly maintenance (the most a weekly schedule leaves).
SINCE_MAINTENANCE = 6


def _days(n_days: int, per_day: int, seed: int) -> pd.DataFrame:
    """``n_days`` of claims ending 2029-12-30, ``per_day`` a day, as raw rows with a batch id
    per claim day (one simulated year at a time: the simulator spans 365 days)."""
    frames = []
    end = pd.Timestamp("2029-12-30")
    start = end - pd.Timedelta(days=n_days - 1)
    day = start
    part = 0
    while day <= end:
        span = min(365, (end - day).days + 1)
        config = SimulationConfig(
            n_claims=span * per_day,
            days=span,
            start_date=day.strftime("%Y-%m-%d"),
            seed=seed + part,
            id_prefix=f"H{seed}-{part}",
        )
        claims = simulate_claims(config).drop(columns="scenario")
        frames.append(as_raw(coerce_claims(claims).frame))
        day += pd.Timedelta(days=span)
        part += 1
    raw = pd.concat(frames, ignore_index=True)
    raw[BATCH_COLUMN] = "d" + raw["claim_date"].dt.strftime("%Y%m%d")
    return raw


def _append_days(lh: Lakehouse, dataset: str, frame: pd.DataFrame) -> None:
    """Add daily batches (``frame``'s ``batch_id``) to a table the lakehouse created, in one
    commit, converted as the lakehouse's writer converts a batch."""
    table = _from_pandas(frame.drop(columns=BATCH_COLUMN))
    table = table.append_column(BATCH_COLUMN, pa.array(frame[BATCH_COLUMN], pa.string()))
    spec, url = layout.table(dataset), lh.table_url(dataset)
    current = lh.delta_table(dataset)
    declared = None if current is None else pa.schema(current.schema().to_arrow())
    schema, _ = delta.target_schema(spec, url, declared, table.schema, "the history")
    batches = [delta.conform(b, schema, spec, url, "the history") for b in table.to_batches()]
    write_deltalake(
        url, pa.Table.from_batches(batches, schema), mode="append", storage_options=lh.delta_options
    )


def _lakehouse(root: str, n_days: int, per_day: int) -> tuple[Lakehouse, str, float]:
    """A lakehouse with ``n_days`` daily batches of history laid out as the module's doc says,
    the next day's raw batch, and the seconds the maintenance took."""
    lh = Lakehouse(root)
    history = _days(n_days, per_day, seed=n_days)
    days = sorted(history[BATCH_COLUMN].unique())
    older, recent = days[:-SINCE_MAINTENANCE], days[-SINCE_MAINTENANCE:]
    old = history[history[BATCH_COLUMN].isin(older)].reset_index(drop=True)
    features = build_features(old.drop(columns=BATCH_COLUMN))
    if not (features["claim_id"].to_numpy() == old["claim_id"].to_numpy()).all():
        raise AssertionError("build_features changed the claims' order")
    features[BATCH_COLUMN] = old[BATCH_COLUMN].to_numpy()
    for dataset, frame in ((RAW, old), (FEATURES, features)):
        first = frame[BATCH_COLUMN] == older[0]  # the lakehouse's writer creates the table
        lh.write_batch(dataset, older[0], frame[first].drop(columns=BATCH_COLUMN))
        _append_days(lh, dataset, frame[~first])
    started = time.perf_counter()
    lh.maintain()  # what the weekly lakehouse_maintenance job runs
    maintained = time.perf_counter() - started
    for day in recent:
        rows = history[history[BATCH_COLUMN] == day].drop(columns=BATCH_COLUMN)
        lh.write_batch(RAW, day, rows)
        featurize_batch(lh, day)
    config = SimulationConfig(
        n_claims=per_day, days=1, start_date="2029-12-31", seed=1, id_prefix="TODAY"
    )
    today = as_raw(coerce_claims(simulate_claims(config).drop(columns="scenario")).frame)
    lh.write_batch(RAW, "today", today)
    return lh, "today", maintained


def api_memory(root: str) -> dict[str, Any]:
    """In a fresh process: the API's history load (the window, indexed) and its peak memory."""
    before = peak_rss_mb()
    index = HistoryIndex.build(window_history(Lakehouse(root)))
    return {"rows": len(index.frame), "peak_rss_mb": peak_rss_mb(), "imports_rss_mb": before}


def _serve_champion(roots: Sequence[str], tmp: str) -> None:
    """Train a small champion once and make it each lakehouse's champion (the API loads it)."""
    from pathlib import Path

    from bench.serve import build_lakehouse
    from fraud_core.model.bundle import ModelBundle

    model_root = os.path.join(tmp, "model")
    build_lakehouse(Path(model_root), 20_000)
    champion = Lakehouse(model_root).read_json("models/champion.json")
    bundle = ModelBundle.load(Lakehouse(model_root), str(champion["version"]))
    for root in roots:
        lh = Lakehouse(root)
        bundle.save(lh)
        lh.set_champion({"version": bundle.version})


def _children() -> set[int]:
    """The PIDs of this process's children (Linux: ``/proc/self/task/*/children``)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            pids.update(int(p) for p in fh.read().split())
    return pids


def _peak_mb(pid: int) -> float:
    """A running process's peak resident set (``VmHWM``), in MB."""
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024.0


def api_start(root: str, log_path: str) -> tuple[float, float]:
    """Launch the scoring API on ``root``: seconds until ``/readyz`` answers 200, and the
    server process's peak resident set then (MB, its ``VmHWM``: the history's index is built
    and checked by then)."""
    from pathlib import Path

    from bench.serve import API_KEY
    from fraud_cli.servers import scoring_api

    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    env.update(LAKEHOUSE_URI=root, FRAUD_API_KEYS=API_KEY, FRAUD_API_POLL_SECONDS="0")
    before = _children()
    started = time.perf_counter()
    with scoring_api(env, Path(log_path)):
        seconds = time.perf_counter() - started
        (server,) = _children() - before
        peak = _peak_mb(server)
    return seconds, peak


def run(quick: bool) -> list[dict[str, Any]]:
    per_day = 500 if quick else 2_000
    runs = 3 if quick else 5
    featurize: dict[int, list[float]] = {}
    api: dict[int, list[float]] = {}
    indexed: dict[int, list[float]] = {}
    cpu: dict[int, dict[str, list[float]]] = {}  # CPU seconds of the process, all its threads
    memory: dict[int, dict[str, Any]] = {}
    started_api: dict[int, list[float]] = {}  # the scoring API launched until ready (s)
    api_rss: dict[int, list[float]] = {}  # its resident memory then (MB)
    maintained: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lakehouse-") as tmp:
        roots: dict[int, str] = {}
        for n_days in HISTORY_DAYS:
            started = time.perf_counter()
            roots[n_days] = os.path.join(tmp, f"lake-{n_days}")
            _, batch, maintained[n_days] = _lakehouse(roots[n_days], n_days, per_day)
            print(  # noqa: T201
                f"{n_days} days: set up in {time.perf_counter() - started:.1f} s "
                f"(maintenance {maintained[n_days]:.1f} s)",
                file=sys.stderr,
            )
        _serve_champion(list(roots.values()), tmp)
        # Rounds over the three sizes back to back (this machine's speed drifts over minutes:
        # a size measured alone, minutes after another, would compare two machines).
        for n_days in HISTORY_DAYS:
            featurize[n_days], api[n_days], indexed[n_days] = [], [], []
            started_api[n_days], api_rss[n_days] = [], []
            cpu[n_days] = {"featurize": [], "api": []}
        for round_ in range(runs + 1):  # the first round warms up, unmeasured
            for n_days, root in roots.items():
                calls = {
                    "featurize": (
                        lambda root=root, batch=batch: featurize_batch(Lakehouse(root), batch)
                    ),
                    "api": lambda root=root: window_history(Lakehouse(root)),
                }
                for what, call in calls.items():
                    wall, used = time.perf_counter(), time.process_time()
                    call()
                    if round_:
                        (featurize if what == "featurize" else api)[n_days].append(
                            time.perf_counter() - wall
                        )
                        cpu[n_days][what].append(time.process_time() - used)
                if 0 < round_ <= 3:
                    built, _ = timed(
                        lambda root=root: HistoryIndex.build(window_history(Lakehouse(root))), 1, 0
                    )
                    indexed[n_days] += built
                    seconds, resident = api_start(root, os.path.join(tmp, f"api-{n_days}.log"))
                    started_api[n_days].append(seconds)
                    api_rss[n_days].append(resident)
        for n_days, root in roots.items():
            memory[n_days] = run_child("bench.lakehouse", ["api-memory", root])
            print(  # noqa: T201
                f"{n_days} days: featurize {np.median(featurize[n_days]) * 1e3:.0f} ms, API "
                f"history {np.median(api[n_days]) * 1e3:.0f} ms (indexed "
                f"{np.median(indexed[n_days]) * 1e3:.0f} ms), API start "
                f"{np.median(started_api[n_days]):.2f} s ({np.median(api_rss[n_days]):.0f} MB), "
                f"{memory[n_days]['peak_rss_mb']:.0f} MB ({memory[n_days]['rows']:,} rows)",
                file=sys.stderr,
            )
    laid_out = (
        f"the last {SINCE_MAINTENANCE} days landed after the weekly maintenance "
        "(Lakehouse.maintain: claims history folded, window snapshot, OPTIMIZE, VACUUM)"
    )
    # per history size: (figure, values in seconds or MB, unit, warm-up calls, notes)
    per_size: list[tuple[str, dict[int, list[float]], str, int, Callable[[int], str]]] = [
        (
            "featurize_one_day",
            featurize,
            "ms",
            1,
            lambda d: (
                f"{per_day:,} claims, {d} daily batches of {per_day:,} before it, "
                f"{laid_out}; a fresh Lakehouse per call (a run's); the sizes measured in rounds, "
                "back to back"
            ),
        ),
        (
            "api_history_load",
            api,
            "ms",
            1,
            lambda d: (
                f"the scoring API's look-back window: {memory[d]['rows']:,} claims held; "
                "a fresh Lakehouse per call"
            ),
        ),
        (
            "api_history_index",
            indexed,
            "ms",
            0,
            lambda d: (
                "the window read and indexed (HistoryIndex.build): the scoring API's "
                "start without its model"
            ),
        ),
        (
            "api_start",
            started_api,
            "ms",
            0,
            lambda d: (
                "the scoring API launched (uvicorn, the same small champion) until /readyz "
                "answers 200: imports, bundle, window read and indexed, the model's check"
            ),
        ),
        (
            "api_start_memory",
            api_rss,
            "MB",
            0,
            lambda d: "the scoring API process's peak resident set once ready (its VmHWM)",
        ),
        (
            "api_history_memory",
            {d: [memory[d]["peak_rss_mb"]] for d in HISTORY_DAYS},
            "MB",
            0,
            lambda d: (
                "peak resident set of a fresh process loading and indexing the window "
                f"({memory[d]['imports_rss_mb']:.0f} MB after its imports)"
            ),
        ),
    ]
    figures = [
        figure(
            f"{what}_{d}d_history",
            [v * 1e3 for v in values[d]] if unit == "ms" else values[d],
            unit,
            notes=notes(d),
            warmup=warmup,
        )
        for what, values, unit, warmup, notes in per_size
        for d in HISTORY_DAYS
    ]
    figures.append(
        figure(
            "maintenance_seconds",
            [maintained[d] for d in HISTORY_DAYS],
            "s",
            notes="Lakehouse.maintain() over the older days (the first fold of the claims "
            "history), at " + ", ".join(f"{d} days: {maintained[d]:.1f} s" for d in HISTORY_DAYS),
        )
    )
    fastest = min(float(np.median(featurize[d])) for d in HISTORY_DAYS)
    figures.append(
        figure(
            "featurize_slowest_over_fastest",
            [max(featurize[d][i] for d in HISTORY_DAYS) / fastest for i in range(runs)],
            "x",
            goal="<= 1.5",
            anchor="before (Parquet, all history read): 0.75 s at 60 days, 6.8 s at 730; "
            "claims history by month: 1.68x",
            notes="featurize one day: slowest history size over the fastest",
        )
    )
    api_fastest = min(float(np.median(api[d])) for d in HISTORY_DAYS)
    figures.append(
        figure(
            "api_history_slowest_over_fastest",
            [max(api[d][i] for d in HISTORY_DAYS) / api_fastest for i in range(runs)],
            "x",
            goal="<= 1.5",
            anchor="claims history by month: 5.37x",
            notes="the API's history load: slowest history size over the fastest (60 days "
            "hold less than the window; 730 and 1,825 hold it whole)",
        )
    )
    for what, label in (("featurize", "featurize one day"), ("api", "the API's history load")):
        medians = [float(np.median(cpu[d][what])) for d in HISTORY_DAYS]
        figures.append(
            figure(
                f"{what}_cpu_slowest_over_fastest",
                [max(medians) / min(medians)],
                "x",
                notes=f"{label} in CPU seconds of the process (all its threads), slowest "
                "history size over the fastest: the work, whatever else the machine runs "
                "(medians " + ", ".join(f"{m * 1e3:.0f}" for m in medians) + " ms)",
            )
        )
    start_fastest = min(float(np.median(started_api[d])) for d in HISTORY_DAYS)
    figures.append(
        figure(
            "api_start_slowest_over_fastest",
            [
                max(started_api[d][i] for d in HISTORY_DAYS) / start_fastest
                for i in range(len(started_api[HISTORY_DAYS[0]]))
            ],
            "x",
            goal="<= 1.5",
            notes="the scoring API's start (launch to ready): slowest history size over the "
            "fastest, per round",
        )
    )
    # The goal is on the API process (what a deployment sizes); the process that only reads
    # and indexes the window shows the history's own share of it.
    for name, peaks, goal, what in (
        (
            "api_start_memory_largest_over_smallest",
            [float(np.median(api_rss[d])) for d in HISTORY_DAYS],
            "<= 1.5",
            "the scoring API process's peak resident set once ready",
        ),
        (
            "api_memory_largest_over_smallest",
            [memory[d]["peak_rss_mb"] for d in HISTORY_DAYS],
            None,
            "the peak resident set of a process that only reads and indexes the window",
        ),
    ):
        figures.append(
            figure(
                name,
                [max(peaks) / min(peaks)],
                "x",
                goal=goal,
                notes=f"{what}: largest history size over the smallest ("
                + ", ".join(f"{m:.0f}" for m in peaks)
                + " MB)",
            )
        )
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["api-memory"]:
        print(json.dumps(api_memory(sys.argv[2])))  # noqa: T201
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))  # noqa: T201
