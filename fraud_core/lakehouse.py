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
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fraud_core.formats import split_name
from fraud_core.layout import BATCH_COLUMN, CHAMPION_POINTER, MODELS

_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PART_FILE = "part-0.parquet"
REMOTE_SCHEMES = ("s3", "s3a", "abfss", "abfs", "az")


class LakehouseError(RuntimeError):
    """Something in the lakehouse is missing or unreadable; the message says what and where."""


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
    """

    uri: str
    storage_options: dict[str, Any] | None = field(default=None, repr=False)

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

    # --- batch partitions -------------------------------------------------------------------
    def batch_file(self, dataset: str, batch_id: str) -> str:
        """Path (relative to the root) of one batch partition's file."""
        return f"{dataset}/batch={check_batch_id(batch_id)}/{_PART_FILE}"

    def write_batch(self, dataset: str, batch_id: str, frame: pd.DataFrame) -> str:
        """Write (or replace) one batch partition of ``dataset``."""
        return self.write_parquet(self.batch_file(dataset, batch_id), frame)

    def partition_writer(self, dataset: str, batch_id: str, empty: pd.DataFrame) -> PartitionWriter:
        """Write (or replace) one batch partition chunk by chunk; ``empty`` gives its columns
        when no row is written."""
        return PartitionWriter(self, self.batch_file(dataset, batch_id), empty)

    def read_batch(self, dataset: str, batch_id: str) -> pd.DataFrame:
        """One batch partition; :class:`LakehouseError` saying to materialize it if missing."""
        rel = self.batch_file(dataset, batch_id)
        if not self.exists(rel):
            raise LakehouseError(
                f"batch {batch_id!r} of {dataset} is not in the lakehouse ({self.url(rel)}): "
                "materialize it first"
            )
        return self.read_parquet(rel)

    def batch_rows(self, dataset: str, batch_id: str) -> int:
        """The rows of one batch partition, from its Parquet footer (no row is read)."""
        rel = self.batch_file(dataset, batch_id)
        with self.fs.open(self.path(rel), "rb") as fh:
            return int(pq.ParquetFile(fh).metadata.num_rows)

    def batches(self, dataset: str) -> list[str]:
        """Batch ids present in ``dataset`` (folders holding a partition file), sorted.

        One flat listing of the dataset's prefix (not a listing plus one existence check per
        folder), taken fresh from the store, so batches written by other processes are seen.
        """
        ids = []
        for rel in self.find(dataset):
            folder, _, name = rel.partition("/")
            if name == _PART_FILE and folder.startswith("batch="):
                ids.append(folder.split("=", 1)[1])
        return sorted(ids)

    def read_batches(self, dataset: str, batch_ids: list[str] | None = None) -> pd.DataFrame:
        """Concatenate batches (all when ``batch_ids`` is None), with a ``batch_id`` column."""
        ids = self.batches(dataset) if batch_ids is None else batch_ids
        if not ids:
            raise LakehouseError(f"no batches of {dataset} in {self.url(dataset)}")
        frames = []
        for batch_id in ids:
            frame = self.read_batch(dataset, batch_id)
            frame[BATCH_COLUMN] = batch_id
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

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
    """One partition file written chunk by chunk: nothing is visible until :meth:`commit`,
    which publishes it whole (:meth:`Lakehouse.publish`); :meth:`abort` leaves the old one.

    Chunks may differ in columns (JSON lines gain keys as they go): a chunk without some
    columns gets nulls, a chunk with new ones starts a new staging part, and the parts are
    joined on commit under their unified schema, part by part.
    """

    def __init__(self, lakehouse: Lakehouse, rel: str, empty: pd.DataFrame) -> None:
        self._lakehouse = lakehouse
        self._rel = rel
        self._empty = empty
        self._parts: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        """Append rows (none: nothing happens)."""
        if frame.empty and self._parts:
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
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
            self._parts.append(self._lakehouse.staging_path(self._rel))
            self._writer = pq.ParquetWriter(self._parts[-1], self._schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += len(frame)

    def _close_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self, metadata: Mapping[str, str] | None = None) -> str:
        """Publish the partition (with ``metadata`` in its footer); return its URI."""
        if not self._parts:
            self.write(self._empty)
        if len(self._parts) > 1:
            self._close_part()
            self._join_parts()
        assert self._writer is not None
        if metadata:
            self._writer.add_key_value_metadata(dict(metadata))
        self._close_part()
        return self._lakehouse.publish(self._parts.pop(), self._rel)

    def _join_parts(self) -> None:
        """Rewrite the parts into one staging file under their unified schema."""
        parts, self._parts = self._parts, []
        schemas = [pq.read_schema(p) for p in parts]
        unified = pa.unify_schemas(
            [s.remove_metadata() for s in schemas], promote_options="permissive"
        )
        self._parts.append(self._lakehouse.staging_path(self._rel))
        self._writer = pq.ParquetWriter(self._parts[-1], unified, compression="zstd")
        for part in parts:
            source = pq.ParquetFile(part)
            for group in range(source.num_row_groups):
                self._writer.write_table(_conform(source.read_row_group(group), unified))
            os.remove(part)

    def abort(self) -> None:
        """Drop what was written; the partition stays as it was."""
        self._close_part()
        for part in self._parts:
            if os.path.exists(part):
                os.remove(part)
        self._parts = []


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
