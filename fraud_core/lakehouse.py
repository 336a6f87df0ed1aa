"""Parquet and JSON on any ``LAKEHOUSE_URI`` (local path, ``s3://``, ``abfss://``) through fsspec.

The folder layout is :mod:`fraud_core.layout`.

Every write is atomic: on a local disk the file is written beside its target and renamed over
it; on an object store a file is one PUT (s3fs and adlfs make a large one a multipart upload or
a block list that becomes visible only when committed). A partition is one file, so rerunning a
batch replaces it and never appends twice. A partition too large for memory is written chunk by
chunk (:meth:`Lakehouse.partition_writer`) to a staging file, published the same way.

Credentials are never passed here: s3fs reads the AWS environment or profile (including
``AWS_ENDPOINT_URL`` for S3-compatible stores), adlfs reads ``AZURE_STORAGE_CONNECTION_STRING``
or ``AZURE_STORAGE_ACCOUNT_NAME`` + ``AZURE_STORAGE_ACCOUNT_KEY`` (or a service principal).

Listings on object stores are never cached (``use_listings_cache=False``): another process, for
instance the next Dagster run, writes batches, and a cached listing would hide them.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import DeltaTable

from fraud_core import delta, layout
from fraud_core.delta import LakehouseError
from fraud_core.formats import split_name
from fraud_core.layout import BATCH_COLUMN, CHAMPION_POINTER, MODELS
from fraud_core.schema import COLUMNS_BY_NAME, KIND_DTYPES

_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A batch partition of a Parquet lakehouse (before `fraud lakehouse migrate`): one file.
LEGACY_PART_FILE = "part-0.parquet"
REMOTE_SCHEMES = ("s3", "s3a", "abfss", "abfs", "az")


def check_batch_id(batch_id: str) -> str:
    """Batch ids become folder names and Dagster partition keys: keep them plain."""
    if not _BATCH_ID.match(batch_id):
        raise ValueError(
            f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' or '-' "
            "(at most 128 characters, starting with a letter or digit)"
        )
    return batch_id


def batch_id_for_file(filename: str) -> str:
    """The batch id of a landing file: its name without folders, format and compression
    extensions (``claims.csv.gz`` -> ``claims``), made plain.

    Never raises: any name gives a valid id (``batch`` when nothing usable is left).
    """
    stem, _ = split_name(filename)
    return check_batch_id(re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:128] or "batch")


def uri_scheme(uri: str) -> str:
    """``s3``, ``abfss``, ... for a URL; ``file`` for a plain path or a ``file://`` URL."""
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else "file"


