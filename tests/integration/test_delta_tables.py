"""The Delta lakehouse on a local folder, S3 (moto) and ADLS (Azurite): reruns replace a batch in
one commit, writers of two batches commit side by side, a training reads tables as of recorded
versions, the claims history folds and reads a window, and a damaged log or a schema that
differs from the declared one fails with the table's name and what to fix, writing nothing."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from fraud_core.claim_versions import as_raw
from fraud_core.delta import LakehouseError
from fraud_core.features import HISTORY_COLUMNS
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CLAIMS_HISTORY, FEATURES, MONTH_COLUMN, QUARANTINE, RAW
from fraud_core.pipeline import featurize_batch
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims
from fraud_core.training import load_labelled_features
from fraud_core.window import window_rows
from tests.support.stores import Store, store_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3", "adls"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Store:
    return store_for(request, tmp_path, monkeypatch)


def _claims(n: int, seed: int, start: str = "2024-01-01", days: int = 30) -> pd.DataFrame:
    config = SimulationConfig(
        n_claims=n, seed=seed, id_prefix=f"D{seed}", start_date=start, days=days
    )
    return as_raw(coerce_claims(simulate_claims(config).drop(columns="scenario")).frame)


def test_a_rerun_replaces_its_batch_in_one_commit(store: Store) -> None:
    lh = store.lakehouse()
    first, second = _claims(300, 1), _claims(200, 2)
    lh.write_batch(RAW, "b1", first)
    lh.write_batch(RAW, "b2", second)
    lh.write_batch(RAW, "b1", first.head(120))  # a rerun of b1 with fewer rows
    assert lh.table_version(RAW) == 2  # three commits: each write is one
    assert lh.batches(RAW) == ["b1", "b2"]
    assert len(lh.read_batch(RAW, "b1")) == 120 and len(lh.read_batch(RAW, "b2")) == 200
    table = DeltaTable(lh.table_url(RAW), storage_options=lh.delta_options)
    assert table.history(1)[0]["operationParameters"]["predicate"] == "batch_id = 'b1'"
    # a batch reads only its own files
    assert all("batch_id=b1/" in uri for uri in table.file_uris("batch_id = 'b1'"))


def test_concurrent_writers_of_two_batches_both_commit(store: Store) -> None:
    lh = store.lakehouse()
    frames = {f"c{i}": _claims(150, 10 + i) for i in range(4)}
    errors: list[BaseException] = []

    def write(batch: str) -> None:
        try:
            for _ in range(2):  # a rerun too, racing the others
                store.lakehouse().write_batch(RAW, batch, frames[batch])
        except BaseException as exc:
            errors.append(exc)

    # the table does not exist yet: the writers also race to create it
    threads = [threading.Thread(target=write, args=(b,)) for b in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert lh.batches(RAW) == sorted(frames)
    assert lh.table_version(RAW) == 2 * len(frames) - 1  # every write committed, once
    every = lh.read_batches(RAW, columns=["claim_id"])
    assert len(every) == sum(len(f) for f in frames.values())  # no batch twice


def _write_twice(uri: str, batch: str, seed: int) -> None:
    """A writer process: one batch written, then rerun (its own Lakehouse and delta-rs)."""
    for _ in range(2):
        Lakehouse(uri).write_batch(RAW, batch, _claims(150, seed))


@pytest.mark.parametrize("store", ["local", "s3"], indirect=True)
def test_concurrent_writer_processes_both_commit(store: Store) -> None:
    """Writers as Dagster runs them: separate processes (spawned: no state shared), racing to
    create the table, then to commit their batches and reruns."""
    spawn = multiprocessing.get_context("spawn")  # the stores' settings travel in the env
    writers = [
        spawn.Process(target=_write_twice, args=(store.lakehouse_uri, f"p{i}", 20 + i))
        for i in range(3)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    lh = store.lakehouse()
    assert lh.batches(RAW) == ["p0", "p1", "p2"]
    assert lh.table_version(RAW) == 2 * len(writers) - 1  # every write committed, once
    every = lh.read_batches(RAW, columns=["claim_id"])
    assert len(every) == 150 * len(writers)  # no batch twice
    assert every["claim_id"].is_unique


def test_training_reads_the_recorded_versions_again(store: Store) -> None:
    lh = store.lakehouse()
    for i, start in enumerate(["2024-01-01", "2024-02-01"]):
        lh.write_batch(RAW, f"t{i}", _claims(400, 20 + i, start))
        featurize_batch(lh, f"t{i}")
    versions = lh.table_versions()
    seen = load_labelled_features(lh.pinned(versions))
    # new batches land, and an old one is rerun with other rows
    lh.write_batch(RAW, "t2", _claims(400, 22, "2024-03-01"))
    featurize_batch(lh, "t2")
    lh.write_batch(RAW, "t0", _claims(100, 23))
    featurize_batch(lh, "t0")
    pinned = lh.pinned(versions)
    assert pinned.batches(FEATURES) == ["t0", "t1"]
    again = load_labelled_features(pinned)
    pd.testing.assert_frame_equal(again, seen)
    assert len(load_labelled_features(lh)) != len(seen)
    with pytest.raises(LakehouseError, match="pinned"):
        pinned.write_batch(RAW, "t9", _claims(10, 24))


def test_the_claims_history_folds_and_reads_the_window_on_each_store(store: Store) -> None:
    lh = store.lakehouse()
    for i, start in enumerate(["2024-01-10", "2024-02-10", "2024-03-10"]):
        lh.write_batch(RAW, f"h{i}", _claims(60, 50 + i, start, days=5))
    every = lh.read_batches(RAW, columns=list(HISTORY_COLUMNS))
    assert lh.maintain()  # folds the three batches into the claims history
    assert sorted(lh.read_table(CLAIMS_HISTORY)[MONTH_COLUMN].unique()) == [
        "2024-01",
        "2024-02",
        "2024-03",
    ]
    lh.write_batch(RAW, "h1", _claims(30, 60, "2024-02-10", days=5))  # a rerun since
    window = window_rows(store.lakehouse(), HISTORY_COLUMNS, pd.Timestamp("2024-01-01"))
    expected = pd.concat([every[every["batch_id"] != "h1"], lh.read_batches(RAW, ["h1"])])
    assert sorted(window["claim_id"]) == sorted(expected["claim_id"])


def test_a_schema_that_differs_from_the_declared_one_is_refused(store: Store) -> None:
    lh = store.lakehouse()
    claims = _claims(50, 30)
    lh.write_batch(RAW, "s1", claims)
    wrong = claims.assign(claimed_amount="a lot")
    with pytest.raises(LakehouseError, match=r"table raw_claims .* declares column claimed_amount"):
        lh.write_batch(RAW, "s1", wrong)
    extra = claims.assign(surprise=1)
    with pytest.raises(LakehouseError, match=r"does not declare column\(s\) surprise"):
        lh.write_batch(RAW, "s2", extra)
    assert lh.table_version(RAW) == 0  # nothing was written
    assert len(lh.read_batch(RAW, "s1")) == 50 and lh.batches(RAW) == ["s1"]
    # nor left in the store: its data files are the log's (the refused file was removed)
    table = DeltaTable(lh.table_url(RAW), storage_options=lh.delta_options)
    logged = {uri.rsplit("/", 1)[1] for uri in table.file_uris()}
    stored = {p.rsplit("/", 1)[1] for p in lh.fs.find(lh.path(RAW)) if p.endswith(".parquet")}
    assert stored == logged and len(logged) == 1
    # rows as received (quarantine) may bring columns the table has not seen
    lh.write_batch(QUARANTINE, "q1", pd.DataFrame({"source_row": [1], "a": ["x"]}))
    lh.write_batch(QUARANTINE, "q2", pd.DataFrame({"source_row": [2], "b": ["y"]}))
    assert list(lh.read_batch(QUARANTINE, "q1").columns) == ["source_row", "a"]
    assert list(lh.read_batch(QUARANTINE, "q2").columns) == ["source_row", "b"]


def test_a_damaged_log_fails_naming_the_table(tmp_path: Path) -> None:
    lh = Lakehouse(str(tmp_path))
    lh.write_batch(RAW, "b1", _claims(20, 40))
    lh.write_batch(RAW, "b2", _claims(20, 41))
    log = tmp_path / "raw/claims/_delta_log/00000000000000000001.json"
    log.write_text("{ this is not json")
    before = sorted(p.name for p in (tmp_path / "raw/claims/_delta_log").iterdir())
    # the next run reads the log (this Lakehouse read it before the damage, and reads only
    # the commits after the ones it has)
    lh = Lakehouse(str(tmp_path))
    with pytest.raises(LakehouseError, match=r"table raw_claims .*_delta_log.* cannot be read"):
        lh.read_batch(RAW, "b1")
    with pytest.raises(LakehouseError, match="Nothing was written"):
        Lakehouse(str(tmp_path)).write_batch(RAW, "b3", _claims(20, 42))
    assert sorted(p.name for p in (tmp_path / "raw/claims/_delta_log").iterdir()) == before
    assert log.read_text() == "{ this is not json"
