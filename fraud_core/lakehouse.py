"""Parquet and JSON on any ``LAKEHOUSE_URI`` (local path, ``s3://``, ``abfss://``) through fsspec.

Layout under the root::

    landing/                     arriving files (unless a separate landing URI is used)
    raw/claims/batch=ID/         validated rows
    quarantine/claims/batch=ID/  rejected rows with their reasons
    features/claims/batch=ID/    model features
    outputs/scores/batch=ID/     fraud scores
    models/VERSION/              model bundle + manifest.json
    models/champion.json         the champion pointer, replaced atomically
    metrics/model_metrics/       the aggregated metrics table

Every write is atomic: on a local disk the file is written beside its target and renamed over
it; on an object store a file is one PUT. A partition is one file, so rerunning a batch replaces
it and never appends twice.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RAW = "raw/claims"
QUARANTINE = "quarantine/claims"
FEATURES = "features/claims"
SCORES = "outputs/scores"
METRICS = "metrics/model_metrics"
MODELS = "models"
LANDING = "landing"
CHAMPION_POINTER = f"{MODELS}/champion.json"
BATCH_COLUMN = "batch_id"

_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
    """The batch id of a landing file: its name without folders and extension, made plain."""
    stem = os.path.basename(filename)
    for ext in (".parquet", ".csv", ".jsonl", ".json", ".ndjson"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    return check_batch_id(re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:128] or "batch")


@dataclass
class Lakehouse:
    """The lakehouse rooted at ``uri``. Credentials come from the usual environment/profile."""

    uri: str
    storage_options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError(
                "lakehouse URI is empty: set LAKEHOUSE_URI (a path, s3:// or abfss://)"
            )
        fs, root = fsspec.core.url_to_fs(self.uri, **(self.storage_options or {}))
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
        return bool(self.fs.exists(self.path(rel)))

    # --- bytes ------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write a whole file atomically and return its URI."""
        target = self.path(rel)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        else:
            self.fs.pipe_file(target, data)
        return self.url(rel)

    def read_bytes(self, rel: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(rel)))
        except FileNotFoundError as exc:
            raise LakehouseError(f"not found in the lakehouse: {self.url(rel)}") from exc

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def listdir(self, rel: str) -> list[str]:
        """Names directly under ``rel`` (empty when it does not exist)."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(str(e).rstrip("/")) for e in entries)

    # --- JSON -------------------------------------------------------------------------------
    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_bytes(
            rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        )

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    # --- Parquet ----------------------------------------------------------------------------
    def write_parquet(self, rel: str, frame: pd.DataFrame) -> str:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
        return self.write_bytes(rel, buf.getvalue())

    def read_parquet(self, rel: str) -> pd.DataFrame:
        return pq.read_table(io.BytesIO(self.read_bytes(rel))).to_pandas()

    # --- batch partitions -------------------------------------------------------------------
    def batch_file(self, dataset: str, batch_id: str) -> str:
        return f"{dataset}/batch={check_batch_id(batch_id)}/part-0.parquet"

    def write_batch(self, dataset: str, batch_id: str, frame: pd.DataFrame) -> str:
        """Write (or replace) one batch partition of ``dataset``."""
        return self.write_parquet(self.batch_file(dataset, batch_id), frame)

    def read_batch(self, dataset: str, batch_id: str) -> pd.DataFrame:
        rel = self.batch_file(dataset, batch_id)
        if not self.exists(rel):
            raise LakehouseError(
                f"batch {batch_id!r} of {dataset} is not in the lakehouse ({self.url(rel)}): "
                "materialize it first"
            )
        return self.read_parquet(rel)

    def batches(self, dataset: str) -> list[str]:
        """Batch ids present in ``dataset``, sorted."""
        return [
            name.split("=", 1)[1]
            for name in self.listdir(dataset)
            if name.startswith("batch=") and self.exists(f"{dataset}/{name}/part-0.parquet")
        ]

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