@dataclass
class Lakehouse:
    """The lakehouse rooted at ``uri``. Credentials come from the usual environment/profile.

    ``storage_options`` is for non-secret settings (it is left out of ``repr``, in case).
    ``as_of`` pins tables to Delta versions (:meth:`pinned`).

    A table's log is read once per thread: later reads and writes bring the opened table up
    to date by reading only the commits since (:func:`fraud_core.delta.refresh`), so another
    process's commits are seen, and a step that reads and writes the same tables does not
    replay their logs each time.
    """

    uri: str
    storage_options: dict[str, Any] | None = field(default=None, repr=False)
    as_of: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError(
                "lakehouse URI is empty: set LAKEHOUSE_URI (a path, s3:// or abfss://)"
            )
        options = dict(self.storage_options or {})
        if uri_scheme(self.uri) != "file":
            # Batches are written by other processes (each Dagster run is one): always list
            # the store itself, never a listing cached by an earlier call in this process.
            options.setdefault("use_listings_cache", False)
        fs, root = fsspec.core.url_to_fs(self.uri, **options)
        self.fs = fs
        self.root = root.rstrip("/")
        self.is_local = "file" in (
            fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        )
        self.delta_options = delta.storage_options(self.uri)
        self._opened = threading.local()  # per thread (delta-rs tables are not shared)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_opened", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._opened = threading.local()

    def _tables(self) -> dict[str, DeltaTable]:
        """This thread's opened tables, by folder."""
        tables: dict[str, DeltaTable] | None = getattr(self._opened, "tables", None)
        if tables is None:
            tables = self._opened.tables = {}
        return tables

    # --- paths ------------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        """Filesystem path (no scheme) of ``rel`` under the root."""
        return f"{self.root}/{rel.strip('/')}" if rel else self.root

    def url(self, rel: str) -> str:
        """Full URI of ``rel``, as a person or another tool would use it."""
        base = self.uri.rstrip("/")
        if self.is_local:
            base = os.path.abspath(base)
        return f"{base}/{rel.strip('/')}" if rel.strip("/") else base

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` is a file or a non-empty folder (a prefix) under the root."""
        return bool(self.fs.exists(self.path(rel)))

    # --- bytes ------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write a whole file atomically and return its URI."""
        target = self.path(rel)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
        else:
            self.fs.pipe_file(target, data)
        return self.url(rel)

    def staging_path(self, rel: str) -> str:
        """A fresh local file to write ``rel``'s content to before :meth:`publish` (beside the
        target on a local lakehouse, so publishing is a rename)."""
        if self.is_local:
            target = self.path(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            return f"{target}.tmp-{uuid.uuid4().hex}"
        fd, path = tempfile.mkstemp(prefix="lakehouse-", suffix=os.path.splitext(rel)[1])
        os.close(fd)
        return path

    def publish(self, staged: str, rel: str) -> str:
        """Make the staged local file ``rel``, atomically, and return its URI; the staged
        file is gone afterwards, published or not."""
        try:
            if self.is_local:
                with open(staged, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(staged, self.path(rel))
            else:
                self.fs.put_file(staged, self.path(rel))
        finally:
            if os.path.exists(staged):
                os.remove(staged)
        return self.url(rel)

    def write_stream(self, rel: str, stream: IO[bytes], chunk_bytes: int = 8 * 1024**2) -> str:
        """Copy a stream into ``rel`` atomically (without holding it in memory)."""
        staged = self.staging_path(rel)
        try:
            with open(staged, "wb") as out:
                while block := stream.read(chunk_bytes):
                    out.write(block)
        except BaseException:
            os.remove(staged)
            raise
        return self.publish(staged, rel)

    def read_bytes(self, rel: str) -> bytes:
        """A whole file's content; :class:`LakehouseError` (with its URI) when it is missing."""
        try:
            return bytes(self.fs.cat_file(self.path(rel)))
        except FileNotFoundError as exc:
            raise LakehouseError(f"not found in the lakehouse: {self.url(rel)}") from exc

    def delete(self, rel: str) -> None:
        """Remove a file or a folder (prefix) and everything under it; no-op when absent."""
        self._tables().clear()  # a table under it may be gone
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def listdir(self, rel: str) -> list[str]:
        """Names directly under ``rel`` (empty when it does not exist)."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(str(e).rstrip("/")) for e in entries)

    def find(self, rel: str) -> list[str]:
        """Every file under ``rel``, relative to it, sorted (empty when it does not exist).

        One listing request per 1,000 (S3) or 5,000 (Azure) objects on an object store: a flat
        listing of the prefix, not a walk folder by folder.
        """
        base = self.path(rel).rstrip("/")
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        prefix = base + "/"
        return sorted(str(p)[len(prefix) :] for p in found if str(p).startswith(prefix))

    # --- JSON -------------------------------------------------------------------------------
    def write_json(self, rel: str, obj: Any) -> str:
        """Write ``obj`` as indented JSON (atomically) and return its URI."""
        return self.write_bytes(
            rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        )

    def read_json(self, rel: str) -> Any:
        """Parse a JSON file."""
        return json.loads(self.read_bytes(rel))

    # --- Parquet ----------------------------------------------------------------------------
    def write_parquet(self, rel: str, frame: pd.DataFrame) -> str:
        """Write ``frame`` as one zstd Parquet file (atomically) and return its URI."""
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
        return self.write_bytes(rel, buf.getvalue())

    def read_parquet(self, rel: str) -> pd.DataFrame:
        """Read one Parquet file into a frame."""
        return pq.read_table(io.BytesIO(self.read_bytes(rel))).to_pandas()

    def read_columns(self, rel: str, columns: Sequence[str]) -> pd.DataFrame:
        """Some columns of one Parquet file (only those are read); absent ones are left out."""
        with self.fs.open(self.path(rel), "rb") as fh:
            parquet = pq.ParquetFile(fh)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            return parquet.read(columns=present).to_pandas()

    def file_metadata(self, rel: str) -> dict[str, str]:
        """The key-value metadata a Parquet file's writer recorded (its footer only is read)."""
        with self.fs.open(self.path(rel), "rb") as fh:
            raw = pq.ParquetFile(fh).metadata.metadata or {}
        return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"ARROW:")}

    # --- Delta tables (fraud_core.delta) ---------------------------------------------------
    def table_url(self, dataset: str) -> str:
        """The URI of a table of the layout (what delta-rs and Databricks open)."""
        layout.table(dataset)
        return self.url(dataset)

    def batch_url(self, dataset: str, batch_id: str) -> str:
        """Where batch ``batch_id`` of a partitioned table lives (its partition folder)."""
        return f"{self.table_url(dataset)}/{BATCH_COLUMN}={check_batch_id(batch_id)}"

    def pinned(self, versions: Mapping[str, int]) -> Lakehouse:
        """This lakehouse with some tables read as they were at the given Delta versions
        (``{table folder: version}``, as :meth:`table_versions` records them): time travel
        for reproducing what a training run read. Writes are refused on a pinned lakehouse."""
        for dataset in versions:
            layout.table(dataset)
        return Lakehouse(
            self.uri, self.storage_options, as_of={k: int(v) for k, v in versions.items()}
        )

    def delta_table(self, dataset: str) -> DeltaTable | None:
        """A table of the layout as reads see it (its pinned version, else the latest), or None
        when there is none yet.

        Raises:
            LakehouseError: the dataset is still Parquet files, or the log is damaged.
        """
        return self._delta(dataset)

    def _delta(self, dataset: str) -> DeltaTable | None:
        spec = layout.table(dataset)
        version = self.as_of.get(dataset)
        opened = self._tables()
        table = opened.get(dataset)
        if table is not None:
            if version is not None:
                return table  # pinned: never moves
            try:
                return delta.refresh(table, self.table_url(dataset), self.delta_options, spec)
            except LakehouseError:
                del opened[dataset]  # e.g. the log it had read up to was cleaned: read it anew
        table = delta.open_table(self.table_url(dataset), self.delta_options, spec, version)
        if table is not None:
            opened[dataset] = table
            return table
        if self._legacy(dataset):
            raise LakehouseError(
                f"{self.url(dataset)} holds Parquet files of a lakehouse written before its "
                "datasets became Delta tables: convert it in place with `fraud lakehouse "
                "migrate` (docs/lakehouse.md)"
            )
        return table

    def _legacy(self, dataset: str) -> bool:
        """Whether ``dataset`` is still stored as plain Parquet files (before migration)."""
        names = self.listdir(dataset)
        return any(n.startswith("batch=") or n == LEGACY_PART_FILE for n in names)

    def table_version(self, dataset: str) -> int | None:
        """The Delta version of a table that reads see (None: no such table yet)."""
        table = self._delta(dataset)
        return None if table is None else table.version()

    def table_versions(self) -> dict[str, int]:
        """The Delta version of every table of the layout that exists (what a training run
        records, and :meth:`pinned` reads again)."""
        versions = {}
        for spec in layout.TABLES:
            version = self.table_version(spec.path)
            if version is not None:
                versions[spec.path] = version
        return versions

    def _check_writable(self, dataset: str) -> layout.Table:
        if self.as_of:
            raise LakehouseError(
                f"this lakehouse is pinned to table versions {self.as_of} (reads only): "
                f"write {dataset} through an unpinned Lakehouse"
            )
        return layout.table(dataset)

    def write_batch(
        self,
        dataset: str,
        batch_id: str,
        frame: pd.DataFrame,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Write (or replace) batch ``batch_id`` of ``dataset`` in one commit; return the URI of
        its partition."""
        spec = self._check_writable(dataset)
        self._write(
            dataset, delta.source_of(_from_pandas(frame)), check_batch_id(batch_id), metadata
        )
        return self.batch_url(dataset, batch_id) if spec.partitioned else self.table_url(dataset)

    def _write(
        self,
        dataset: str,
        source: delta.Source,
        batch_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        replace: str | None = None,
    ) -> None:
        """One commit to ``dataset`` (:func:`fraud_core.delta.write`), through the table this
        thread opened already."""
        opened = self._tables()
        written = delta.write(
            self.table_url(dataset),
            self.delta_options,
            layout.table(dataset),
            source,
            batch_id,
            metadata,
            replace,
            table=opened.get(dataset),
        )
        opened[dataset] = written

    def replace_rows(self, dataset: str, data: delta.Source, predicate: str | None) -> str:
        """Replace the rows ``predicate`` selects (SQL on the partition column; all when None)
        of a table not written by batch with ``data``'s, in one commit; its URI."""
        self._check_writable(dataset)
        self._write(dataset, data, replace=predicate)
        return self.table_url(dataset)

    def write_table(self, dataset: str, frame: pd.DataFrame) -> str:
        """Replace the whole of a table not written by batch (the metrics table); its URI."""
        self._check_writable(dataset)
        self._write(dataset, delta.source_of(_from_pandas(frame)))
        return self.table_url(dataset)

    def read_table(
        self,
        dataset: str,
        columns: Sequence[str] | None = None,
        predicate: str | None = None,
        row_filter: pads.Expression | None = None,
    ) -> pd.DataFrame:
        """Rows of a table: the files ``predicate`` (SQL, see :func:`fraud_core.delta.dataset`)
        may hold, the rows ``row_filter`` keeps, ``columns`` only (those the table has).

        Raises:
            LakehouseError: no such table yet (saying what to materialize), or its log is
                damaged.
        """
        table = self._delta(dataset)
        if table is None:
            raise LakehouseError(
                f"no table {dataset} in the lakehouse ({self.url(dataset)}): materialize it first"
            )
        typed = not layout.table(dataset).open_columns
        return to_frame(self.scan(table, columns, predicate, row_filter), typed)

    def scan(
        self,
        table: DeltaTable,
        columns: Sequence[str] | None,
        predicate: str | None,
        row_filter: pads.Expression | None = None,
        own_columns: bool = False,
    ) -> pa.Table:
        """Rows of an opened table as Arrow: the files ``predicate`` may hold (see
        :func:`fraud_core.delta.dataset`), the rows ``row_filter`` keeps, ``columns`` only
        (those it has); ``own_columns``: without the columns empty throughout."""
        data = delta.dataset(table, predicate)
        names = data.schema.names
        wanted = names if columns is None else [c for c in columns if c in names]
        out = data.to_table(columns=wanted, filter=row_filter)
        if own_columns and out.num_rows:
            # rows as received: the columns these rows came with, not every column the table
            # gained from other batches (a column empty throughout is left out too)
            empty = [c.name for c in out.schema if out.column(c.name).null_count == out.num_rows]
            out = out.drop_columns(empty)
        return out

    def partition_writer(self, dataset: str, batch_id: str, empty: pd.DataFrame) -> PartitionWriter:
        """Write (or replace) one batch of ``dataset`` chunk by chunk; ``empty`` gives its
        columns when no row is written."""
        self._check_writable(dataset)
        return PartitionWriter(self, dataset, check_batch_id(batch_id), empty)

    def read_batch(
        self, dataset: str, batch_id: str, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """One batch of ``dataset`` (its files only), without the ``batch_id`` column.

        Raises:
            LakehouseError: the batch is not in the table, saying to materialize it.
        """
        frame = self._read_batches(dataset, [check_batch_id(batch_id)], columns)
        if frame is None:
            raise LakehouseError(
                f"batch {batch_id!r} of {dataset} is not in the lakehouse "
                f"({self.batch_url(dataset, batch_id)}): materialize it first"
            )
        return frame.drop(columns=BATCH_COLUMN, errors="ignore")

    def _read_batches(
        self, dataset: str, batch_ids: list[str], columns: Sequence[str] | None
    ) -> pd.DataFrame | None:
        """The batches' rows with ``batch_id``; None when the table holds none of them (an
        ingested batch without rows reads as no rows with the table's columns)."""
        table = self._delta(dataset)
        if table is None:
            return None
        spec = layout.table(dataset)
        predicate = delta.batch_predicate(batch_ids)
        row_filter = None if spec.partitioned else pc.field(BATCH_COLUMN).isin(batch_ids)
        wanted = None if columns is None else [*columns, BATCH_COLUMN]
        data = self.scan(table, wanted, predicate, row_filter, own_columns=spec.open_columns)
        if data.num_rows == 0 and not self._ingested(batch_ids):
            return None
        return to_frame(data, typed=not spec.open_columns)

    def _ingested(self, batch_ids: list[str]) -> bool:
        """Whether all of ``batch_ids`` were ingested (a batch may have no rows in a table)."""
        return set(batch_ids) <= self._known(batch_ids)

    def batch_rows(self, dataset: str, batch_id: str) -> int:
        """The rows of one batch, from its files' Parquet footers (no row is read; 0 for a
        batch the table does not hold)."""
        table = self._delta(dataset)
        if table is None:
            return 0
        batch_id = check_batch_id(batch_id)
        data = delta.dataset(table, delta.batch_predicate([batch_id]))
        partitioned = layout.table(dataset).partitioned
        return int(
            data.count_rows(filter=None if partitioned else pc.field(BATCH_COLUMN) == batch_id)
        )

    def batches(self, dataset: str) -> list[str]:
        """Batch ids present in ``dataset``, sorted (from the table's log; none when there is
        no table yet). Read fresh from the store, so batches of other processes are seen."""
        table = self._delta(dataset)
        return [] if table is None else delta.batch_ids(table, layout.table(dataset))

    def read_batches(
        self,
        dataset: str,
        batch_ids: list[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of several batches (all when ``batch_ids`` is None), with a ``batch_id``
        column; only ``columns`` (and ``batch_id``) when given."""
        if batch_ids is None:
            table = self._delta(dataset)
            if table is None or not delta.batch_ids(table, layout.table(dataset)):
                raise LakehouseError(f"no batches of {dataset} in {self.url(dataset)}")
            wanted = None if columns is None else [*columns, BATCH_COLUMN]
            typed = not layout.table(dataset).open_columns
            return to_frame(self.scan(table, wanted, None), typed)
        if not batch_ids:
            raise LakehouseError(f"no batches of {dataset} asked for from {self.url(dataset)}")
        frame = self._read_batches(dataset, list(batch_ids), columns)
        if frame is None:
            raise LakehouseError(
                f"batches {batch_ids[:5]} of {dataset} are not in {self.url(dataset)}: "
                "materialize them first"
            )
        missing = set(batch_ids) - set(frame[BATCH_COLUMN].unique()) - self._known(batch_ids)
        if missing:
            raise LakehouseError(
                f"batch(es) {sorted(missing)[:5]} of {dataset} are not in {self.url(dataset)}: "
                "materialize them first"
            )
        return frame

    def _known(self, batch_ids: list[str]) -> set[str]:
        """Those of ``batch_ids`` that were ingested (in the batch lineage table)."""
        table = self._delta(layout.BATCH_LINEAGE)
        if table is None:
            return set()
        known = self.scan(
            table, [BATCH_COLUMN], None, pc.field(BATCH_COLUMN).isin(batch_ids)
        ).column(BATCH_COLUMN)
        return {str(v) for v in known.to_pylist()}

    def table_columns(self, dataset: str) -> list[str]:
        """The columns a table declares (none when there is no table yet)."""
        table = self._delta(dataset)
        return [] if table is None else list(pa.schema(table.schema().to_arrow()).names)

    def column_range(self, dataset: str, column: str) -> tuple[Any, Any]:
        """The smallest and largest value of ``column`` over the table, from the per-file
        statistics of its log (no data file is read); (None, None) when unknown."""
        table = self._delta(dataset)
        if table is None:
            return None, None
        actions = pa.table(table.get_add_actions(flatten=True))
        low, high = f"min.{column}", f"max.{column}"
        if low not in actions.column_names or high not in actions.column_names:
            return None, None
        return pc.min(actions[low]).as_py(), pc.max(actions[high]).as_py()

    def maintain(self, retention_hours: int = 168, vacuum: bool = True) -> list[dict[str, Any]]:
        """Fold the raw claims landed since into the claims history
        (:func:`fraud_core.window.fold`), then OPTIMIZE (compact small files) and VACUUM every
        table of the layout. Returns what was done, a record per table.

        Raises:
            LakehouseError: a dataset is still Parquet files (VACUUM would delete them).
        """
        from fraud_core.window import fold  # it reads and writes through this class

        self._check_writable(layout.CLAIMS_HISTORY)
        for spec in layout.TABLES:
            self._delta(spec.path)  # refuses a dataset not migrated yet
        folded = fold(self)
        results = [
            delta.maintain(
                self.table_url(spec.path), self.delta_options, spec, retention_hours, vacuum
            )
            for spec in layout.TABLES
        ]
        for result in results:
            if result["table"] == layout.table(layout.CLAIMS_HISTORY).name:
                result.update(folded)
        return results

    # --- model registry ---------------------------------------------------------------------
    def model_path(self, version: str, name: str = "") -> str:
        """Path of a model version's folder, or of one file in it."""
        return f"{MODELS}/{check_batch_id(version)}/{name}".rstrip("/")

    def champion(self) -> dict[str, Any] | None:
        """The champion pointer, or None when no model was promoted yet."""
        if not self.exists(CHAMPION_POINTER):
            return None
        pointer = self.read_json(CHAMPION_POINTER)
        if not isinstance(pointer, dict) or "version" not in pointer:
            raise LakehouseError(f"champion pointer {self.url(CHAMPION_POINTER)} is malformed")
        return pointer

    def set_champion(self, pointer: dict[str, Any]) -> str:
        """Replace the champion pointer atomically (one write)."""
        if "version" not in pointer:
            raise ValueError("a champion pointer needs a 'version'")
        return self.write_json(CHAMPION_POINTER, pointer)


class PartitionWriter:
    """One batch of a table written chunk by chunk: nothing is visible until :meth:`commit`,
    which replaces the batch in one Delta commit; :meth:`abort` leaves the batch as it was.
    The first chunk is held in memory (a file of one chunk is written straight from it);
    from the second on, chunks are staged in local Parquet files and the commit streams from
    them, so memory stays bounded by a chunk.

    Chunks may differ in columns (JSON lines gain keys as they go): a chunk without some
    columns gets nulls, a chunk with new ones starts a new staging part, and the parts are
    joined on commit under their unified schema, part by part.
    """

    def __init__(
        self, lakehouse: Lakehouse, dataset: str, batch_id: str, empty: pd.DataFrame
    ) -> None:
        self._lakehouse = lakehouse
        self._dataset = dataset
        self._batch_id = batch_id
        self._empty = empty
        self._parts: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._held: pa.Table | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        """Append rows (none: nothing happens)."""
        if frame.empty and (self._parts or self._held is not None):
            return
        table = _from_pandas(frame)
        if self._held is None and not self._parts:
            self._held = table.cast(_no_null_types(table.schema))
        else:
            if self._held is not None:
                held, self._held = self._held, None
                self._stage(held)
            self._stage(table)
        self.rows += len(frame)

    def _stage(self, table: pa.Table) -> None:
        """Append a chunk to the staged parts (a new part when its columns differ)."""
        if self._schema is not None and not set(table.schema.names) - set(self._schema.names):
            try:
                table = _conform(table, self._schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                self._close_part()
        elif self._schema is not None:
            self._close_part()
        if self._writer is None:
            self._schema = _no_null_types(table.schema)
            table = table.cast(self._schema)
            fd, path = tempfile.mkstemp(prefix="lakehouse-", suffix=".parquet")
            os.close(fd)
            self._parts.append(path)
            self._writer = pq.ParquetWriter(self._parts[-1], self._schema, compression="zstd")
        self._writer.write_table(table)

    def _close_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self, metadata: Mapping[str, Any] | None = None) -> str:
        """Replace the batch with the rows written (``metadata`` goes into the commit's
        ``commitInfo``); return the URI of its partition."""
        if not self._parts and self._held is None:
            self.write(self._empty)
        if len(self._parts) > 1:
            self._close_part()
            self._join_parts()
        self._close_part()
        try:
            if self._held is not None:
                source = delta.source_of(self._held)
            else:
                staged = self._parts[0]

                def source() -> pa.RecordBatchReader:
                    parquet = pq.ParquetFile(staged)
                    return pa.RecordBatchReader.from_batches(
                        parquet.schema_arrow, parquet.iter_batches(batch_size=65_536)
                    )

            lh = self._lakehouse
            lh._write(self._dataset, source, self._batch_id, metadata)
        finally:
            self.abort()
        return lh.batch_url(self._dataset, self._batch_id)

    def _join_parts(self) -> None:
        """Rewrite the parts into one staging file under their unified schema."""
        parts, self._parts = self._parts, []
        schemas = [pq.read_schema(p) for p in parts]
        unified = pa.unify_schemas(
            [s.remove_metadata() for s in schemas], promote_options="permissive"
        )
        fd, path = tempfile.mkstemp(prefix="lakehouse-", suffix=".parquet")
        os.close(fd)
        self._parts.append(path)
        self._writer = pq.ParquetWriter(self._parts[-1], unified, compression="zstd")
        for part in parts:
            source = pq.ParquetFile(part)
            for group in range(source.num_row_groups):
                self._writer.write_table(_conform(source.read_row_group(group), unified))
            os.remove(part)

    def abort(self) -> None:
        """Drop what was written; the batch stays as it was."""
        self._held = None
        self._close_part()
        for part in self._parts:
            if os.path.exists(part):
                os.remove(part)
        self._parts = []


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    """A frame as Arrow, as the lakehouse writes it."""
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


# Which Arrow types hold a claim column of each kind as the claims schema types it (a feature
# may share a claim column's name with another type: report_delay_days as a float feature).
_KIND_ARROW: dict[str, Any] = {
    "id": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "category": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "date": pa.types.is_timestamp,
    "float": pa.types.is_floating,
    "int": pa.types.is_integer,
    "bool": pa.types.is_boolean,
}


def to_frame(table: pa.Table, typed: bool = True) -> pd.DataFrame:
    """Rows read from a Delta table as the frames the pipeline wrote: claim columns with the
    claims schema's dtypes, timestamps in nanoseconds, booleans and integers with gaps as
    pandas' nullable types (Delta keeps no pandas metadata, as Parquet files written by
    pandas did). ``typed=False``: rows as received (quarantine), claim columns left as text."""
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.unit != "ns":
            fields.append(f.with_type(pa.timestamp("ns", f.type.tz)))
        else:
            fields.append(f)
    table = table.cast(pa.schema(fields), safe=False)
    frame = table.to_pandas(split_blocks=True)  # a block per column: numbers without copies
    for f in table.schema:
        column = table.column(f.name)
        kind = COLUMNS_BY_NAME[f.name].kind if typed and f.name in COLUMNS_BY_NAME else None
        if kind is not None and _KIND_ARROW[kind](f.type):
            frame[f.name] = frame[f.name].astype(KIND_DTYPES[kind])
        elif column.null_count and pa.types.is_boolean(f.type):
            frame[f.name] = frame[f.name].astype("boolean")
        elif column.null_count and pa.types.is_integer(f.type):
            frame[f.name] = frame[f.name].astype("Int64")
    return frame


def _no_null_types(schema: pa.Schema) -> pa.Schema:
    """A column with no value yet (all nulls in the first chunk) is text, not Arrow's null."""
    return pa.schema(
        [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema],
        metadata=schema.metadata,
    )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order (nulls for those it lacks)."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.schema.names
        else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
