"""Warehouses for the BI replica of model_metrics: one interface, DuckDB locally, Snowflake in prod.

Both run the same SQL from ``fraud_core.warehouse`` (table, views, staging, MERGE):

1. check the rows (declared columns, a unique non-null natural key) and the configuration,
   before any connection;
2. bulk-load the rows into a session-temporary staging table (DuckDB: a registered DataFrame,
   one ``INSERT ... SELECT``; Snowflake: ``write_pandas``, a PUT + COPY INTO);
3. create the table if needed, check its columns, (re)create the BI views;
4. in one transaction: count what will change, ``MERGE`` on the natural key, count the table.

Any failure rolls back and leaves the table as it was. On DuckDB everything, DDL included, is
one transaction. On Snowflake DDL commits by itself (the table and views may be created even
if the MERGE then fails; they hold nothing until it succeeds). The number of statements does
not grow with the number of rows.

Credentials come from ``dg.EnvVar`` (see ``SnowflakeWarehouse.from_env``) and never appear in
metadata, logs or error messages: errors from the connector are re-raised with every secret
redacted.
"""

import abc
import base64
import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
from pydantic import Field

from fraud_core.warehouse import (
    DEFAULT_TABLE,
    change_counts_sql,
    check_identifier,
    check_metrics_frame,
    column_names,
    columns_probe_sql,
    count_sql,
    create_staging_sql,
    create_table_sql,
    create_views_sql,
    insert_staging_sql,
    merge_sql,
    staging_name,
)

if TYPE_CHECKING:  # imported when used: dagster_snowflake is slow to import
    from dagster_snowflake import SnowflakeResource


class WarehouseConfigError(ValueError):
    """The warehouse is not (fully) configured; raised before any connection is attempted."""


class WarehouseConnectionError(RuntimeError):
    """The warehouse could not be reached or refused the credentials; nothing was written."""


class WarehouseWriteError(RuntimeError):
    """Replication failed after connecting; the transaction was rolled back."""


@dataclass(frozen=True)
class ReplicationResult:
    """What one replication did."""

    table_rows: int  # rows in the warehouse table afterwards
    staged: int  # rows sent
    inserted: int  # new natural keys
    updated: int  # existing keys whose values changed
    statements: int  # SQL statements sent (a driver bulk load counts as one)

    @property
    def unchanged(self) -> int:
        return self.staged - self.inserted - self.updated

    def metadata(self) -> dict[str, int]:
        return {
            "dagster/row_count": self.table_rows,
            "rows_staged": self.staged,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_unchanged": self.unchanged,
            "sql_statements": self.statements,
        }


class _Statements:
    """Sends SQL through one DB-API cursor (or DuckDB connection) and counts what it sends."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.count = 0

    def run(self, sql: str) -> Any:
        self.count += 1
        self.cursor.execute(sql)
        return self.cursor

    def one(self, sql: str) -> tuple[Any, ...]:
        row = self.run(sql).fetchone()
        if row is None:
            raise RuntimeError(f"no row from: {sql[:80]}")
        return tuple(row)

    def sent_by_driver(self, statements: int = 1) -> None:
        """Count statements a driver call sends on our behalf (write_pandas, autocommit)."""
        self.count += statements


def _ensure_schema(sql: _Statements, table: str) -> None:
    """The table (if missing), a check that its columns are the declared ones, the views."""
    sql.run(create_table_sql(table))
    cursor = sql.run(columns_probe_sql(table))
    have = {str(d[0]).lower() for d in cursor.description}
    cursor.fetchall()
    want = set(column_names())
    if have != want:
        raise WarehouseWriteError(
            f"table {table} does not have the declared columns (missing: "
            f"{sorted(want - have) or 'none'}; unexpected: {sorted(have - want) or 'none'}). "
            "It was probably created by an older version: it is a replica, so drop it and "
            "replicate again (the table and its views are recreated from model_metrics)"
        )
    for view in create_views_sql(table):
        sql.run(view)


def _upsert(sql: _Statements, table: str, staging: str) -> tuple[int, int, int, int]:
    """Inside the caller's transaction: (staged, inserted, updated, table rows)."""
    staged, inserted, updated = (int(v) for v in sql.one(change_counts_sql(table, staging)))
    sql.run(merge_sql(table, staging))
    (rows,) = sql.one(count_sql(table))
    return staged, inserted, updated, int(rows)


