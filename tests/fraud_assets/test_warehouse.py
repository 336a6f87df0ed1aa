"""The BI replica: one schema, idempotent MERGE, on DuckDB for real and Snowflake under fakesnow.

The Snowflake path runs the real connector code (dagster-snowflake's SnowflakeResource,
snowflake.connector, write_pandas) with fakesnow standing in for the server; connection and
authentication failures run against a closed port and a stub login endpoint.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import fakesnow
import numpy as np
import pandas as pd
import pytest
import snowflake.connector

from fraud_assets.assets.reporting import model_metrics, snowflake_metrics_replica
from fraud_assets.definitions import build_definitions, warehouse_for
from fraud_assets.resources import (
    DuckDBWarehouse,
    LakehouseResource,
    SnowflakeWarehouse,
    Warehouse,
    WarehouseConfigError,
    WarehouseWriteError,
)
from fraud_assets.settings import LocationSettings
from fraud_core import metrics as fraud_metrics
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import METRICS, SCORES
from fraud_core.pipeline import score_batch
from fraud_core.warehouse import (
    BATCH_LEVEL,
    DEFAULT_TABLE,
    METRICS_COLUMNS,
    METRICS_KEY,
    VIEWS,
    check_identifier,
    check_metrics_frame,
    column_names,
    schema_sql,
    view_name,
)

# fakesnow's own cursor warns about an extra Arrow copy on every result
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Do-Not-Leak-4417"
SNOWFLAKE = {
    "SNOWFLAKE_ACCOUNT": "acme-fraud",
    "SNOWFLAKE_USER": "svc_fraud",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_WAREHOUSE": "BI_WH",
    "SNOWFLAKE_DATABASE": "FRAUD",
    "SNOWFLAKE_SCHEMA": "REPORTING",
}
REQUIRED = [k for k in SNOWFLAKE if k != "SNOWFLAKE_PASSWORD"]
KEY = list(METRICS_KEY)
_INSTANCES: dict[str, dg.DagsterInstance] = {}  # run id -> the instance that recorded the run


# --- data and helpers ---------------------------------------------------------------------------
def _warehouse(env: dict[str, str]) -> Warehouse:
    """The warehouse the code location picks for the variables ``env``."""
    return warehouse_for(LocationSettings.from_env(env), env)


def _metrics(batches: int = 3, days: int = 4, version: str = "fm-1") -> pd.DataFrame:
    """A small model_metrics table: ``batches`` x ``days`` rows with NULLs where they occur."""
    rng = np.random.default_rng(7)
    rows = []
    for b in range(batches):
        for d in range(days):
            claims = int(rng.integers(80, 120))
            alerts = int(rng.integers(3, 9))
            labelled = claims if b < batches - 1 else 0  # the last batch has no labels yet
            frauds, tp = (3, 2) if labelled else (0, 0)
            rows.append(
                {
                    "model_version": version,
                    "batch_id": f"b{b}",
                    "metric_date": dt.date(2024, 1, 1) + dt.timedelta(days=b * days + d),
                    "claims_scored": claims,
                    "alerts": alerts,
                    "alert_rate": alerts / claims,
                    "labelled_claims": labelled,
                    "labelled_frauds": frauds,
                    "labelled_alerts": alerts if labelled else 0,
                    "true_positives": tp,
                    "fraud_rate": frauds / labelled if labelled else None,
                    "alert_precision": tp / alerts if labelled else None,
                    "recall_at_threshold": tp / frauds if frauds else None,
                    "batch_average_precision": 0.3 + b / 10 if labelled else None,
                    "batch_precision_at_k": 0.2 if labelled else None,
                    "batch_max_feature_psi": 0.02 * (b + 1),
                    "batch_most_drifted_feature": "claimed_amount",
                    "batch_score_psi": 0.01 * (b + 1),
                    "in_training_data": b == 0,
                    "computed_at": pd.Timestamp("2024-03-01 06:00:00.123456"),
                }
            )
    return pd.DataFrame(rows)[column_names()]


def _lakehouse(tmp_path: Path, table: pd.DataFrame) -> LakehouseResource:
    root = tmp_path / "lake"
    Lakehouse(str(root)).write_table(METRICS, table)
    return LakehouseResource(uri=str(root))


def _replicate(lakehouse: LakehouseResource, warehouse: Warehouse) -> dg.ExecuteInProcessResult:
    """Materialize the replica asset alone, with the warehouse swapped in through resources=."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [snowflake_metrics_replica],
        resources={"lakehouse": lakehouse, "warehouse": warehouse},
        instance=instance,
        raise_on_error=False,
    )
    _INSTANCES[result.run_id] = instance
    return result


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    assert result.success, _errors(result)
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _errors(result: dg.ExecuteInProcessResult) -> str:
    """Every failure in the run, with causes (what a user sees in the UI)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            texts.append(event.step_failure_data.error.to_string())
        elif event.is_failure and event.event_specific_data is not None:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                texts.append(error.to_string())
    return "\n".join(texts)


def _everything_logged(result: dg.ExecuteInProcessResult) -> str:
    """The run's whole event log as stored (messages, metadata, errors), and its config."""
    entries = _INSTANCES[result.run_id].all_logs(result.run_id)
    assert entries, "no event log"
    logged = "\n".join(dg.serialize_value(entry) for entry in entries)
    return logged + json.dumps(result.dagster_run.run_config, default=str)


