"""The BI table of model metrics: its one declared schema, and all the SQL that uses it.

``METRICS_COLUMNS`` declares the ``model_metrics`` table. The aggregation in
``fraud_core.pipeline`` builds exactly these columns; the warehouse table, its BI views, the
staging table and the ``MERGE`` below are generated from them. Both warehouses (DuckDB locally,
Snowflake in prod) run the same statements, and ``infra/snowflake/schema.sql`` is this module's
output (``python -m fraud_core.warehouse > infra/snowflake/schema.sql``; a test keeps it in sync).

The SQL is written to run unchanged on Snowflake and DuckDB: standard types (Snowflake reads
``DOUBLE`` as FLOAT and ``TIMESTAMP`` as TIMESTAMP_NTZ), explicit casts before division,
``NULLIF`` instead of relying on division by zero, no dialect-only functions.

Names reach SQL as text, so every table name passes ``check_identifier`` first; values never
do: they travel as staged data (a registered DataFrame, ``write_pandas``).
"""

from __future__ import annotations

import re
import sys

import pandas as pd

# (column, SQL type, meaning) in table order; the natural key comes first.
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model_version", "VARCHAR", "model that scored the claims"),
    ("batch_id", "VARCHAR", "landing batch the claims arrived in"),
    ("metric_date", "DATE", "claim date: one row per model version, batch and day"),
    ("claims_scored", "BIGINT", "claims of that day scored"),
    ("alerts", "BIGINT", "claims sent to investigation"),
    ("alert_rate", "DOUBLE", "alerts / claims_scored"),
    ("labelled_claims", "BIGINT", "claims whose outcome (fraud or not) is known"),
    ("labelled_frauds", "BIGINT", "labelled claims that were fraud"),
    ("labelled_alerts", "BIGINT", "alerts among labelled claims"),
    ("true_positives", "BIGINT", "alerts that were fraud"),
    ("fraud_rate", "DOUBLE", "labelled_frauds / labelled_claims (NULL without labels)"),
    ("alert_precision", "DOUBLE", "true_positives / labelled_alerts (NULL without labels)"),
    ("recall_at_threshold", "DOUBLE", "true_positives / labelled_frauds (NULL without frauds)"),
    ("batch_average_precision", "DOUBLE", "average precision over the whole batch"),
    ("batch_precision_at_k", "DOUBLE", "precision of the batch's top-k scores (k = 100)"),
    ("batch_max_feature_psi", "DOUBLE", "largest feature PSI of the batch vs training"),
    ("batch_most_drifted_feature", "VARCHAR", "the feature with that PSI"),
    ("batch_score_psi", "DOUBLE", "PSI of the batch's scores vs the held-out scores"),
    ("in_training_data", "BOOLEAN", "the batch was in the model's training data"),
    ("computed_at", "TIMESTAMP", "when model_metrics computed the row (UTC)"),
)
METRICS_COLUMNS: tuple[tuple[str, str], ...] = tuple((n, t) for n, t, _ in _COLUMNS)
METRICS_DOCS: dict[str, str] = {n: doc for n, _, doc in _COLUMNS}
METRICS_KEY: tuple[str, ...] = ("model_version", "batch_id", "metric_date")
# Measured on a whole batch (AP and PSI on a day's few claims would be noise): the same value
# on each day row of a (model version, batch); the views aggregate them per batch.
BATCH_LEVEL: tuple[str, ...] = tuple(n for n, _ in METRICS_COLUMNS if n.startswith("batch_")) + (
    "in_training_data",
)
DEFAULT_TABLE = "FRAUD_MODEL_METRICS"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")
# view suffix -> what a BI analyst reads in it
VIEWS: dict[str, str] = {
    "DAILY": "daily fraud and alert rates per model version",
    "BY_MODEL": "precision and recall by model version, split by in_training_data",
    "DRIFT": "drift and batch quality over time, one row per model version and batch",
}


def check_identifier(name: str) -> str:
    """Table names reach SQL as text: allow plain identifiers only."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits, '_' or '$', starting with a "
            "letter or '_' (at most 255 characters; no dots, quotes or spaces)"
        )
    return name


def column_names() -> list[str]:
    """The table's columns, in order."""
    return [name for name, _ in METRICS_COLUMNS]


def view_name(table: str, suffix: str) -> str:
    """``FRAUD_MODEL_METRICS`` + ``DAILY`` -> ``FRAUD_MODEL_METRICS_DAILY`` (validated)."""
    if suffix not in VIEWS:
        raise KeyError(f"unknown view {suffix!r}: one of {', '.join(VIEWS)}")
    return check_identifier(f"{check_identifier(table)}_{suffix}")


def staging_name(table: str) -> str:
    """The session-temporary table a replication stages its rows in."""
    return check_identifier(f"{check_identifier(table)}_STAGING")


