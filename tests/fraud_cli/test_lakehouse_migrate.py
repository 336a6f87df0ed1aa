"""`fraud lakehouse migrate` on what the Parquet lakehouse's own code wrote: the project as it
was before its datasets became Delta tables runs `fraud demo` (simulate, ingest, featurize,
train, score, metrics), and the migration turns that folder into Delta tables in place, with
the same rows, the ingestion order, and a lakehouse the current code keeps using."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fraud_cli.main import main as fraud
from fraud_core.claim_versions import batch_order
from fraud_core.delta import LakehouseError
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import FEATURE_DRIFT, FEATURES, METRICS, QUARANTINE, RAW, SCORES
from fraud_core.pipeline import featurize_batch

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
# The last commit whose lakehouse is Parquet files, a file per batch (main before #19).
PARQUET_COMMIT = "e259804"
DATASETS = (RAW, QUARANTINE, FEATURES, SCORES, FEATURE_DRIFT)


@pytest.fixture(scope="module")
def parquet_lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo's lakehouse written by the Parquet code (its checkout at PARQUET_COMMIT)."""
    src = tmp_path_factory.mktemp("parquet-src")
    work = tmp_path_factory.mktemp("parquet-demo")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PARQUET_COMMIT], capture_output=True, check=False
    )
    if archive.returncode:
        pytest.skip(f"commit {PARQUET_COMMIT} is not in this clone: {archive.stderr[-200:]!r}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "USERNAME": os.environ.get("USERNAME", "fraud-tests"),
    }
    for key in ("LAKEHOUSE_URI", "DAGSTER_HOME", "DUCKDB_PATH", "FRAUD_ENV"):
        env.pop(key, None)
    demo = subprocess.run(
        [sys.executable, "-m", "fraud_cli.main", "demo", "--claims", "24000", "--batches", "4"]
        + ["--initial-batches", "3", "--max-epochs", "6", "--workdir", str(work)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return work / ".lakehouse"


def _parquet(root: Path, dataset: str) -> pd.DataFrame:
    frames = []
    for folder in sorted((root / dataset).glob("batch=*")):
        frame = pd.read_parquet(folder / "part-0.parquet")
        frames.append(frame.assign(batch_id=folder.name.split("=", 1)[1]))
    return pd.concat(frames, ignore_index=True)


def test_migrate_converts_the_demo_lakehouse_in_place(parquet_lakehouse: Path, capsys) -> None:
    root = parquet_lakehouse
    before = {d: _parquet(root, d) for d in DATASETS}
    metrics = pd.read_parquet(root / METRICS / "part-0.parquet")
    lh = Lakehouse(str(root))
    with pytest.raises(LakehouseError, match="fraud lakehouse migrate"):
        lh.batches(RAW)  # a Parquet lakehouse is named as such, never read as empty
    with pytest.raises(LakehouseError, match="fraud lakehouse migrate"):
        lh.maintain()  # VACUUM would delete the Parquet files

    assert fraud(["lakehouse", "migrate", "--lakehouse", str(root)]) == 0
    assert "raw/claims: 4 batch(es)" in capsys.readouterr().out
    assert not list(root.glob("*/*/batch=*")) and not (root / METRICS / "part-0.parquet").exists()
    for dataset, frame in before.items():
        assert lh.batches(dataset) == sorted(frame["batch_id"].unique()), dataset
        after = lh.read_batches(dataset)
        assert len(after) == len(frame), dataset
        key = ["batch_id", "claim_id"] if "claim_id" in frame else ["batch_id", "column"]
        got = after.sort_values(key).reset_index(drop=True)
        want = frame.sort_values(key).reset_index(drop=True)
        for column in want.columns:
            if column in ("content_hash",):
                continue
            left, right = got[column], want[column]
            if pd.api.types.is_datetime64_any_dtype(right):
                left, right = pd.to_datetime(left), pd.to_datetime(right)
            assert left.astype(str).tolist() == right.astype(str).tolist(), (dataset, column)
    assert len(lh.read_table(METRICS)) == len(metrics)
    # the order batches were first ingested in survives (it decides which version is latest)
    assert batch_order(lh) == sorted(before[RAW]["batch_id"].unique())
    # the current code keeps using it: a batch's features again, and a second run is a no-op
    featurize_batch(lh, lh.batches(RAW)[-1])
    assert fraud(["lakehouse", "migrate", "--lakehouse", str(root)]) == 0
    assert "nothing to convert" in capsys.readouterr().out
    assert fraud(["lakehouse", "maintain", "--lakehouse", str(root)]) == 0
    assert "raw_claims: version" in capsys.readouterr().out
