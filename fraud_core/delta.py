"""The lakehouse's Delta tables, written and read with delta-rs (``deltalake``: no Spark, no JVM).

Which tables exist, where, and how each is written is :data:`fraud_core.layout.TABLES`; this
module is how: on a local path, ``s3://`` and ``abfss://`` / ``az://`` alike.

* **A batch is replaced in one commit.** A batch's rows are written with ``mode="overwrite"``
  and the predicate ``batch_id = 'ID'``: the commit removes the batch's old files and adds the
  new ones, so a rerun never appends twice and a reader sees the old batch or the new one.
  Writers of different batches commit side by side: delta-rs retries a commit against newer
  versions when they do not conflict, and a commit that does conflict (two writers creating
  the table at once) is redone here from the data, up to :data:`COMMIT_ATTEMPTS` times.
* **The declared schema is enforced before anything is written.** A table's columns are those
  it was created with (a quarantine table takes the new columns of rows as received). A write
  with an unknown column, or a value that does not convert to the declared type, is refused
  with :class:`LakehouseError` naming the table, the columns and what to fix; a column the
  write lacks is null (every Delta column is nullable).
* **A damaged log fails loudly.** A table whose ``_delta_log`` cannot be read raises
  :class:`LakehouseError` with the table and what to do; nothing is written over it.
* **Readers prune.** :func:`dataset` is ``DeltaTable.to_pyarrow_dataset`` with a file-pruning
  predicate: on the batch (a partition) or on the per-file statistics the log keeps
  (``claim_date`` of the claims history), so reading one batch or a look-back window never
  reads the whole table. ``version`` reads a table as it was (time travel).

Credentials are never passed here: delta-rs reads the AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ...) like s3fs does, and :func:`storage_options` derives the Azure
options from ``AZURE_STORAGE_CONNECTION_STRING`` (account name and key), the variable adlfs
reads. S3 commits use conditional writes (``If-None-Match``, which S3 and moto 5.2 honour):
no locking table. For Azurite (a connection string on a loopback address) the options are
``use_emulator`` and ``allow_http``, and the emulator's address goes to the one place delta-rs
reads it from, the ``AZURITE_BLOB_STORAGE_URL`` environment variable; an ``endpoint`` option
is never given with Azurite (delta-rs then addresses the account wrongly).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema, write_deltalake
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    DeltaProtocolError,
    SchemaMismatchError,
    TableNotFoundError,
)
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from fraud_core.layout import BATCH_COLUMN, Table

log = logging.getLogger(__name__)

# A commit that conflicts (two writers creating a table, or replacing the same batch at once)
# is redone from its data this many times in all, after a short pause.
COMMIT_ATTEMPTS = 8
_RETRY_PAUSE_SECONDS = 0.05
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class LakehouseError(RuntimeError):
    """Something in the lakehouse is missing, unreadable or refused; the message says what,
    where, and what to do."""


# --- stores ------------------------------------------------------------------------------------
def _scheme(uri: str) -> str:
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else "file"


def storage_options(uri: str) -> dict[str, str]:
    """delta-rs options for the store of ``uri`` (no secrets from here: see the module doc).

    S3 with an ``http://`` endpoint (moto, MinIO) needs ``allow_http``; Azure takes the account
    from ``AZURE_STORAGE_CONNECTION_STRING`` when it is set, and an emulator's (Azurite)
    through ``use_emulator``.
    """
    scheme = _scheme(uri)
    options: dict[str, str] = {}
    if scheme in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                options["allow_http"] = "true"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["aws_region"] = region
    elif scheme in ("abfss", "abfs", "az", "azure"):
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if connection:
            parts = dict(
                p.split("=", 1) for p in connection.strip().strip(";").split(";") if "=" in p
            )
            if "AccountName" in parts:
                options["account_name"] = parts["AccountName"]
            if "AccountKey" in parts:
                options["account_key"] = parts["AccountKey"]
            blob = urlparse(parts.get("BlobEndpoint", ""))
            if parts.get("UseDevelopmentStorage", "").lower() == "true" or (
                blob.hostname in LOCAL_HOSTS
            ):
                options["use_emulator"] = "true"
                options["allow_http"] = "true"
                if blob.hostname:
                    # delta-rs reads the emulator's address from here only (see the module doc)
                    os.environ["AZURITE_BLOB_STORAGE_URL"] = f"{blob.scheme}://{blob.netloc}"
    return options


# --- opening -----------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    """An error of delta-rs without the backtrace it may carry."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _damaged(spec: Table, uri: str, exc: BaseException) -> LakehouseError:
    return LakehouseError(
        f"table {spec.name} ({uri}): its Delta log (_delta_log) cannot be read: "
        f"{_first_line(exc)}. "
        "Nothing was written. Restore _delta_log from a backup or the store's object versions; "
        "if the table can be rebuilt, move its folder aside and rematerialize its batches"
    )


