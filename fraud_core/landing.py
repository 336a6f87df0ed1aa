"""Landing files: what arrived (:class:`LandedFile`), what the sensor has seen
(:class:`LandingCursor`), and what happens to a file that cannot be ingested: every readable
row is quarantined with the reason and the file is recorded under ``rejected/``; the landed
file itself is never moved or deleted. Reading a file is :mod:`fraud_core.readers`.

Nothing here knows which store the file came from: the landing resources (local folder, S3,
ADLS) list and read; this module decides.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from fraud_core.lakehouse import Lakehouse, batch_id_for_file, check_batch_id
from fraud_core.layout import REJECTED
from fraud_core.readers import Opener, read_chunks
from fraud_core.schema import (
    QUARANTINE_REASON_COLUMN,
    REASON_SEPARATOR,
    ROW_NUMBER_COLUMN,
    SchemaError,
    claims_frame,
)

# What one landed file (one batch) may hold, compressed as it landed. Files are read a chunk
# at a time, so this is a policy (split bigger extracts), not a memory guard.
DEFAULT_MAX_BYTES = 16 * 1024**3
# How far behind the newest file the sensor looks again (seconds of the store's clock). Object
# stores stamp a second (S3, Azure: 1 s resolution) and may stamp an upload when it started, so
# a file can become visible after a later-stamped one was seen: keep this above the longest
# upload. The cursor holds the files of this window, not every file ever seen.
DEFAULT_LOOKBACK_SECONDS = 600.0


def is_landed_file(name: str) -> bool:
    """A file the landing zone offers: no hidden (``.x``) or ``_x`` part in its path.

    Hidden and underscore names are the usual markers of uploads in progress and of metadata
    (``_SUCCESS``, ``.part``); they are left alone. Every other file is either ingested or
    recorded as rejected (an unsupported type says what to rename or configure).
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    return bool(parts) and not any(p.startswith((".", "_")) for p in parts)


@dataclass(frozen=True)
class LandedFile:
    """One file in a landing zone.

    Attributes:
        name: path relative to the landing zone's root, ``/``-separated.
        size: bytes.
        modified: last modification, epoch seconds (the store's clock).
        etag: the store's content tag when it has one (S3 ETag, Azure ETag), else ``""``.
        arrived: when the file appeared or last changed in the zone, epoch seconds; the sensor
            orders files by it. Defaults to ``modified`` (object stores); a local folder uses
            the inode change time, which a move into the folder updates but ``touch -d`` or
            ``cp -p`` cannot set to the past or the future.
    """

    name: str
    size: int
    modified: float
    etag: str = ""
    arrived: float | None = None

    @property
    def batch_id(self) -> str:
        """Its partition key: the path without extension, folders joined by ``_``."""
        return batch_id_for_file(self.name.strip("/").replace("/", "_"))

    @property
    def version(self) -> str:
        """Changes whenever the file is replaced (part of the run key)."""
        return f"{self.modified:.6f}-{self.etag or self.size}"

    @property
    def seen_at(self) -> float:
        """The time the sensor orders files by."""
        return self.modified if self.arrived is None else self.arrived


