"""Reading landing files (Parquet, CSV, JSON lines) with errors that say what to fix."""

from __future__ import annotations

import io
import os

import pandas as pd
import pyarrow as pa

from fraud_core.schema import SchemaError

FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def file_format(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    if ext not in FORMATS:
        raise SchemaError(
            f"{os.path.basename(name)}: unsupported file type {ext or '(none)'}; "
            "land claims as .parquet, .csv or .jsonl"
        )
    return FORMATS[ext]


def read_claims_file(name: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Parse one landing file's bytes into a frame of untyped claims.

    Args:
        name: the file's name (its extension picks the parser).
        data: the file's content.
        max_bytes: larger files are refused (split them upstream).

    Raises:
        SchemaError: empty, too large, unsupported or unparsable files, with the reason.
    """
    base = os.path.basename(name)
    fmt = file_format(name)
    if len(data) == 0:
        raise SchemaError(f"{base}: the file is empty")
    if len(data) > max_bytes:
        raise SchemaError(
            f"{base}: {len(data):,} bytes is over the {max_bytes:,}-byte limit; split the file"
        )
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        elif fmt == "csv":
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=True)
        else:
            frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
    except (pa.ArrowException, ValueError, UnicodeDecodeError, OSError) as exc:
        raise SchemaError(f"{base}: cannot be read as {fmt}: {exc}") from exc
    if frame.empty:
        raise SchemaError(f"{base}: the file has no rows")
    return frame
