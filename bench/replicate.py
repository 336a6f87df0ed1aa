"""Warehouse benchmark: replicating model_metrics into DuckDB with the warehouse's own code.

Figures (100,000 metric rows; 10,000 with ``--quick``):
  replicate_duckdb_load       wall time of one replication into an empty table (all inserts)
  replicate_duckdb_rerun      wall time of replicating the same rows again (nothing changes)
  replicate_duckdb_update     wall time when 1% of the rows changed upstream (MERGE updates)
  replicate_duckdb_statements SQL statements sent per replication: constant in the row count

Times are the median of 3 runs after a warm-up. Statements are counted by the warehouse
(``ReplicationResult.statements``: every ``execute`` it sends).

    python bench/replicate.py [--quick]      prints the figures as JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as `python bench/replicate.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import figure  # noqa: E402
from fraud_core.warehouse import column_names  # noqa: E402

RUNS = 3


def synthetic_metrics(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` model_metrics rows with unique keys: 4 model versions x 25 batches x N days."""
    versions, batches = 4, 25
    days = -(-rows // (versions * batches))
    rng = np.random.default_rng(seed)
    v = np.repeat(np.arange(versions), batches * days)[:rows]
    b = np.tile(np.repeat(np.arange(batches), days), versions)[:rows]
    d = np.tile(np.arange(days), versions * batches)[:rows]
    claims = rng.integers(50, 500, rows)
    alerts = rng.binomial(claims, 0.05)
    labelled = rng.binomial(claims, 0.8)
    frauds = rng.binomial(labelled, 0.03)
    tp = np.minimum(frauds, rng.binomial(alerts, 0.4))
    labelled_alerts = np.minimum(alerts, labelled)
    start = dt.date(2020, 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = pd.DataFrame(
            {
                "model_version": np.char.add("fm-", v.astype(str)),
                "batch_id": np.char.add("batch-", b.astype(str)),
                "metric_date": [start + dt.timedelta(days=int(x)) for x in d],
                "claims_scored": claims,
                "alerts": alerts,
                "alert_rate": alerts / claims,
                "labelled_claims": labelled,
                "labelled_frauds": frauds,
                "labelled_alerts": labelled_alerts,
                "true_positives": tp,
                "fraud_rate": np.where(labelled > 0, frauds / labelled, np.nan),
                "alert_precision": np.where(labelled_alerts > 0, tp / labelled_alerts, np.nan),
                "recall_at_threshold": np.where(frauds > 0, tp / frauds, np.nan),
                "batch_average_precision": rng.uniform(0.2, 0.6, rows),
                "batch_precision_at_k": rng.uniform(0.2, 0.8, rows),
                "batch_max_feature_psi": rng.uniform(0, 0.3, rows),
                "batch_most_drifted_feature": "claimed_amount",
                "batch_score_psi": rng.uniform(0, 0.2, rows),
                "in_training_data": b < 20,
                "computed_at": pd.Timestamp("2026-01-01 06:00:00"),
            }
        )
    return frame[column_names()]


def _replicate(
    path: str, frame: pd.DataFrame, inserted: int = 0, updated: int = 0
) -> tuple[float, int]:
    """Seconds and statements of one replication into the DuckDB file at ``path``, after
    checking it inserted and updated the expected numbers of rows."""
    from fraud_assets.resources.warehouse import DuckDBWarehouse

    warehouse = DuckDBWarehouse(database=path)
    started = time.perf_counter()
    result = warehouse.replicate_metrics(frame)
    seconds = time.perf_counter() - started
    if (result.inserted, result.updated, result.table_rows) != (inserted, updated, len(frame)):
        raise RuntimeError(f"unexpected replication into {path}: {result}")
    return seconds, result.statements


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the figures; ``quick`` uses 10,000 rows instead of 100,000."""
    rows = 10_000 if quick else 100_000
    frame = synthetic_metrics(rows)
    changed = frame.copy()
    picked = changed.sample(frac=0.01, random_state=1).index
    changed.loc[picked, "alerts"] += 1
    with tempfile.TemporaryDirectory(prefix="bench-replicate-") as tmp:
        # load: a fresh file per run (connect, create table and views, stage, MERGE)
        load, statements = [], []
        for i in range(1 + RUNS):  # the first is the warm-up
            path = os.path.join(tmp, f"load-{i}.duckdb")
            seconds, sent = _replicate(path, frame, inserted=rows)
            if i:
                load.append(seconds)
                statements.append(float(sent))
        same = os.path.join(tmp, "load-0.duckdb")
        rerun = [_replicate(same, frame)[0] for _ in range(1 + RUNS)][1:]
        update = []
        for i in range(1 + RUNS):  # alternate the changed and original rows: each run updates 1%
            upstream = changed if i % 2 == 0 else frame
            seconds, _ = _replicate(same, upstream, updated=len(picked))
            if i:
                update.append(seconds)
        small_path = os.path.join(tmp, "small.duckdb")
        _, small = _replicate(small_path, synthetic_metrics(1_000), inserted=1_000)
    per_row_note = f"a statement per row would be {rows:,}"
    common = f"{rows:,} metric rows, {len(frame.columns)} columns, DuckDB file on local disk"
    return [
        figure(
            "replicate_duckdb_load",
            load,
            "s",
            anchor=f"{rows / min(load):,.0f} rows/s at best",
            notes=f"{common}; empty table: all rows inserted by one MERGE; warm-up excluded",
            warmup=1,
        ),
        figure(
            "replicate_duckdb_rerun",
            rerun,
            "s",
            notes=f"{common}; the same rows again: the MERGE changes nothing (idempotent)",
            warmup=1,
        ),
        figure(
            "replicate_duckdb_update",
            update,
            "s",
            notes=f"{common}; 1% of the rows changed upstream: only those rows are updated",
            warmup=1,
        ),
        figure(
            "replicate_duckdb_statements",
            statements,
            "statements",
            goal="<= 15",
            anchor=per_row_note,
            notes=f"per replication, counted by the warehouse; {small} at 1,000 rows "
            "(staging is one INSERT ... SELECT from the registered DataFrame, then one MERGE)",
            warmup=1,
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows instead of 100,000")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
