"""Delta specifics that need no object store: the catalog statements generated from the layout,
the store options delta-rs gets, and the maintenance job (OPTIMIZE + VACUUM)."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from fraud_assets.definitions import build_definitions
from fraud_assets.maintenance import lakehouse_maintenance
from fraud_assets.resources import LakehouseResource
from fraud_core import delta
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import BATCH_COLUMN, BATCH_LINEAGE, RAW, TABLES

ROOT = Path(__file__).resolve().parents[2]
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:10123/devstoreaccount1;"
)


def test_databricks_tables_sql_is_generated_from_the_layout() -> None:
    committed = (ROOT / "infra" / "databricks" / "tables.sql").read_text()
    assert committed == delta.databricks_sql(TABLES), (
        "infra/databricks/tables.sql is out of date: regenerate it with "
        "`.venv/bin/python -m fraud_core.delta > infra/databricks/tables.sql`"
    )
    for table in TABLES:
        assert (
            f"CREATE TABLE IF NOT EXISTS ${{catalog}}.${{schema}}.{table.name}\nUSING DELTA\n"
            f"LOCATION '${{lakehouse_uri}}/{table.path}'"
        ) in committed
    assert len({t.name for t in TABLES}) == len({t.path for t in TABLES}) == len(TABLES)


def test_store_options_for_delta_rs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert delta.storage_options("s3://bucket/lake") == {
        "aws_endpoint_url": "http://127.0.0.1:5000",
        "allow_http": "true",
        "aws_region": "eu-west-1",
    }
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", AZURITE)
    monkeypatch.delenv("AZURITE_BLOB_STORAGE_URL", raising=False)
    options = delta.storage_options("abfss://c@devstoreaccount1.dfs.core.windows.net/lake")
    # Azurite: the emulator switch, never an endpoint option (delta-rs misaddresses it)
    assert options == {
        "account_name": "devstoreaccount1",
        "account_key": "a2V5",
        "use_emulator": "true",
        "allow_http": "true",
    }
    import os

    assert os.environ["AZURITE_BLOB_STORAGE_URL"] == "http://127.0.0.1:10123"
    assert delta.storage_options("/some/path") == {}


def test_maintenance_compacts_and_keeps_the_rows(tmp_path: Path) -> None:
    lh = Lakehouse(str(tmp_path))
    for i in range(3):
        lh.write_batch(RAW, "b1", pd.DataFrame({"x": [i, i + 1]}))  # reruns leave old files
    lh.write_batch(RAW, "b2", pd.DataFrame({"x": [9]}))
    before = lh.read_batches(RAW)
    run = lakehouse_maintenance.execute_in_process(
        resources={"lakehouse": LakehouseResource(uri=str(tmp_path))},
        run_config={"ops": {"maintain_lakehouse": {"config": {"retention_hours": 0}}}},
    )
    assert run.success
    pd.testing.assert_frame_equal(lh.read_batches(RAW), before)
    files = list((tmp_path / RAW).glob(f"{BATCH_COLUMN}=b1/*.parquet"))
    assert len(files) == 1  # the replaced versions' files were vacuumed


def test_the_maintenance_schedule_is_stopped_by_default(tmp_path: Path) -> None:
    defs = build_definitions({"LAKEHOUSE_URI": str(tmp_path / "lake")})
    schedule = defs.get_schedule_def("lakehouse_maintenance_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.get_job_def("lakehouse_maintenance") is not None


def test_a_table_with_a_row_per_batch_replaces_its_row(tmp_path: Path) -> None:
    """The batch lineage (no batch folders) written by pyarrow and a transaction: a rerun
    replaces its batch's row, in a compacted file too, and keeps the others'."""
    lh = Lakehouse(str(tmp_path))
    for batch in ("b1", "b2", "b3"):
        lh.write_batch(BATCH_LINEAGE, batch, pd.DataFrame({"file": [f"{batch}.csv"]}))
    lh.maintain(vacuum=False)  # one file holds the three rows
    lh.write_batch(BATCH_LINEAGE, "b2", pd.DataFrame({"file": ["b2-again.csv"]}))
    rows = lh.read_table(BATCH_LINEAGE).sort_values(BATCH_COLUMN)
    assert rows[BATCH_COLUMN].tolist() == ["b1", "b2", "b3"]
    assert rows["file"].tolist() == ["b1.csv", "b2-again.csv", "b3.csv"]
    assert lh.table_version(BATCH_LINEAGE) == 4  # three writes, OPTIMIZE, the rerun
    table = DeltaTable(lh.table_url(BATCH_LINEAGE))
    assert len(table.file_uris()) == 1  # the compacted file was rewritten, not added to
    assert pa.table(table.get_add_actions(flatten=True))["max.batch_id"].to_pylist() == ["b3"]
