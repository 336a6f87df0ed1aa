"""The BI table of model metrics: one declared schema and an idempotent MERGE statement."""

from __future__ import annotations

import re

# (column, SQL type) in table order; the natural key comes first.
METRICS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model_version", "VARCHAR"),
    ("batch_id", "VARCHAR"),
    ("first_claim_date", "DATE"),
    ("last_claim_date", "DATE"),
    ("claims_scored", "BIGINT"),
    ("alerts", "BIGINT"),
    ("alert_rate", "DOUBLE"),
    ("labelled_claims", "BIGINT"),
    ("fraud_rate", "DOUBLE"),
    ("average_precision", "DOUBLE"),
    ("precision_at_k", "DOUBLE"),
    ("recall_at_threshold", "DOUBLE"),
    ("max_feature_psi", "DOUBLE"),
    ("most_drifted_feature", "VARCHAR"),
    ("score_psi", "DOUBLE"),
    ("in_training_data", "BOOLEAN"),
    ("computed_at", "TIMESTAMP"),
)
METRICS_KEY: tuple[str, ...] = ("model_version", "batch_id")
DEFAULT_TABLE = "FRAUD_MODEL_METRICS"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")


def check_identifier(name: str) -> str:
    """Table names reach SQL as text: allow plain identifiers only."""
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits, '_' or '$', starting with a "
            "letter or '_'"
        )
    return name


def create_table_sql(table: str) -> str:
    cols = ",\n    ".join(f"{name} {sql_type}" for name, sql_type in METRICS_COLUMNS)
    key = ", ".join(METRICS_KEY)
    name = check_identifier(table)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {cols},\n    PRIMARY KEY ({key})\n)"


def merge_sql(table: str, staging: str) -> str:
    """Upsert ``staging`` into ``table`` on the natural key: rerunning changes nothing."""
    t, s = check_identifier(table), check_identifier(staging)
    on = " AND ".join(f"t.{k} = s.{k}" for k in METRICS_KEY)
    names = [name for name, _ in METRICS_COLUMNS]
    updates = ", ".join(f"{n} = s.{n}" for n in names if n not in METRICS_KEY)
    return (
        f"MERGE INTO {t} AS t USING {s} AS s ON {on} "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
        f"VALUES ({', '.join('s.' + n for n in names)})"
    )