def create_table_sql(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the declared columns and the natural key."""
    name = check_identifier(table)
    width = max(len(n) for n, _ in METRICS_COLUMNS)
    cols = "".join(f"\n    {n:<{width}} {t}," for n, t in METRICS_COLUMNS)
    key = ", ".join(METRICS_KEY)
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols}\n    PRIMARY KEY ({key})\n)"


def create_staging_sql(staging: str) -> str:
    """A session-temporary table with the declared columns, to bulk-load rows before a MERGE."""
    name = check_identifier(staging)
    cols = ", ".join(f"{n} {t}" for n, t in METRICS_COLUMNS)
    return f"CREATE OR REPLACE TEMPORARY TABLE {name} ({cols})"


def insert_staging_sql(staging: str, source: str) -> str:
    """Copy ``source`` (a registered DataFrame in DuckDB) into the typed staging table."""
    names = ", ".join(column_names())
    return (
        f"INSERT INTO {check_identifier(staging)} ({names}) "
        f"SELECT {names} FROM {check_identifier(source)}"
    )


def _changed(t: str = "t", s: str = "s") -> str:
    """A matched row differs in any non-key column (NULL-safe)."""
    return " OR ".join(
        f"{t}.{n} IS DISTINCT FROM {s}.{n}" for n in column_names() if n not in METRICS_KEY
    )


def _on(t: str = "t", s: str = "s") -> str:
    return " AND ".join(f"{t}.{k} = {s}.{k}" for k in METRICS_KEY)


def merge_sql(table: str, staging: str) -> str:
    """Upsert ``staging`` into ``table`` on the natural key.

    A matched row is updated only when a value differs, so rerunning with the same rows
    changes nothing, and a changed metric updates its row instead of adding one.
    """
    t, s = check_identifier(table), check_identifier(staging)
    names = column_names()
    updates = ", ".join(f"{n} = s.{n}" for n in names if n not in METRICS_KEY)
    return (
        f"MERGE INTO {t} AS t USING {s} AS s ON {_on()} "
        f"WHEN MATCHED AND ({_changed()}) THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
        f"VALUES ({', '.join('s.' + n for n in names)})"
    )


def change_counts_sql(table: str, staging: str) -> str:
    """Rows the MERGE will insert and update: ``(staged, inserted, updated)``, one row.

    Run in the MERGE's transaction, so it describes exactly what that MERGE does; the same
    text on both warehouses (Snowflake's MERGE reports its counts, DuckDB's only a total).
    """
    t, s = check_identifier(table), check_identifier(staging)
    key = METRICS_KEY[0]
    return (
        "SELECT COUNT(*) AS staged, "
        f"COALESCE(SUM(CASE WHEN t.{key} IS NULL THEN 1 ELSE 0 END), 0) AS inserted, "
        f"COALESCE(SUM(CASE WHEN t.{key} IS NOT NULL AND ({_changed()}) THEN 1 ELSE 0 END), 0) "
        f"AS updated FROM {s} AS s LEFT JOIN {t} AS t ON {_on()}"
    )


def count_sql(table: str) -> str:
    return f"SELECT COUNT(*) FROM {check_identifier(table)}"


def columns_probe_sql(table: str) -> str:
    """Selects no rows; the cursor's description lists the table's columns."""
    return f"SELECT * FROM {check_identifier(table)} WHERE 1 = 0"


def _ratio(numerator: str, denominator: str) -> str:
    return f"CAST(SUM({numerator}) AS DOUBLE) / NULLIF(SUM({denominator}), 0)"


def create_views_sql(table: str) -> list[str]:
    """The BI views over the table (``CREATE OR REPLACE VIEW``, same text on both warehouses).

    Rates are recomputed from summed counts (never averaged), so any roll-up is exact.
    """
    t = check_identifier(table)
    daily = (
        f"CREATE OR REPLACE VIEW {view_name(t, 'DAILY')} AS\n"
        "SELECT\n"
        "    metric_date,\n"
        "    model_version,\n"
        "    COUNT(DISTINCT batch_id) AS batches,\n"
        "    SUM(claims_scored) AS claims_scored,\n"
        "    SUM(alerts) AS alerts,\n"
        f"    {_ratio('alerts', 'claims_scored')} AS alert_rate,\n"
        "    SUM(labelled_claims) AS labelled_claims,\n"
        "    SUM(labelled_frauds) AS labelled_frauds,\n"
        f"    {_ratio('labelled_frauds', 'labelled_claims')} AS fraud_rate,\n"
        f"    {_ratio('true_positives', 'labelled_alerts')} AS alert_precision\n"
        f"FROM {t}\n"
        "GROUP BY metric_date, model_version"
    )
    by_model = (
        f"CREATE OR REPLACE VIEW {view_name(t, 'BY_MODEL')} AS\n"
        "SELECT\n"
        "    model_version,\n"
        "    in_training_data,\n"
        "    COUNT(DISTINCT batch_id) AS batches,\n"
        "    MIN(metric_date) AS first_date,\n"
        "    MAX(metric_date) AS last_date,\n"
        "    SUM(claims_scored) AS claims_scored,\n"
        "    SUM(alerts) AS alerts,\n"
        f"    {_ratio('alerts', 'claims_scored')} AS alert_rate,\n"
        "    SUM(labelled_claims) AS labelled_claims,\n"
        "    SUM(labelled_frauds) AS labelled_frauds,\n"
        "    SUM(labelled_alerts) AS labelled_alerts,\n"
        "    SUM(true_positives) AS true_positives,\n"
        f"    {_ratio('labelled_frauds', 'labelled_claims')} AS fraud_rate,\n"
        f"    {_ratio('true_positives', 'labelled_alerts')} AS alert_precision,\n"
        f"    {_ratio('true_positives', 'labelled_frauds')} AS recall_at_threshold\n"
        f"FROM {t}\n"
        "GROUP BY model_version, in_training_data"
    )
    drift = (
        f"CREATE OR REPLACE VIEW {view_name(t, 'DRIFT')} AS\n"
        "SELECT\n"
        "    model_version,\n"
        "    batch_id,\n"
        "    in_training_data,\n"
        "    MIN(metric_date) AS first_date,\n"
        "    MAX(metric_date) AS last_date,\n"
        "    SUM(claims_scored) AS claims_scored,\n"
        f"    {_ratio('alerts', 'claims_scored')} AS alert_rate,\n"
        # batch-level columns hold one value per (model version, batch): MAX picks it
        "    MAX(batch_max_feature_psi) AS max_feature_psi,\n"
        "    MAX(batch_most_drifted_feature) AS most_drifted_feature,\n"
        "    MAX(batch_score_psi) AS score_psi,\n"
        "    MAX(batch_average_precision) AS average_precision,\n"
        "    MAX(batch_precision_at_k) AS precision_at_k,\n"
        "    MAX(computed_at) AS computed_at\n"
        f"FROM {t}\n"
        "GROUP BY model_version, batch_id, in_training_data"
    )
    return [daily, by_model, drift]


def schema_statements(table: str = DEFAULT_TABLE) -> list[str]:
    """Everything a warehouse needs for the replica: the table, then its views."""
    return [create_table_sql(table), *create_views_sql(table)]


def schema_sql(table: str = DEFAULT_TABLE) -> str:
    """The text of ``infra/snowflake/schema.sql``: the statements, documented."""
    width = max(len(n) for n, _ in METRICS_COLUMNS)
    lines = [
        "-- The BI replica of model_metrics, for Snowflake (and the local DuckDB warehouse).",
        "-- GENERATED by fraud_core/warehouse.py: do not edit. Regenerate with",
        "--   .venv/bin/python -m fraud_core.warehouse > infra/snowflake/schema.sql",
        "-- The snowflake_metrics_replica asset runs these same statements before each MERGE",
        "-- (with SNOWFLAKE_TABLE in place of the default name), so applying this file by hand",
        "-- is optional. Views are CREATE OR REPLACE: grant the BI role SELECT ON FUTURE VIEWS.",
        "--",
        f"-- One row per ({', '.join(METRICS_KEY)}). Columns:",
        *(f"--   {n:<{width}} {METRICS_DOCS[n]}" for n in column_names()),
        "-- batch_* columns and in_training_data are measured on the whole batch and repeat on",
        "-- each of its days. Views (rates are ratios of summed counts, never averages):",
        *(f"--   {view_name(table, suffix)}: {meaning}" for suffix, meaning in VIEWS.items()),
        "",
    ]
    for statement in schema_statements(table):
        lines += [statement + ";", ""]
    return "\n".join(lines)


def check_metrics_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame in table column order, after checking it can be upserted.

    Raises:
        ValueError: a declared column is missing, an unknown column is present, the frame is
            empty, or the natural key has nulls or duplicates (a MERGE would be ambiguous).
    """
    names = column_names()
    missing = [n for n in names if n not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in names]
    if missing or extra:
        raise ValueError(
            "the metrics frame does not match METRICS_COLUMNS: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    if frame.empty:
        raise ValueError("the metrics frame has no rows: nothing to replicate")
    key = list(METRICS_KEY)
    null_keys = frame[key].isna().any(axis=1)
    if null_keys.any():
        raise ValueError(f"{int(null_keys.sum())} metric rows have a null in the key {key}")
    dupes = frame.duplicated(key)
    if dupes.any():
        first = frame.loc[dupes, key].iloc[0].to_dict()
        raise ValueError(f"{int(dupes.sum())} metric rows repeat a key {key}, e.g. {first}")
    return frame[names]


if __name__ == "__main__":
    sys.stdout.write(schema_sql())
