"""The Delta lakehouse's history reads: featurizing one day's batch, and loading the scoring
API's history, with 60, 730 and 1,825 days of daily batches already in the raw table.

Both read only the look-back window (the raw table's files whose ``claim_date`` statistics
reach it), so their cost should not grow with the lakehouse's age: the goal is the slowest
within 1.5x of the fastest. The history is laid out as daily ingestion leaves it, one file per
daily batch in its ``batch_id`` partition; it is written in one commit per size (a year of
daily commits would only slow the setup down), and the measured batch is then ingested with
the lakehouse's own writer, ``featurize_batch`` reading it like any other day.

``python -m bench.lakehouse [--quick]`` (--quick: 500 claims a day instead of 2,000).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from bench.common import figure, timed
from fraud_core import delta, layout
from fraud_core.claim_versions import as_raw
from fraud_core.lakehouse import Lakehouse, _from_pandas
from fraud_core.layout import BATCH_COLUMN, RAW
from fraud_core.pipeline import featurize_batch, window_history
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims

HISTORY_DAYS = (60, 730, 1_825)


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


def _lakehouse(root: str, n_days: int, per_day: int) -> tuple[Lakehouse, str]:
    """A lakehouse with ``n_days`` daily batches of history, and the next day's batch."""
    lh = Lakehouse(root)
    history = _days(n_days, per_day, seed=n_days)
    table = _from_pandas(history.drop(columns=BATCH_COLUMN))
    table = table.append_column(BATCH_COLUMN, pa.array(history[BATCH_COLUMN], pa.string()))
    # as the lakehouse's writer converts a batch (uint64 hash as int64, microseconds)
    spec, url = layout.table(RAW), lh.table_url(RAW)
    schema, _ = delta.target_schema(spec, url, None, table.schema, "the history")
    batches = [delta.conform(b, schema, spec, url, "the history") for b in table.to_batches()]
    write_deltalake(
        url,
        pa.Table.from_batches(batches, schema),
        mode="overwrite",
        partition_by=[BATCH_COLUMN],
        storage_options=lh.delta_options,
    )
    config = SimulationConfig(
        n_claims=per_day, days=1, start_date="2029-12-31", seed=1, id_prefix="TODAY"
    )
    today = as_raw(coerce_claims(simulate_claims(config).drop(columns="scenario")).frame)
    lh.write_batch(RAW, "today", today)
    return lh, "today"


def run(quick: bool) -> list[dict[str, Any]]:
    per_day = 500 if quick else 2_000
    runs = 3 if quick else 5
    featurize: dict[int, list[float]] = {}
    api: dict[int, list[float]] = {}
    rows: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lakehouse-") as tmp:
        for n_days in HISTORY_DAYS:
            started = time.perf_counter()
            lh, batch = _lakehouse(os.path.join(tmp, f"lake-{n_days}"), n_days, per_day)
            setup = time.perf_counter() - started
            featurize[n_days], _ = timed(
                lambda lh=lh, batch=batch: featurize_batch(lh, batch), runs=runs, warmup=1
            )
            api[n_days], _ = timed(lambda lh=lh: window_history(lh), runs=runs, warmup=1)
            rows[n_days] = len(window_history(lh))
            print(  # noqa: T201
                f"{n_days} days: setup {setup:.1f} s, featurize "
                f"{np.median(featurize[n_days]) * 1e3:.0f} ms, API history "
                f"{np.median(api[n_days]) * 1e3:.0f} ms ({rows[n_days]:,} rows)",
                file=sys.stderr,
            )
    figures = []
    for n_days in HISTORY_DAYS:
        figures.append(
            figure(
                f"featurize_one_day_{n_days}d_history",
                [s * 1e3 for s in featurize[n_days]],
                "ms",
                notes=f"{per_day:,} claims, {n_days} daily batches of {per_day:,} before it",
                warmup=1,
            )
        )
    for n_days in HISTORY_DAYS:
        figures.append(
            figure(
                f"api_history_load_{n_days}d_history",
                [s * 1e3 for s in api[n_days]],
                "ms",
                notes=f"the scoring API's look-back window: {rows[n_days]:,} claims held",
                warmup=1,
            )
        )
    fastest = min(float(np.median(featurize[d])) for d in HISTORY_DAYS)
    figures.append(
        figure(
            "featurize_slowest_over_fastest",
            [max(featurize[d][i] for d in HISTORY_DAYS) / fastest for i in range(runs)],
            "x",
            goal="<= 1.5",
            anchor="before (Parquet, all history read): 0.75 s at 60 days, 6.8 s at 730",
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
            notes="the API's history load: slowest history size over the fastest (60 days "
            "hold less than the window; 730 and 1,825 hold it whole)",
        )
    )
    return figures


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))  # noqa: T201
