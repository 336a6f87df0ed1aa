"""Warehouses for the BI replica of model_metrics: DuckDB locally (Snowflake in prod: issue 6)."""

import os

import dagster as dg
import pandas as pd

from fraud_core.warehouse import DEFAULT_TABLE, check_identifier, create_table_sql, merge_sql


class DuckDBWarehouse(dg.ConfigurableResource):
    """An embedded DuckDB file: the local stand-in for Snowflake, same table, same MERGE."""

    database: str
    table: str = DEFAULT_TABLE

    def replicate_metrics(self, metrics: pd.DataFrame) -> int:
        """Upsert the metrics table in one transaction; returns the table's row count."""
        import duckdb

        table = check_identifier(self.table)
        os.makedirs(os.path.dirname(os.path.abspath(self.database)), exist_ok=True)
        con = duckdb.connect(self.database)
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(create_table_sql(table))
            con.register("staging_frame", metrics)
            con.execute("CREATE TEMP TABLE metrics_staging AS SELECT * FROM staging_frame")
            con.execute(merge_sql(table, "metrics_staging"))
            con.execute("DROP TABLE metrics_staging")
            con.execute("COMMIT")
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return int(row[0]) if row else 0

    def location(self) -> str:
        return f"duckdb://{os.path.abspath(self.database)}#{self.table}"