def open_table(
    uri: str, options: Mapping[str, str], spec: Table, version: int | None = None
) -> DeltaTable | None:
    """The table at ``uri`` (at ``version`` when given), or None when there is none yet.

    Raises:
        LakehouseError: the log is damaged, or the table has no such version.
    """
    try:
        return DeltaTable(uri, version=version, storage_options=dict(options))
    except TableNotFoundError:
        if version is not None:
            raise LakehouseError(
                f"table {spec.name} ({uri}) does not exist, so not at version {version}"
            ) from None
        return None
    except (DeltaError, DeltaProtocolError, OSError, ValueError) as exc:
        if version is not None and "version" in str(exc).lower():
            raise LakehouseError(
                f"table {spec.name} ({uri}) has no version {version} (or it was vacuumed): {exc}"
            ) from exc
        raise _damaged(spec, uri, exc) from exc


def refresh(
    table: DeltaTable | None, uri: str, options: Mapping[str, str], spec: Table
) -> DeltaTable | None:
    """``table`` (opened before) brought up to the latest version by reading only the commits
    since; the table opened anew when there is none.

    Raises:
        LakehouseError: the log is damaged.
    """
    if table is None:
        return open_table(uri, options, spec)
    try:
        table.update_incremental()
    except (DeltaError, DeltaProtocolError, OSError, ValueError) as exc:
        raise _damaged(spec, uri, exc) from exc
    return table


def table_version(uri: str, options: Mapping[str, str], spec: Table) -> int | None:
    """The table's current version (None: no table yet)."""
    table = open_table(uri, options, spec)
    return None if table is None else table.version()