@dataclass(frozen=True)
class LandingCursor:
    """What the landing sensor has seen, kept small however many files the zone holds.

    ``since`` is the newest ``seen_at`` seen so far (a high-water mark); ``recent`` maps every
    file seen within ``lookback`` seconds before it to the version seen. A file is new when it
    falls in that window and its version is not in ``recent``: so two files stamped in the
    same second are both seen, a file that shows up late (stamped earlier than one already
    seen) is still seen while it is in the window, and a replaced file (new stamp) is seen
    again. Files older than the window were seen in an earlier tick and are not compared.
    """

    since: float | None = None
    recent: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> LandingCursor:
        """Read a cursor; an empty one means nothing seen yet.

        The first sensor's cursor (``{name: version}`` for every file) is read as ``recent``
        with no high-water mark: the next tick compares everything once and writes the new
        form.
        """
        if not text:
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"landing sensor cursor is not a JSON object: {text[:80]!r}")
        if "recent" not in data:
            return cls(None, {str(k): str(v) for k, v in data.items()})
        since = data.get("since")
        return cls(None if since is None else float(since), dict(data["recent"]))

    def dump(self) -> str:
        """The cursor as compact JSON."""
        return json.dumps({"since": self.since, "recent": self.recent}, sort_keys=True)

    def window_start(self, lookback: float) -> float | None:
        """The oldest ``seen_at`` a listing must include (None: list everything)."""
        return None if self.since is None else self.since - lookback

    def advance(
        self, files: Iterable[LandedFile], lookback: float, limit: int | None = None
    ) -> tuple[list[LandedFile], LandingCursor]:
        """New files among a listing, and the cursor that has seen them.

        Args:
            files: at least every file with ``seen_at >= window_start(lookback)`` (older ones
                are ignored, so a store may return more than asked).
            lookback: seconds re-examined behind the high-water mark.
            limit: at most this many new files (the oldest first); the rest stay new for the
                next call, so a backlog is worked off in order over several ticks.

        Returns:
            ``(new files ordered by seen_at then name, next cursor)``.
        """
        if not math.isfinite(lookback) or lookback < 0:
            raise ValueError(f"lookback must be a finite number of seconds >= 0, not {lookback}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        start = self.window_start(lookback)
        window = sorted(
            (f for f in files if start is None or f.seen_at >= start),
            key=lambda f: (f.seen_at, f.name),
        )
        unseen = [f for f in window if self.recent.get(f.name) != f.version]
        new = unseen[:limit] if limit is not None else unseen
        if not window:
            return new, self
        # With a backlog the mark stops at the last file taken: every file left behind is
        # at or after it, so it stays in the next window and is still unseen there.
        newest = new[-1].seen_at if len(new) < len(unseen) else window[-1].seen_at
        since = max(newest, self.since if self.since is not None else -math.inf)
        taken = {f.name for f in new}
        recent = {
            f.name: f.version
            for f in window
            if f.seen_at >= since - lookback
            and (f.name in taken or self.recent.get(f.name) == f.version)
        }
        return new, LandingCursor(since, recent)


def check_size(name: str, size: int, max_bytes: int) -> None:
    """Refuse a file over what one batch may hold, before anyone reads it."""
    if size > max_bytes:
        raise SchemaError(
            f"{os.path.basename(name)}: {size:,} bytes is over the {max_bytes:,}-byte limit of "
            "one batch (LANDING_MAX_FILE_BYTES); split the file"
        )


def read_claims_file(name: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """A whole small landing file's rows as received, from its bytes (default feed contract).

    Raises:
        SchemaError: empty, too large, unsupported or unparsable files, with the reason.
    """
    if len(data) == 0:
        raise SchemaError(f"{os.path.basename(name)}: the file is empty")
    check_size(name, len(data), max_bytes)
    return pd.concat(list(read_chunks(name, lambda: io.BytesIO(data))), ignore_index=True)


def empty_claims() -> pd.DataFrame:
    """No valid claims, with the typed columns of a raw batch."""
    return claims_frame([])


def quarantine_all(raw: pd.DataFrame | None, reason: str) -> pd.DataFrame:
    """Every row of a file that cannot be ingested, as received, with the file's reason.

    The same layout as row-level quarantine (``source_row``, the columns as text,
    ``quarantine_reasons``), so a fixed file can be replayed from it. ``raw`` is None when
    nothing could be read: the result then has no rows.
    """
    if raw is None or raw.empty:
        return pd.DataFrame(
            {
                ROW_NUMBER_COLUMN: pd.Series(dtype="int64"),
                QUARANTINE_REASON_COLUMN: pd.Series(dtype=object),
            }
        )
    rows = raw.reset_index(drop=True)
    out = rows.astype("string").astype(object).where(rows.notna(), None)
    out.insert(0, ROW_NUMBER_COLUMN, np.arange(len(rows), dtype="int64"))
    out[QUARANTINE_REASON_COLUMN] = reason
    return out


class ReasonTally:
    """Quarantine reasons counted by subject, with the first example of each.

    Reasons read ``subject: detail`` (a column or a rule, then what is wrong), several per row
    joined by ``REASON_SEPARATOR``. The tally grows with the schema's subjects, never with the
    rows, so a file's reasons are counted chunk by chunk.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._examples: dict[str, str] = {}

    def add(self, reasons: pd.Series) -> None:
        """Count the reasons of some quarantined rows."""
        if reasons.empty:
            return
        parts = reasons.astype(str).str.split(REASON_SEPARATOR).explode().str.partition(": ")
        table = pd.DataFrame(
            {"subject": parts[0], "detail": parts[2].where(parts[2] != "", parts[0])}
        )
        grouped = table.groupby("subject", sort=False)["detail"].agg(["size", "first"])
        for subject, size, first in grouped.itertuples():
            self._counts[subject] = self._counts.get(subject, 0) + int(size)
            self._examples.setdefault(subject, str(first))

    def counts(self) -> dict[str, int]:
        """Rows per subject, most frequent first."""
        ranked = sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return dict(ranked)

    def summary(self, top: int = 3) -> str:
        """The most frequent problems, each with a count and an example ('' when none)."""
        return "; ".join(
            f"{subject} ({n:,} rows, e.g. {self._examples[subject]})"
            for subject, n in list(self.counts().items())[:top]
        )


def _plain(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:128] or "unknown"


def rejection_folder(batch_id: str, version: str | None) -> str:
    """Where the rejection of one version of a batch's file is recorded in the lakehouse."""
    return f"{REJECTED}/batch={check_batch_id(batch_id)}/version={_plain(version or 'unknown')}"


def record_rejection(
    lakehouse: Lakehouse,
    batch_id: str,
    *,
    reason: str,
    source: str,
    file: LandedFile | None,
    copy: Opener | None,
    rows_quarantined: int,
    feed: Mapping[str, str] | None = None,
) -> str:
    """Record a file that could not be ingested; return the record's folder URI.

    Writes ``rejection.json`` (reason, source URI, version, size, feed, time) and, when
    ``copy`` opens the file, a copy of it beside it (streamed, never held in memory), under
    ``rejected/claims/batch=ID/version=V/``. A file over the size limit or of an unsupported
    type is not copied; it stays in the landing zone, which is never cleaned by the pipeline.
    Rerunning the same version replaces its record; another version gets its own.
    """
    folder = rejection_folder(batch_id, file.version if file else None)
    copied = copy is not None and file is not None
    if copy is not None and file is not None:
        with copy() as stream:
            lakehouse.write_stream(f"{folder}/{os.path.basename(file.name)}", stream)
    record: dict[str, Any] = {
        "batch_id": batch_id,
        "reason": reason,
        "source": source,
        "file": file.name if file else None,
        "version": file.version if file else None,
        "size": file.size if file else None,
        "copied": copied,
        "rows_quarantined": rows_quarantined,
        **(feed or {}),
        "rejected_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    lakehouse.write_json(f"{folder}/rejection.json", record)
    return lakehouse.url(folder)


def rejections(lakehouse: Lakehouse, batch_id: str) -> list[dict[str, Any]]:
    """Every recorded rejection of a batch's files, oldest version first."""
    base = f"{REJECTED}/batch={check_batch_id(batch_id)}"
    return [
        lakehouse.read_json(f"{base}/{rel}")
        for rel in lakehouse.find(base)
        if rel.endswith("/rejection.json")
    ]