def _rows(con: Any, sql: str) -> pd.DataFrame:
    """A query's result as a frame with lower-case column names (Snowflake upper-cases them)."""
    cursor = con.cursor() if hasattr(con, "cursor") else con
    cursor.execute(sql)
    names = [str(d[0]).lower() for d in cursor.description]
    return pd.DataFrame(cursor.fetchall(), columns=names)


def _duck(path: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return _rows(con, sql)
    finally:
        con.close()


def _table_sql(table: str = DEFAULT_TABLE) -> str:
    return f"SELECT * FROM {table} ORDER BY {', '.join(METRICS_KEY)}"


def _normalized(frame: pd.DataFrame) -> pd.DataFrame:
    """Values as Python objects, comparable across DuckDB and Snowflake results."""
    out = frame[column_names()].copy()
    for name, sql_type in METRICS_COLUMNS:
        if sql_type in ("BIGINT", "DOUBLE"):
            out[name] = pd.to_numeric(out[name]).astype("float64")
    return out.reset_index(drop=True)


def _changed_rows(before: pd.DataFrame, after: pd.DataFrame) -> list[int]:
    """Positions of rows that differ in any column (NULL equals NULL)."""
    a, b = _normalized(before), _normalized(after)
    same = (a == b) | (a.isna() & b.isna())
    return [int(i) for i in same.index[~same.all(axis=1)]]


@pytest.fixture
def snowflake_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A complete Snowflake configuration in the environment (read through dg.EnvVar)."""
    for name in ("SNOWFLAKE_TABLE", "SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in SNOWFLAKE.items():
        monkeypatch.setenv(name, value)
    return dict(SNOWFLAKE)


@pytest.fixture
def fake_snowflake() -> Iterator[None]:
    with fakesnow.patch():
        yield


def _snowflake_connect() -> Any:
    return snowflake.connector.connect(
        account="acme-fraud",
        user="reader",
        password="x",
        database=SNOWFLAKE["SNOWFLAKE_DATABASE"],
        schema=SNOWFLAKE["SNOWFLAKE_SCHEMA"],
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one schema -------------------------------------------------------------------------------
def test_schema_sql_is_generated_from_the_declared_schema() -> None:
    committed = (ROOT / "infra" / "snowflake" / "schema.sql").read_text()
    assert committed == schema_sql(), (
        "infra/snowflake/schema.sql is out of date: regenerate it with "
        "`.venv/bin/python -m fraud_core.warehouse > infra/snowflake/schema.sql`"
    )
    for name in column_names():
        assert f"\n    {name} " in committed
    assert f"PRIMARY KEY ({', '.join(METRICS_KEY)})" in committed


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def test_schema_sql_runs_on_duckdb_and_snowflake_with_the_same_shape(fake_snowflake) -> None:
    statements = _statements((ROOT / "infra" / "snowflake" / "schema.sql").read_text())
    assert len(statements) == 1 + len(VIEWS)
    views = [view_name(DEFAULT_TABLE, v) for v in VIEWS]
    duck = duckdb.connect()
    sf = _snowflake_connect()
    for statement in statements:
        duck.execute(statement)
        sf.cursor().execute(statement)
    for relation in [DEFAULT_TABLE, *views]:
        sql = f"SELECT * FROM {relation} WHERE 1 = 0"
        assert list(_rows(duck, sql).columns) == list(_rows(sf, sql).columns), relation
    assert list(_rows(duck, f"SELECT * FROM {DEFAULT_TABLE}").columns) == column_names()


def test_check_identifier_refuses_anything_but_a_plain_name() -> None:
    assert check_identifier("FRAUD_MODEL_METRICS") == "FRAUD_MODEL_METRICS"
    for bad in ["", "1abc", "a b", "a;DROP TABLE x", 'a"b', "db.table", "a" * 256]:
        with pytest.raises(ValueError, match="invalid table name"):
            check_identifier(bad)


def test_the_metrics_frame_is_checked_before_anything_connects() -> None:
    table = _metrics()
    with pytest.raises(ValueError, match="repeat a key"):
        check_metrics_frame(pd.concat([table, table.iloc[[0]]]))
    with pytest.raises(ValueError, match=r"missing \['alerts'\]"):
        check_metrics_frame(table.drop(columns="alerts"))
    with pytest.raises(ValueError, match="null in the key"):
        check_metrics_frame(table.assign(metric_date=None))
    with pytest.raises(ValueError, match="no rows"):
        check_metrics_frame(table.iloc[:0])
    assert list(check_metrics_frame(table[column_names()[::-1]]).columns) == column_names()


# --- DuckDB, for real -------------------------------------------------------------------------
def test_duckdb_replica_is_idempotent_and_updates_only_a_changed_row(tmp_path) -> None:
    table = _metrics()
    warehouse = DuckDBWarehouse(database=str(tmp_path / "wh" / "fraud.duckdb"))
    db = tmp_path / "wh" / "fraud.duckdb"

    first = _metadata(_replicate(_lakehouse(tmp_path, table), warehouse))
    assert first["dagster/row_count"] == len(table) == first["rows_inserted"]
    after_first = _duck(db, _table_sql())
    pd.testing.assert_frame_equal(_normalized(after_first), _normalized(table))

    second = _metadata(_replicate(_lakehouse(tmp_path, table), warehouse))
    assert (second["rows_inserted"], second["rows_updated"]) == (0, 0)
    assert second["rows_unchanged"] == second["dagster/row_count"] == len(table)
    pd.testing.assert_frame_equal(_duck(db, _table_sql()), after_first)

    changed = table.copy()
    changed.loc[5, "alerts"] += 1  # one metric of one row changes upstream
    third = _metadata(_replicate(_lakehouse(tmp_path, changed), warehouse))
    assert (third["rows_inserted"], third["rows_updated"]) == (0, 1)
    after_third = _duck(db, _table_sql())
    assert len(after_third) == len(table)
    assert _changed_rows(after_first, after_third) == [5]
    assert after_third.loc[5, "alerts"] == table.loc[5, "alerts"] + 1

    daily = _duck(db, f"SELECT * FROM {view_name(DEFAULT_TABLE, 'DAILY')} ORDER BY metric_date")
    assert len(daily) == len(table) and daily["claims_scored"].sum() == table.claims_scored.sum()


def test_statements_do_not_grow_with_rows(tmp_path) -> None:
    small = DuckDBWarehouse(database=str(tmp_path / "small.duckdb")).replicate_metrics(
        _metrics(batches=1, days=2)
    )
    large = DuckDBWarehouse(database=str(tmp_path / "large.duckdb")).replicate_metrics(
        _metrics(batches=20, days=50)
    )
    assert large.table_rows == 1_000 and small.table_rows == 2
    assert large.statements == small.statements <= 15


def test_duckdb_rejected_rows_leave_the_table_unchanged(tmp_path) -> None:
    db = tmp_path / "fraud.duckdb"
    warehouse = DuckDBWarehouse(database=str(db))
    table = _metrics()
    bad = pd.concat([table.iloc[:2], table.iloc[2:]]).astype({"claims_scored": object})
    bad.loc[3, "claims_scored"] = "many"

    # a first replication that fails creates nothing at all (DDL is in the transaction)
    with pytest.raises(WarehouseWriteError, match="rolled back") as failed:
        warehouse.replicate_metrics(bad)
    assert "many" in str(failed.value)
    tables = _duck(db, "SELECT table_name FROM information_schema.tables")
    assert tables.empty

    warehouse.replicate_metrics(table)
    before = _duck(db, _table_sql())
    newer = bad.copy()
    newer.loc[0, "alerts"] = 99  # would be an update, if the batch were accepted
    with pytest.raises(WarehouseWriteError):
        warehouse.replicate_metrics(newer)
    pd.testing.assert_frame_equal(_duck(db, _table_sql()), before)


def test_duckdb_table_from_an_older_schema_is_reported(tmp_path) -> None:
    db = tmp_path / "fraud.duckdb"
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE {DEFAULT_TABLE} (model_version VARCHAR, first_claim_date DATE)")
    con.close()
    with pytest.raises(WarehouseWriteError, match=r"missing: \[.*'metric_date'.*first_claim"):
        DuckDBWarehouse(database=str(db)).replicate_metrics(_metrics())


def test_invalid_duckdb_table_name_fails_the_run_before_anything_runs(tmp_path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"), table="metrics; DROP x")
    result = _replicate(_lakehouse(tmp_path, _metrics()), warehouse)
    assert not result.success
    assert "invalid table name 'metrics; DROP x'" in _errors(result)
    assert not (tmp_path / "w.duckdb").exists()


# --- Snowflake under fakesnow -----------------------------------------------------------------
def test_snowflake_replica_merges_idempotently_with_the_views(
    tmp_path, snowflake_env, fake_snowflake
) -> None:
    table = _metrics()
    warehouse = _warehouse({**snowflake_env, "FRAUD_WAREHOUSE": "snowflake"})
    assert isinstance(warehouse, SnowflakeWarehouse)

    first = _metadata(_replicate(_lakehouse(tmp_path, table), warehouse))
    assert first["rows_inserted"] == first["dagster/row_count"] == len(table)
    assert first["warehouse"] == "snowflake://acme-fraud/FRAUD/REPORTING/FRAUD_MODEL_METRICS"
    sf = _snowflake_connect()
    after_first = _rows(sf, _table_sql())
    pd.testing.assert_frame_equal(_normalized(after_first), _normalized(table))

    second = _replicate(_lakehouse(tmp_path, table), warehouse)
    meta = _metadata(second)
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_unchanged"]) == (0, 0, 12)
    pd.testing.assert_frame_equal(_rows(sf, _table_sql()), after_first)
    assert PASSWORD not in _everything_logged(second)
    assert PASSWORD not in json.dumps(meta, default=str)

    changed = table.copy()
    changed.loc[7, "batch_score_psi"] = 0.5
    meta = _metadata(_replicate(_lakehouse(tmp_path, changed), warehouse))
    assert (meta["rows_inserted"], meta["rows_updated"]) == (0, 1)
    assert _changed_rows(after_first, _rows(sf, _table_sql())) == [7]

    # the views answer what a BI analyst asks, with the same numbers as on DuckDB
    duck_db = tmp_path / "same.duckdb"
    DuckDBWarehouse(database=str(duck_db)).replicate_metrics(changed)
    for suffix in VIEWS:
        order = "1, 2, 3"
        sql = f"SELECT * FROM {view_name(DEFAULT_TABLE, suffix)} ORDER BY {order}"
        on_snowflake, on_duckdb = _rows(sf, sql), _duck(duck_db, sql)
        assert list(on_snowflake.columns) == list(on_duckdb.columns)
        for col in on_duckdb.columns:
            left, right = on_snowflake[col], on_duckdb[col]
            if pd.api.types.is_numeric_dtype(right) and not pd.api.types.is_bool_dtype(right):
                np.testing.assert_allclose(left.astype(float), right.astype(float), err_msg=col)
            else:
                assert list(left) == list(right), (suffix, col)
    by_model = _rows(sf, f"SELECT * FROM {view_name(DEFAULT_TABLE, 'BY_MODEL')}")
    for in_training, group in changed.groupby("in_training_data"):
        row = by_model[by_model.in_training_data == in_training].iloc[0]
        expected = group.true_positives.sum() / group.labelled_alerts.sum()
        assert float(row.alert_precision) == pytest.approx(expected)  # pooled, not averaged
        assert int(row.batches) == group.batch_id.nunique()


def test_key_pair_authentication(tmp_path, snowflake_env, fake_snowflake, monkeypatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = "key-Passphrase-9921"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem)
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(path))
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", passphrase)
    env = {k: v for k, v in snowflake_env.items() if k != "SNOWFLAKE_PASSWORD"}
    key_env = {
        **env,
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(path),
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": passphrase,
    }
    warehouse = SnowflakeWarehouse.from_env(key_env)
    assert warehouse.password is None
    result = _replicate(_lakehouse(tmp_path, _metrics()), warehouse)
    assert _metadata(result)["rows_inserted"] == 12
    assert passphrase not in _everything_logged(result)

    # the key itself as PEM text in the environment, and a wrong passphrase
    monkeypatch.delenv("SNOWFLAKE_PRIVATE_KEY_PATH")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY", pem.decode())
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "wrong-Passphrase-5150")
    key_env = {**env, "SNOWFLAKE_PRIVATE_KEY": pem.decode()}
    key_env["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"] = "wrong-Passphrase-5150"
    result = _replicate(_lakehouse(tmp_path, _metrics()), SnowflakeWarehouse.from_env(key_env))
    errors = _errors(result)
    assert "SNOWFLAKE_PRIVATE_KEY could not be loaded as a PEM private key" in errors
    assert "wrong-Passphrase-5150" not in errors + _everything_logged(result)
    assert pem.decode().splitlines()[1] not in errors + _everything_logged(result)


def test_snowflake_rejected_rows_leave_the_table_unchanged(
    tmp_path, snowflake_env, fake_snowflake
) -> None:
    unresolved = SnowflakeWarehouse.from_env(snowflake_env)
    with pytest.raises(WarehouseConfigError, match="unresolved dg.EnvVar"):
        unresolved.replicate_metrics(_metrics())  # outside a run, EnvVar is not read
    warehouse = unresolved.process_config_and_initialize()
    table = _metrics()
    warehouse.replicate_metrics(table)
    sf = _snowflake_connect()
    before = _rows(sf, _table_sql())
    bad = table.astype({"claims_scored": object})
    bad.loc[0, "alerts"] = 99
    bad.loc[3, "claims_scored"] = "many"
    with pytest.raises(WarehouseWriteError, match="rolled back") as failed:
        warehouse.replicate_metrics(bad)
    assert PASSWORD not in str(failed.value)
    pd.testing.assert_frame_equal(_rows(sf, _table_sql()), before)


# --- bad configuration ------------------------------------------------------------------------
@pytest.mark.parametrize("missing", REQUIRED)
def test_each_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in SNOWFLAKE.items() if k != missing}
    with pytest.raises(WarehouseConfigError, match=missing) as raised:
        _warehouse({**env, "FRAUD_WAREHOUSE": "snowflake"})
    assert PASSWORD not in str(raised.value)


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(WarehouseConfigError) as raised:
        _warehouse(
            {"FRAUD_WAREHOUSE": "snowflake", "SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": ""}
        )
    message = str(raised.value)
    for name in [*REQUIRED[1:], "SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_PATH"]:
        assert name in message
    assert "SNOWFLAKE_ACCOUNT" not in message


def test_password_and_key_together_are_refused() -> None:
    env = {**SNOWFLAKE, "SNOWFLAKE_PRIVATE_KEY_PATH": "/keys/rsa_key.p8"}
    with pytest.raises(WarehouseConfigError, match="only one of SNOWFLAKE_PASSWORD, SNOWFLAKE_PRI"):
        SnowflakeWarehouse.from_env(env)


def test_invalid_snowflake_table_name_is_refused() -> None:
    env = {**SNOWFLAKE, "SNOWFLAKE_TABLE": "metrics; DROP TABLE users"}
    with pytest.raises(WarehouseConfigError, match="SNOWFLAKE_TABLE: invalid table name"):
        SnowflakeWarehouse.from_env(env)


def test_incomplete_resource_fails_the_run_before_connecting(tmp_path, monkeypatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(snowflake.connector, "connect", lambda **kw: calls.append(kw))
    incomplete = SnowflakeWarehouse(account="acme", user="svc", warehouse="WH", database="DB")
    result = _replicate(_lakehouse(tmp_path, _metrics()), incomplete)
    assert not result.success
    errors = _errors(result)
    assert "WarehouseConfigError" in errors
    assert "missing SNOWFLAKE_SCHEMA, SNOWFLAKE_PASSWORD" in errors
    assert calls == []


def test_unset_environment_variable_fails_the_run(tmp_path, snowflake_env, monkeypatch) -> None:
    warehouse = SnowflakeWarehouse.from_env(snowflake_env)
    monkeypatch.delenv("SNOWFLAKE_WAREHOUSE")  # unset between deployment and the run
    with pytest.raises(
        dg.DagsterInvalidConfigError, match='"SNOWFLAKE_WAREHOUSE" which is not set'
    ):
        _replicate(_lakehouse(tmp_path, _metrics()), warehouse)


def test_connection_refused_is_a_clear_error(tmp_path, snowflake_env) -> None:
    port = _free_port()  # nothing listens there
    warehouse = SnowflakeWarehouse.from_env(
        snowflake_env,
        login_timeout=5,
        connection_args={"host": "127.0.0.1", "port": port, "protocol": "http"},
    )
    result = _replicate(_lakehouse(tmp_path, _metrics()), warehouse)
    assert not result.success
    errors = _errors(result)
    assert "could not connect to Snowflake account 'acme-fraud' as user 'svc_fraud'" in errors
    assert "nothing was written" in errors
    assert PASSWORD not in errors + _everything_logged(result)


class _RejectingLogin(BaseHTTPRequestHandler):
    """Answers Snowflake's login request the way Snowflake does for a wrong password."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        self.bodies.append(self.rfile.read(int(self.headers.get("content-length", 0))))
        body = json.dumps(
            {
                "success": False,
                "code": "390100",
                "message": "Incorrect username or password was specified.",
                "data": {"nextAction": "RETRY_LOGIN", "authnMethod": "USERNAME_PASSWORD"},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_wrong_credentials_are_a_clear_error(tmp_path, snowflake_env) -> None:
    server = HTTPServer(("127.0.0.1", 0), _RejectingLogin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        warehouse = SnowflakeWarehouse.from_env(
            snowflake_env,
            login_timeout=5,
            connection_args={
                "host": "127.0.0.1",
                "port": server.server_address[1],
                "protocol": "http",
            },
        )
        result = _replicate(_lakehouse(tmp_path, _metrics()), warehouse)
    finally:
        server.shutdown()
        server.server_close()
    assert _RejectingLogin.bodies, "the connector never reached the login endpoint"
    login = json.loads(gzip.decompress(_RejectingLogin.bodies[-1]))
    assert login["data"]["PASSWORD"] == PASSWORD  # it went to the server, and only there
    errors = _errors(result)
    assert "could not connect to Snowflake account 'acme-fraud'" in errors
    assert "Incorrect username or password was specified" in errors
    assert PASSWORD not in errors + _everything_logged(result)


# --- choosing the warehouse -------------------------------------------------------------------
def test_the_definitions_pick_the_warehouse_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    local = build_definitions({})
    assert isinstance(local.resources["warehouse"], DuckDBWarehouse)
    assert local.resources["warehouse"].database == str(tmp_path / ".warehouse" / "fraud.duckdb")
    snow = build_definitions({**SNOWFLAKE, "FRAUD_WAREHOUSE": "snowflake"})
    resource = snow.resources["warehouse"]
    assert isinstance(resource, SnowflakeWarehouse)
    assert PASSWORD not in repr(resource) + json.dumps(resource.model_dump(), default=str)
    prod = {
        **SNOWFLAKE,
        "FRAUD_ENV": "prod",
        "LAKEHOUSE_URI": "s3://l/f",
        "FRAUD_TRAINING": "local",
    }
    assert isinstance(_warehouse(prod), SnowflakeWarehouse)
    with pytest.raises(WarehouseConfigError, match="FRAUD_WAREHOUSE='oracle'"):
        _warehouse({"FRAUD_WAREHOUSE": "oracle"})
    with pytest.raises(WarehouseConfigError, match="SNOWFLAKE_ACCOUNT"):
        build_definitions({"FRAUD_WAREHOUSE": "snowflake"})


# --- model_metrics from real scores, per day --------------------------------------------------
def test_model_metrics_per_day_replicated_to_duckdb(tmp_path, champion_lakehouse) -> None:
    from fraud_core.model.bundle import load_champion

    root = tmp_path / "lake"
    shutil.copytree(champion_lakehouse, root)
    lh = Lakehouse(str(root))
    bundle = load_champion(lh)
    for batch in ["b0", "b1", "b2"]:
        score_batch(lh, batch, bundle)
    db = tmp_path / "fraud.duckdb"
    result = dg.materialize(
        [model_metrics, snowflake_metrics_replica],
        resources={
            "lakehouse": LakehouseResource(uri=str(root)),
            "warehouse": DuckDBWarehouse(database=str(db)),
        },
    )
    table = lh.read_table(METRICS)
    assert list(table.columns) == column_names()
    assert not table.duplicated(KEY).any() and table["batch_id"].nunique() == 3
    assert len(table) > 3 * 30  # one row per claim day, not per batch
    for batch in ["b0", "b1", "b2"]:
        scores = lh.read_batch(SCORES, batch)
        rows = table[table.batch_id == batch]
        assert rows.claims_scored.sum() == len(scores)
        assert rows.alerts.sum() == (scores.decision == "investigate").sum()
        assert len(rows) == scores.claim_date.dt.date.nunique()
        assert scores["is_fraud"].notna().all()  # the fixture's batches are all labelled
        y = scores["is_fraud"].astype(bool).to_numpy()
        alert = (scores.decision == "investigate").to_numpy()
        assert rows.labelled_frauds.sum() == y.sum()
        assert rows.true_positives.sum() == (alert & y).sum()
        assert rows.labelled_alerts.sum() == alert.sum()
        assert (rows[list(BATCH_LEVEL)].nunique(dropna=False) == 1).all()  # one per batch
        expected = fraud_metrics.average_precision(y, scores.fraud_score.to_numpy())
        assert rows.batch_average_precision.iloc[0] == pytest.approx(expected)
        assert rows.in_training_data.all()
    (replica,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("snowflake_metrics_replica")
    ]
    assert replica.materialization.metadata["rows_inserted"].value == len(table)
    assert len(_duck(db, _table_sql())) == len(table)
    daily = _duck(db, f"SELECT * FROM {view_name(DEFAULT_TABLE, 'DAILY')}")
    assert daily.claims_scored.sum() == table.claims_scored.sum()
    drift = _duck(db, f"SELECT * FROM {view_name(DEFAULT_TABLE, 'DRIFT')} ORDER BY first_date")
    assert list(drift.batch_id) == ["b0", "b1", "b2"]
    assert drift.max_feature_psi.notna().all()