class Warehouse(dg.ConfigurableResource):
    """Where the BI replica of model_metrics lives: one table and its views, kept by MERGE."""

    table: str = Field(default=DEFAULT_TABLE, description="the metrics table (an identifier)")

    @abc.abstractmethod
    def replicate_metrics(self, metrics: pd.DataFrame) -> ReplicationResult:
        """Upsert ``metrics`` (the model_metrics table) on its natural key, in a transaction.

        Raises:
            ValueError: the rows do not fit the declared schema (nothing connects).
            WarehouseConfigError: the configuration is incomplete (nothing connects).
            WarehouseConnectionError: the warehouse cannot be reached (nothing written).
            WarehouseWriteError: replication failed and was rolled back.
        """

    @abc.abstractmethod
    def location(self) -> str:
        """Where the table is, for metadata and messages (never with credentials)."""

    def config_problems(self) -> list[str]:
        """What is missing or invalid in the configuration (empty when usable)."""
        try:
            check_identifier(self.table)
        except ValueError as exc:
            return [str(exc)]
        return []

    def check_config(self) -> None:
        """Raise ``WarehouseConfigError`` naming every problem; never connects."""
        problems = self.config_problems()
        if problems:
            raise WarehouseConfigError(
                f"{type(self).__name__} is not usable: " + "; ".join(problems)
            )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A run that needs the warehouse fails at resource initialisation, before any asset.
        self.check_config()


