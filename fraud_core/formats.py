"""Landing file kinds: which extensions hold claims, in which format, compressed how.

The one home of the extension tables: the landing sensor, the readers
(:mod:`fraud_core.landing`) and batch ids (:func:`fraud_core.lakehouse.batch_id_for_file`)
all read them here. A name is ``stem[.format][.compression]``: ``claims.csv.gz`` is gzip CSV,
``claims.zip`` a zip archive holding one claims file (its member's name gives the format).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Extension -> format of the claims inside.
FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    # JSON lines or one JSON array of objects: told apart by the first character.
    ".json": "json",
}
# Extension -> codec of a compressed stream (pyarrow's names), or "zip" for an archive.
COMPRESSIONS: dict[str, str] = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".zip": "zip",
}
FORMAT_NAMES = ("parquet", "csv", "jsonl", "json")
SUPPORTED_HINT = (
    "land claims as .parquet, .csv, .jsonl/.ndjson or .json, optionally compressed "
    "(.gz, .bz2, .zst, or a .zip holding one claims file)"
)


@dataclass(frozen=True)
class FileKind:
    """How a landed file is read: its format (None when the name does not say) and the
    compression around it (None: plain)."""

    format: str | None
    compression: str | None = None

    def describe(self) -> str:
        """``csv``, ``csv (gzip)``: for messages."""
        fmt = self.format or "unknown format"
        return fmt if self.compression is None else f"{fmt} ({self.compression})"


def split_name(name: str) -> tuple[str, FileKind]:
    """``(stem, kind)`` of a file name: ``claims.csv.gz`` -> ``("claims", csv in gzip)``.

    An unknown last extension gives ``(name without folders, FileKind(None))``; a known
    compression around an unknown inner extension keeps the inner one in the stem.
    """
    base = os.path.basename(name.replace("\\", "/").rstrip("/"))
    stem, ext = os.path.splitext(base)
    compression = COMPRESSIONS.get(ext.lower())
    if compression is not None:
        inner_stem, inner = os.path.splitext(stem)
        if inner.lower() in FORMATS:
            return inner_stem, FileKind(FORMATS[inner.lower()], compression)
        return stem, FileKind(None, compression)
    if ext.lower() in FORMATS:
        return stem, FileKind(FORMATS[ext.lower()])
    return base, FileKind(None)
