"""The lakehouse: atomic replace, partitions, the champion pointer, plain batch ids."""

import os

import pandas as pd
import pytest
from deltalake import DeltaTable

from fraud_core.lakehouse import (
    Lakehouse,
    LakehouseError,
    batch_id_for_file,
    check_batch_id,
    uri_scheme,
)
from fraud_core.layout import RAW
from fraud_core.schema import coerce_claims


def test_rerun_replaces_a_partition(tmp_path) -> None:
    lh = Lakehouse(str(tmp_path))
    lh.write_batch(RAW, "b1", pd.DataFrame({"x": [1, 2, 3]}))
    lh.write_batch(RAW, "b1", pd.DataFrame({"x": [4]}))
    assert lh.read_batch(RAW, "b1")["x"].tolist() == [4]
    assert lh.table_version(RAW) == 1  # two commits: the rerun replaced the batch in one
    table = DeltaTable(lh.table_url(RAW))
    assert len(table.file_uris()) == 1  # the first run's file is no longer part of the table
    assert table.history(1)[0]["operation"] == "WRITE"


def test_batches_listed_and_concatenated(tmp_path) -> None:
    lh = Lakehouse(str(tmp_path))
    for b in ("b2", "b1"):
        lh.write_batch(RAW, b, pd.DataFrame({"x": [b]}))
    (tmp_path / "raw/claims/batch_id=empty").mkdir()  # a folder the log does not name
    assert lh.batches(RAW) == ["b1", "b2"]
    both = lh.read_batches(RAW)
    assert both["batch_id"].tolist() == ["b1", "b2"]


def test_missing_data_says_where(tmp_path) -> None:
    lh = Lakehouse(str(tmp_path))
    with pytest.raises(LakehouseError, match="batch 'nope' of raw/claims is not in the lakehouse"):
        lh.read_batch(RAW, "nope")
    with pytest.raises(LakehouseError, match="no batches of raw/claims"):
        lh.read_batches(RAW)
    assert lh.champion() is None


def test_champion_pointer_roundtrip_and_validation(tmp_path) -> None:
    lh = Lakehouse(str(tmp_path))
    lh.set_champion({"version": "fm-1", "note": "x"})
    assert lh.champion() == {"version": "fm-1", "note": "x"}
    with pytest.raises(ValueError, match="needs a 'version'"):
        lh.set_champion({})
    (tmp_path / "models/champion.json").write_text("[]")
    with pytest.raises(LakehouseError, match="malformed"):
        lh.champion()


def test_batch_ids_are_plain() -> None:
    assert batch_id_for_file("/landing/claims 2024-01.csv") == "claims_2024-01"
    assert batch_id_for_file("s3://b/p/claims.v2.parquet") == "claims.v2"
    for bad in ("", "../x", "a/b", "x" * 200):
        with pytest.raises(ValueError, match="invalid batch id"):
            check_batch_id(bad)


def test_batches_come_from_the_log_and_ignore_unfinished_writes(tmp_path) -> None:
    lh = Lakehouse(str(tmp_path))
    lh.write_batch(RAW, "b1", pd.DataFrame({"x": [1]}))
    folder = tmp_path / "raw/claims/batch_id=b2"
    folder.mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(b"half written")  # a writer mid-way
    assert lh.batches(RAW) == ["b1"]
    assert lh.read_batches(RAW)["batch_id"].tolist() == ["b1"]
    assert "batch_id=b2/part-00000.parquet" in lh.find(RAW)
    assert lh.find("nothing/here") == []


def test_a_failed_write_leaves_no_temp_file(tmp_path) -> None:
    lh = Lakehouse(str(tmp_path))
    with pytest.raises(TypeError):
        lh.write_bytes("raw/x.bin", "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path / "raw") == []


def test_uris_and_their_schemes(tmp_path) -> None:
    assert [uri_scheme(u) for u in ("/a/b", "file:///a", "s3://b/p", "ABFSS://c@a/p")] == [
        "file",
        "file",
        "s3",
        "abfss",
    ]
    lh = Lakehouse(str(tmp_path), storage_options={"auto_mkdir": True})
    assert "storage_options" not in repr(lh)  # settings may hold secrets: never printed
    assert lh.url(RAW) == f"{tmp_path}/{RAW}"


def test_batch_rows_come_from_the_footers(tmp_path, small_claims) -> None:
    lh = Lakehouse(str(tmp_path))
    claims = coerce_claims(small_claims.head(2_500)).frame
    writer = lh.partition_writer(RAW, "b1", claims.iloc[:0])
    for start in range(0, 2_500, 1_000):
        writer.write(claims.iloc[start : start + 1_000])
    writer.commit()
    lh.write_batch(RAW, "empty", claims.iloc[:0])
    assert lh.batch_rows(RAW, "b1") == 2_500 == len(lh.read_batch(RAW, "b1"))
    assert lh.batch_rows(RAW, "empty") == 0
    assert lh.batch_rows(RAW, "never") == 0