class DuckDBWarehouse(Warehouse):
    """An embedded DuckDB file: the local stand-in for Snowflake, same table, views and MERGE."""

    database: str = Field(description="path of the DuckDB file (created if missing)")

    def location(self) -> str:
        return f"duckdb://{os.path.abspath(self.database)}#{self.table}"

    def replicate_metrics(self, metrics: pd.DataFrame) -> ReplicationResult:
        import duckdb

        frame = check_metrics_frame(metrics)
        self.check_config()
        table, staging = self.table, staging_name(self.table)
        os.makedirs(os.path.dirname(os.path.abspath(self.database)), exist_ok=True)
        try:
            con = duckdb.connect(self.database)
        except duckdb.Error as exc:
            raise WarehouseConnectionError(
                f"could not open {self.location()}: {type(exc).__name__}: {exc}"
            ) from exc
        sql = _Statements(con)
        source = "metrics_frame"
        try:
            sql.run("BEGIN TRANSACTION")
            sql.run(create_staging_sql(staging))
            con.register(source, frame)
            sql.run(insert_staging_sql(staging, source))
            _ensure_schema(sql, table)
            staged, inserted, updated, rows = _upsert(sql, table, staging)
            sql.run(f"DROP TABLE {staging}")
            sql.run("COMMIT")
        except Exception as exc:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            if isinstance(exc, WarehouseWriteError):
                raise
            raise WarehouseWriteError(
                f"replicating {len(frame)} metric rows into {self.location()} failed and was "
                f"rolled back (the table is unchanged): {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            con.close()
        return ReplicationResult(rows, staged, inserted, updated, sql.count)


# Setting -> environment variable. Secrets are marked: they are redacted from every message.
SNOWFLAKE_ENV: dict[str, str] = {
    "account": "SNOWFLAKE_ACCOUNT",
    "user": "SNOWFLAKE_USER",
    "password": "SNOWFLAKE_PASSWORD",
    "warehouse": "SNOWFLAKE_WAREHOUSE",
    "database": "SNOWFLAKE_DATABASE",
    "schema_": "SNOWFLAKE_SCHEMA",
    "table": "SNOWFLAKE_TABLE",
    "role": "SNOWFLAKE_ROLE",
    "private_key": "SNOWFLAKE_PRIVATE_KEY",
    "private_key_path": "SNOWFLAKE_PRIVATE_KEY_PATH",
    "private_key_password": "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
}
_REQUIRED = ("account", "user", "warehouse", "database", "schema_")
_AUTH = ("password", "private_key", "private_key_path")
_SECRETS = ("password", "private_key", "private_key_password")


def _snowflake_problems(values: Mapping[str, Any]) -> list[str]:
    """Problems with Snowflake settings (``SNOWFLAKE_ENV`` keys; blank counts as unset)."""
    missing = [SNOWFLAKE_ENV[k] for k in _REQUIRED if not values.get(k)]
    auth = [k for k in _AUTH if values.get(k)]
    if not auth:
        missing.append(
            "SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY / SNOWFLAKE_PRIVATE_KEY_PATH for "
            "key-pair authentication)"
        )
    problems = [f"missing {', '.join(missing)}"] if missing else []
    if len(auth) > 1:
        problems.append(
            f"set only one of {', '.join(SNOWFLAKE_ENV[k] for k in auth)} (password or key pair)"
        )
    if values.get("private_key_password") and not {"private_key", "private_key_path"} & set(auth):
        problems.append("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is set but no private key is")
    table = values.get("table") or DEFAULT_TABLE
    try:
        check_identifier(table)
    except ValueError as exc:
        problems.append(f"SNOWFLAKE_TABLE: {exc}")
    return problems


class SnowflakeWarehouse(Warehouse):
    """The metrics table in Snowflake, through dagster-snowflake's ``SnowflakeResource``.

    Build it with ``SnowflakeWarehouse.from_env(env)``: every setting
    is a ``dg.EnvVar``, so values are read when a run starts and never stored in the
    Definitions. Authentication is a password or a key pair (``private_key`` as PEM text, or
    ``private_key_path``; ``private_key_password`` when the key is encrypted).
    """

    account: str | None = Field(default=None, description="account identifier (orgname-acct)")
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    private_key: str | None = Field(default=None, repr=False, description="PEM (or base64)")
    private_key_path: str | None = None
    private_key_password: str | None = Field(default=None, repr=False)
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    role: str | None = None
    login_timeout: int = Field(default=60, description="seconds to connect before giving up")
    connection_args: dict[str, Any] | None = Field(
        default=None, description="extra snowflake.connector.connect arguments (host, port...)"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> "SnowflakeWarehouse":
        """A warehouse configured from ``SNOWFLAKE_*`` variables through ``dg.EnvVar``.

        Args:
            env: the environment to check (the variables are read again when a run starts).
            options: other settings, e.g. ``login_timeout`` or ``connection_args``.

        Raises:
            WarehouseConfigError: naming every missing or invalid variable (nothing connects).
        """
        present = {k: env.get(var) or None for k, var in SNOWFLAKE_ENV.items()}
        problems = _snowflake_problems(present)
        if problems:
            raise WarehouseConfigError(
                "Snowflake warehouse is not configured: " + "; ".join(problems)
            )
        settings: dict[str, Any] = {
            ("schema" if k == "schema_" else k): dg.EnvVar(SNOWFLAKE_ENV[k])
            for k, v in present.items()
            if v is not None
        }
        return cls(**settings, **options)

    def config_problems(self) -> list[str]:
        values = {k: getattr(self, k) for k in SNOWFLAKE_ENV}
        unresolved = [SNOWFLAKE_ENV[k] for k, v in values.items() if isinstance(v, dg.EnvVar)]
        if unresolved:  # used outside a run: Dagster resolves EnvVar only when a run starts
            return [
                f"{', '.join(unresolved)} are unresolved dg.EnvVar settings: use the resource "
                "in a Dagster run, or call process_config_and_initialize() on it first"
            ]
        return _snowflake_problems(values)

    def check_config(self) -> None:
        super().check_config()
        self.check_private_key()

    def location(self) -> str:
        return f"snowflake://{self.account}/{self.database}/{self.schema_}/{self.table}"

    def _secrets(self) -> list[str]:
        return [str(v) for k in _SECRETS if (v := getattr(self, k))]

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
            # a PEM key may surface one line at a time
            for line in secret.splitlines():
                if len(line) >= 16:
                    text = text.replace(line, "***")
        return text

    def snowflake_resource(self) -> "SnowflakeResource":
        """The dagster-snowflake resource for these settings (nothing connects yet)."""
        from dagster_snowflake import SnowflakeResource

        settings: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "private_key": self.private_key,
            "private_key_path": self.private_key_path,
            "private_key_password": self.private_key_password,
            "warehouse": self.warehouse,
            "database": self.database,
            "schema": self.schema_,
            "role": self.role,
            "login_timeout": self.login_timeout,
            "additional_snowflake_connection_args": self.connection_args,
        }
        return SnowflakeResource(**{k: v for k, v in settings.items() if v is not None})

    def check_private_key(self) -> None:
        """Load the private key (if key-pair auth is configured) before any connection, so a
        wrong passphrase or an unreadable file is a configuration error that says so."""
        if not (self.private_key or self.private_key_path):
            return
        from cryptography.hazmat.primitives import serialization

        source = "SNOWFLAKE_PRIVATE_KEY_PATH" if self.private_key_path else "SNOWFLAKE_PRIVATE_KEY"
        try:
            if self.private_key_path:
                with open(self.private_key_path, "rb") as handle:
                    data = handle.read()
            else:
                data = str(self.private_key).encode()
        except OSError as exc:
            raise WarehouseConfigError(
                f"{source}: cannot read the private key file: {exc.strerror}"
            ) from None
        passphrase = self.private_key_password.encode() if self.private_key_password else None
        candidates = [data]
        with contextlib.suppress(ValueError):
            candidates.append(base64.b64decode(data, validate=False))  # as dagster accepts it
        for candidate in candidates:
            try:
                serialization.load_pem_private_key(candidate, password=passphrase)
                return
            except (TypeError, ValueError):
                continue
        raise WarehouseConfigError(
            f"{source} could not be loaded as a PEM private key: check the key and "
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE (set it if and only if the key is encrypted)"
        )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection; connection errors become ``WarehouseConnectionError``, redacted."""
        self.check_private_key()
        try:
            resource = self.snowflake_resource()
        except Exception as exc:
            raise WarehouseConfigError(self._redact(f"invalid Snowflake settings: {exc}")) from None
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(resource.get_connection())
            except Exception as exc:
                message = self._redact(f"{type(exc).__name__}: {exc}")
                raise WarehouseConnectionError(
                    f"could not connect to Snowflake account {self.account!r} as user "
                    f"{self.user!r}: {message}. Check SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER and the "
                    "password or key, and that the account is reachable; nothing was written"
                ) from None
            yield conn

    def replicate_metrics(self, metrics: pd.DataFrame) -> ReplicationResult:
        frame = check_metrics_frame(metrics)
        self.check_config()
        table, staging = self.table, staging_name(self.table)
        with self._connection() as conn:
            sql = _Statements(conn.cursor())
            try:
                sql.run(create_staging_sql(staging))
                _write_pandas(conn, frame, staging)
                sql.sent_by_driver()
                _ensure_schema(sql, table)  # DDL: Snowflake commits each statement by itself
                conn.autocommit(False)
                sql.sent_by_driver()
                staged, inserted, updated, rows = _upsert(sql, table, staging)
                conn.commit()
                sql.sent_by_driver()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    conn.rollback()
                with contextlib.suppress(Exception):
                    conn.close()
                if isinstance(exc, WarehouseWriteError):
                    raise
                raise WarehouseWriteError(
                    self._redact(
                        f"replicating {len(frame)} metric rows into {self.location()} failed "
                        f"and was rolled back (the table's rows are unchanged): "
                        f"{type(exc).__name__}: {exc}"
                    )
                ) from None
        return ReplicationResult(rows, staged, inserted, updated, sql.count)


def _write_pandas(conn: Any, frame: pd.DataFrame, table: str) -> None:
    """Bulk-load ``frame`` into an existing table (PUT + COPY INTO, no per-row statements).

    Column names are upper-cased and quoted: they then match the table's unquoted (upper-case)
    identifiers and the Parquet keys exactly.
    """
    from snowflake.connector import pandas_tools  # looked up per call: fakesnow patches it

    upper = frame.rename(columns=str.upper)
    ok, _chunks, loaded, _ = pandas_tools.write_pandas(
        conn, upper, table.upper(), auto_create_table=False, use_logical_type=True
    )
    if not ok or loaded != len(frame):
        raise RuntimeError(f"write_pandas loaded {loaded} of {len(frame)} rows into {table}")


__all__ = [
    "DuckDBWarehouse",
    "ReplicationResult",
    "SNOWFLAKE_ENV",
    "SnowflakeWarehouse",
    "Warehouse",
    "WarehouseConfigError",
    "WarehouseConnectionError",
    "WarehouseWriteError",
]