# --- schemas -----------------------------------------------------------------------------------
def _arrow_schema(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def _plain(schema: pa.Schema) -> pa.Schema:
    """Columns of data as delta-rs writes them: views and large types as the plain types,
    untyped (all-null) columns as text."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_null(t) or pa.types.is_string_view(t) or pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            t = pa.binary()
        elif pa.types.is_timestamp(t) and t.unit == "ns":
            t = pa.timestamp("us", t.tz)
        elif pa.types.is_dictionary(t):
            t = t.value_type
        elif pa.types.is_unsigned_integer(t):
            # Delta has signed integers only: a uint64 (a hash) keeps its bits as an int64
            t = pa.int64() if t.bit_width == 64 else pa.int32() if t.bit_width < 32 else pa.int64()
        fields.append(pa.field(f.name, t, nullable=True))
    return pa.schema(fields)


def target_schema(
    spec: Table, uri: str, declared: pa.Schema | None, incoming: pa.Schema, what: str
) -> tuple[pa.Schema, bool]:
    """The schema ``incoming`` data is written with, and whether the table gains columns.

    A new table takes the data's columns. An existing one keeps its declared columns, in its
    order; columns the data lacks are null; new columns are added only to a table with
    ``open_columns`` (rows as received).

    Raises:
        LakehouseError: the data has a column the table does not declare (and cannot take).
    """
    plain = _plain(incoming)
    if declared is None:
        return plain, False
    known = set(declared.names)
    extra = [f for f in plain if f.name not in known]
    if extra and not spec.open_columns:
        listed = ", ".join(f"{f.name} ({f.type})" for f in extra)
        raise LakehouseError(
            f"table {spec.name} ({uri}) does not declare column(s) {listed} that {what} has; "
            f"its columns are {', '.join(declared.names)}. Nothing was written. Write the "
            "declared columns, or, if the table's schema must change, migrate it (write the "
            "table anew under another folder and move it into place)"
        )
    return pa.schema([*declared, *extra]), bool(extra)


def conform(
    batch: pa.RecordBatch, schema: pa.Schema, spec: Table, uri: str, what: str
) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns and types (nulls for the columns it lacks).

    Raises:
        LakehouseError: a column's values do not convert to its declared type.
    """
    columns = []
    for field in schema:
        if field.name not in batch.schema.names:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(field.name)
        if column.type == field.type:
            columns.append(column)
            continue
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if pa.types.is_uint64(column.type) and pa.types.is_int64(field.type):
            columns.append(column.view(pa.int64()))  # the same 64 bits (see _plain)
            continue
        try:
            columns.append(column.cast(field.type, safe=not pa.types.is_timestamp(field.type)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise LakehouseError(
                f"table {spec.name} ({uri}) declares column {field.name} as {field.type}; "
                f"{what} has it as {column.type}, which does not convert ({exc}). Nothing was "
                "written. Fix the data's type (the producing code or the feed contract), or "
                "migrate the table if the declared type must change"
            ) from exc
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# --- writing -----------------------------------------------------------------------------------
def configuration(spec: Table) -> dict[str, str | None] | None:
    """The Delta table properties a table is created with (its statistics columns)."""
    if spec.stats_columns is None:
        return None
    if not spec.stats_columns:
        return {"delta.dataSkippingNumIndexedCols": "0"}
    return {"delta.dataSkippingStatsColumns": ",".join(spec.stats_columns)}


# Data to write, given again for each attempt: a function returning a fresh reader.
Source = Callable[[], pa.RecordBatchReader]


def source_of(data: pa.Table) -> Source:
    """A :data:`Source` over a table in memory."""
    return lambda: pa.RecordBatchReader.from_batches(data.schema, data.to_batches())


def write(
    uri: str,
    options: Mapping[str, str],
    spec: Table,
    source: Source,
    batch_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    replace: str | None = None,
    table: DeltaTable | None = None,
) -> DeltaTable:
    """Replace batch ``batch_id`` of the table (for a table not written by batch: the rows
    ``replace`` selects, SQL on its partition column; the whole table when None) with
    ``source``'s rows, in one commit; return the table at its new version.

    ``table``: the table opened already (it is brought up to date, then written through, and
    returned): saves reading its log again.

    Raises:
        LakehouseError: the data differs from the declared schema, or the log is damaged.
    """
    if spec.by_batch != (batch_id is not None):
        raise ValueError(f"table {spec.name} is written {'by batch' if spec.by_batch else 'whole'}")
    if replace is not None and spec.by_batch:
        raise ValueError(f"table {spec.name} is written by batch: its batch is what is replaced")
    what = f"batch {batch_id!r}" if batch_id is not None else "the data"
    predicate = f"{BATCH_COLUMN} = '{batch_id}'" if batch_id is not None else replace
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        current = refresh(table, uri, options, spec) if attempt == 1 else None
        if current is None:
            current = open_table(uri, options, spec)
        declared = None if current is None else _arrow_schema(current)
        reader = source()
        incoming = reader.schema
        if batch_id is not None and BATCH_COLUMN in incoming.names:
            incoming = incoming.remove(incoming.get_field_index(BATCH_COLUMN))
        if batch_id is not None:
            incoming = incoming.append(pa.field(BATCH_COLUMN, pa.string()))
        schema, grows = target_schema(spec, uri, declared, incoming, what)
        refused: list[LakehouseError] = []  # raised inside delta-rs's read of the stream
        stream = pa.RecordBatchReader.from_batches(
            schema, _batches(reader, schema, spec, uri, what, batch_id, refused)
        )
        commit = CommitProperties(
            custom_metadata={"fraud.table": spec.name, **dict(metadata or {})}
        )
        try:
            if _writes_files(spec, batch_id, grows):
                assert batch_id is not None
                if current is not None and spec.partitioned:  # the history shows the batch
                    replaced = {"mode": "Overwrite", "predicate": predicate}
                    commit = CommitProperties(
                        custom_metadata={
                            **(commit.custom_metadata or {}),
                            "operationParameters": replaced,
                        }
                    )
                current = _write_file(uri, options, spec, current, stream, batch_id, commit)
                return current
            write_deltalake(
                uri if current is None else current,
                stream,
                mode="overwrite",
                predicate=predicate,
                partition_by=[spec.partition_column] if spec.partition_column else None,
                schema_mode="merge" if grows else None,
                storage_options=dict(options),
                description=spec.description if current is None else None,
                name=spec.name if current is None else None,
                configuration=configuration(spec) if current is None else None,
                commit_properties=commit,
            )
        except CommitFailedError as exc:
            if attempt == COMMIT_ATTEMPTS:
                raise LakehouseError(
                    f"table {spec.name} ({uri}): {what} could not be committed after "
                    f"{attempt} attempts (other writers kept committing first): {exc}"
                ) from exc
            log.info("%s of %s: commit conflict, attempt %d: %s", what, spec.name, attempt, exc)
            time.sleep(_RETRY_PAUSE_SECONDS * attempt)
            continue
        except (DeltaError, SchemaMismatchError, LakehouseError) as exc:
            if refused:  # a value did not convert: nothing was committed
                raise refused[0] from None
            if not isinstance(exc, SchemaMismatchError):
                if _exists(exc):  # another writer created the table first: write into it
                    continue
                raise
            raise LakehouseError(
                f"table {spec.name} ({uri}) refused {what}: {_first_line(exc)}. Nothing was "
                "written. Write "
                "the declared columns and types, or migrate the table"
            ) from exc
        if current is None:
            current = open_table(uri, options, spec)
            assert current is not None
        return current
    raise AssertionError("unreachable")


def _writes_files(spec: Table, batch_id: str | None, grows: bool) -> bool:
    """Whether a write goes through :func:`_write_file`: a batch of a table that declares its
    statistics columns, whose columns stay as they are (on every store)."""
    return batch_id is not None and spec.stats_columns is not None and not grows


def _table_files(uri: str, options: Mapping[str, str]) -> pafs.FileSystem:
    """A table's folder as a pyarrow file system, paths relative to it: the local disk (the
    folder made when missing: a new table's), or the object store through delta-rs's own
    handler (the options its commits use)."""
    if _scheme(uri) == "file":
        root = os.path.abspath(urlparse(uri).path if uri.startswith("file://") else uri)
        os.makedirs(root, exist_ok=True)
        return pafs.SubTreeFileSystem(root, pafs.LocalFileSystem())
    return pafs.PyFileSystem(DeltaStorageHandler(uri, dict(options)))


def _exists(exc: BaseException) -> bool:
    return "already exists" in str(exc).lower()


def _write_file(
    uri: str,
    options: Mapping[str, str],
    spec: Table,
    current: DeltaTable | None,
    stream: pa.RecordBatchReader,
    batch_id: str,
    commit: CommitProperties,
) -> DeltaTable:
    """Replace batch ``batch_id`` of a table with ``stream``'s rows in one commit, the Parquet
    file written by pyarrow (to the local disk or the object store: :func:`_table_files`) and
    committed as a transaction (delta-rs's writer costs about 0.4 s the first time a process
    uses it, and is about twice as slow for a large batch).

    A table with a folder per batch gets the file in the batch's folder, and the commit
    replaces the batch's files (``overwrite`` with its partition filter). A table without
    (a row per batch: the batch lineage) gets one file with the new rows and the other rows of
    the files that may hold the batch (by their statistics), and the commit removes those.
    A new table is created by the commit. The statistics are those delta-rs writes: rows, and
    min/max/nulls of the declared statistics columns. Returns the table at its new version.

    Raises:
        CommitFailedError: another writer committed a conflicting change (the file is gone).
        LakehouseError: a value did not convert to its declared type (nothing was written).
    """
    files = _table_files(uri, options)
    folder = f"{BATCH_COLUMN}={batch_id}" if spec.partitioned else ""
    rel = f"{folder}/part-00000-{uuid.uuid4()}-c000.zstd.parquet".lstrip("/")
    if folder:
        files.create_dir(folder, recursive=True)
    columns = [n for n in stream.schema.names if n != BATCH_COLUMN or not spec.partitioned]
    file_schema = pa.schema([stream.schema.field(n) for n in columns])
    stats = _Stats([c for c in spec.stats_columns or () if c in columns])
    replaced: list[RemoveAction] = []
    try:
        with (
            files.open_output_stream(rel) as sink,
            pq.ParquetWriter(sink, file_schema, compression="zstd") as out,
        ):
            for batch in stream:
                batch = batch.select(columns)
                out.write_batch(batch)
                stats.add(batch)
            if current is not None and not spec.partitioned:
                replaced = _rewrite_batch_rows(current, files, batch_id, file_schema, out, stats)
        add = AddAction(
            rel,
            files.get_file_info(rel).size,
            {BATCH_COLUMN: batch_id} if spec.partitioned else {},
            int(time.time() * 1000),
            True,
            stats.json(),
        )
        if current is None:
            create_table_with_add_actions(
                uri,
                Schema.from_arrow(stream.schema),
                [add],
                mode="error",
                partition_by=[BATCH_COLUMN] if spec.partitioned else None,
                name=spec.name,
                description=spec.description,
                configuration=configuration(spec),
                storage_options=dict(options),
                commit_properties=commit,
            )
            table = open_table(uri, options, spec)
            assert table is not None
            return table
        if spec.partitioned:
            current.create_write_transaction(
                [add],
                mode="overwrite",
                schema=stream.schema,
                partition_by=[BATCH_COLUMN],
                partition_filters=[(BATCH_COLUMN, "=", batch_id)],
                commit_properties=commit,
            )
        else:
            current.create_write_transaction(
                [*replaced, add], mode="append", schema=stream.schema, commit_properties=commit
            )
        return current
    except BaseException:
        if files.get_file_info(rel).type != pafs.FileType.NotFound:
            files.delete_file(rel)
        raise


def _rewrite_batch_rows(
    table: DeltaTable,
    files: pafs.FileSystem,
    batch_id: str,
    schema: pa.Schema,
    out: pq.ParquetWriter,
    stats: _Stats,
) -> list[RemoveAction]:
    """For a table without batch folders: write to ``out`` the other batches' rows of the
    files that may hold ``batch_id`` (by their ``batch_id`` statistics), and return those
    files' removal."""
    actions = pa.table(table.get_add_actions(flatten=True))
    low, high = f"min.{BATCH_COLUMN}", f"max.{BATCH_COLUMN}"
    removed = []
    now = int(time.time() * 1000)
    for row in actions.to_pylist():
        lo, hi = row.get(low), row.get(high)
        if lo is not None and hi is not None and not lo <= batch_id <= hi:
            continue
        held = pq.read_table(row["path"], filesystem=files)
        others = held.filter(pc.not_equal(held[BATCH_COLUMN], batch_id)).select(schema.names)
        for batch in others.cast(schema).to_batches():
            out.write_batch(batch)
            stats.add(batch)
        removed.append(RemoveAction(row["path"], True, now, row["size_bytes"], {}))
    return removed


class _Stats:
    """A file's statistics as delta-rs writes them: rows, and min/max/nulls of ``columns``."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.rows = 0
        self.low: dict[str, Any] = {}
        self.high: dict[str, Any] = {}
        self.nulls = dict.fromkeys(columns, 0)

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for c in self.columns:
            column = batch.column(c)
            self.nulls[c] += column.null_count
            bounds = pc.min_max(column)
            for side, seen, better in (("min", self.low, min), ("max", self.high, max)):
                value = bounds[side].as_py()
                if value is not None:
                    seen[c] = value if c not in seen else better(seen[c], value)

    def json(self) -> str:
        stats: dict[str, Any] = {"numRecords": self.rows}
        if self.columns:
            stats["minValues"] = {c: _stat(v) for c, v in self.low.items()}
            stats["maxValues"] = {c: _stat(v) for c, v in self.high.items()}
            stats["nullCount"] = self.nulls
        return json.dumps(stats, separators=(",", ":"))


def _stat(value: Any) -> Any:
    """A statistics value as delta-rs writes it in the log (timestamps without a zone as
    ``YYYY-MM-DD HH:MM:SS[.ffffff]``)."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _batches(
    reader: pa.RecordBatchReader,
    schema: pa.Schema,
    spec: Table,
    uri: str,
    what: str,
    batch_id: str | None,
    refused: list[LakehouseError],
) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        if batch_id is not None:
            if BATCH_COLUMN in batch.schema.names:
                batch = batch.drop_columns([BATCH_COLUMN])
            batch = batch.append_column(
                BATCH_COLUMN, pa.array([batch_id] * batch.num_rows, pa.string())
            )
        try:
            yield conform(batch, schema, spec, uri, what)
        except LakehouseError as exc:
            refused.append(exc)
            raise


# --- reading -----------------------------------------------------------------------------------
def dataset(table: DeltaTable, predicate: str | None = None) -> pads.Dataset:
    """The table's files as a pyarrow dataset, pruned by ``predicate`` (SQL over partition
    columns, or over any column with per-file statistics: a superset of the matching rows'
    files; filter rows after reading). Files in path order (batch, then part), so rows come
    back in the same order every time.

    A local table's files (``file_uris``, pruned by delta-rs from the log) are read by
    pyarrow itself, the partition values from their ``batch_id=ID`` folders: several times
    faster than ``to_pyarrow_dataset``'s per-file handler for hundreds of small files. Other
    stores go through ``to_pyarrow_dataset`` and delta-rs's object store, with the options
    the table was opened with.
    """
    schema = pa.schema(table.schema().to_arrow())
    if _scheme(table.table_uri) == "file":
        root = urlparse(table.table_uri).path.rstrip("/")
        files = sorted(table.file_uris(file_pruning_predicate=predicate))
        partitions = table.metadata().partition_columns
        partitioning = (
            pads.partitioning(pa.schema([schema.field(c) for c in partitions]), flavor="hive")
            if partitions
            else None
        )
        return pads.dataset(
            files,
            schema=schema,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=root,
            filesystem=pafs.LocalFileSystem(),
        )
    data = table.to_pyarrow_dataset(file_pruning_predicate=predicate)
    fragments = sorted(data.get_fragments(), key=lambda f: f.path)
    assert isinstance(data, pads.FileSystemDataset)
    return pads.FileSystemDataset(fragments, data.schema, data.format, data.filesystem)


def batch_predicate(batch_ids: list[str]) -> str:
    """SQL selecting the batches ``batch_ids``."""
    quoted = ", ".join(f"'{b}'" for b in batch_ids)
    return f"{BATCH_COLUMN} IN ({quoted})" if len(batch_ids) != 1 else f"{BATCH_COLUMN} = {quoted}"


def batch_ids(table: DeltaTable, spec: Table) -> list[str]:
    """The batches the table holds (from its log only), sorted."""
    if spec.partitioned:
        return sorted({str(p[BATCH_COLUMN]) for p in table.partitions()})
    column = dataset(table).to_table(columns=[BATCH_COLUMN]).column(BATCH_COLUMN)
    return sorted({str(v) for v in column.to_pylist() if v is not None})


# --- maintenance -------------------------------------------------------------------------------
def maintain(
    uri: str,
    options: Mapping[str, str],
    spec: Table,
    retention_hours: int = 168,
    vacuum: bool = True,
) -> dict[str, Any]:
    """Compact the table's small files (OPTIMIZE) and delete files no version within
    ``retention_hours`` reads (VACUUM). Returns what was done."""
    table = open_table(uri, options, spec)
    if table is None:
        return {"table": spec.name, "exists": False}
    compacted = table.optimize.compact()
    removed: list[str] = []
    if vacuum:
        removed = table.vacuum(
            retention_hours=retention_hours,
            dry_run=False,
            enforce_retention_duration=retention_hours >= 168,
        )
    table.create_checkpoint()
    return {
        "table": spec.name,
        "exists": True,
        "version": table.version(),
        "files_added": int(compacted.get("numFilesAdded", 0)),
        "files_removed": int(compacted.get("numFilesRemoved", 0)),
        "files_vacuumed": len(removed),
    }


# --- catalogs ------------------------------------------------------------------------------------
def databricks_statements(tables: tuple[Table, ...]) -> list[str]:
    """Unity Catalog external tables over the lakehouse's Delta tables: a ``CREATE TABLE ...
    USING DELTA LOCATION`` per table (its columns come from the table's own log)."""
    return [
        f"CREATE TABLE IF NOT EXISTS ${{catalog}}.${{schema}}.{t.name}\n"
        f"USING DELTA\n"
        f"LOCATION '${{lakehouse_uri}}/{t.path}'\n"
        f"COMMENT '{t.description.replace(chr(39), chr(39) * 2)}'"
        for t in tables
    ]


def databricks_sql(tables: tuple[Table, ...]) -> str:
    """The text of ``infra/databricks/tables.sql``."""
    lines = [
        "-- The lakehouse's Delta tables as Unity Catalog external tables (Databricks SQL).",
        "-- GENERATED from fraud_core/layout.py (TABLES) by fraud_core/delta.py: do not edit.",
        "-- Regenerate with",
        "--   .venv/bin/python -m fraud_core.delta > infra/databricks/tables.sql",
        "-- Replace ${catalog}, ${schema} and ${lakehouse_uri} (LAKEHOUSE_URI, e.g.",
        "-- abfss://lake@account.dfs.core.windows.net/fraud or s3://bucket/fraud) before running,",
        "-- e.g. `envsubst < infra/databricks/tables.sql`. The location must be covered by an",
        "-- external location with a storage credential (docs/lakehouse.md). Tables:",
        *(f"--   {t.name:<20} {t.path:<26} {t.description}" for t in tables),
        "",
    ]
    for statement in databricks_statements(tables):
        lines += [statement + ";", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from fraud_core.layout import TABLES

    print(databricks_sql(TABLES), end="")  # noqa: T201
