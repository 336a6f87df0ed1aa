"""Ingesting one landed file into its batch, a chunk at a time.

Each chunk of rows is read (:mod:`fraud_core.readers`), mapped onto the claim schema by the
file's feed contract (:mod:`fraud_core.feeds`), validated (a :class:`ChunkValidator`: the claims
contract, which keeps what needs the whole file across chunks), cleared of claims delivered
before (:mod:`fraud_core.claim_versions`) and appended to the batch's raw and quarantine
partitions, which appear whole when the file is done (or not at all). Memory is bounded by the
chunk, whatever the file's size.

Every row read is accounted for: ``rows_in = valid + quarantined + re_delivered``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fraud_core.claim_versions import (
    INGEST_METADATA,
    batch_lineage,
    content_hashes,
    earlier_claims,
    record_lineage,
    with_versions,
)
from fraud_core.feeds import FeedContract
from fraud_core.lakehouse import Lakehouse, PartitionWriter
from fraud_core.landing import LandedFile, empty_claims, quarantine_all
from fraud_core.layout import QUARANTINE, RAW
from fraud_core.readers import DEFAULT_CHUNK_ROWS, Opener, read_chunks
from fraud_core.schema import ROW_NUMBER_COLUMN, SchemaError


class ChunkValidator(Protocol):
    """Splits a file's next rows into valid (typed) and quarantined (as received, with
    reasons, ``source_row`` counted from the file's start)."""

    def check(
        self, claims: pd.DataFrame, received: pd.DataFrame | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]: ...


@dataclass
class IngestCounts:
    """Where a file's rows went."""

    rows_in: int = 0
    valid: int = 0  # written to raw: new claims and corrections
    corrections: int = 0  # of which: new versions of claims delivered before
    re_delivered: int = 0  # same content as a claim delivered before: not written
    quarantined: int = 0


@dataclass
class Ingested:
    """A batch written from its file: the counts, where the partitions are, its lineage."""

    counts: IngestCounts
    raw_uri: str
    quarantine_uri: str
    lineage: dict[str, Any] = field(default_factory=dict)


def raw_template() -> pd.DataFrame:
    """No claims, with the columns and types of a raw partition."""
    return with_versions(empty_claims(), np.array([], dtype=np.uint64), np.array([], object))


def _lineage(
    lakehouse: Lakehouse, batch_id: str, file: LandedFile, feed: FeedContract
) -> dict[str, Any]:
    """What the batch records about itself; its first ingestion's time survives reruns."""
    first = batch_lineage(lakehouse, batch_id).get("ingested_at")
    return {
        "batch_id": batch_id,
        "ingested_at": first or datetime.now(UTC).isoformat(timespec="microseconds"),
        "file": file.name,
        "file_version": file.version,
        **feed.lineage(),
    }


def ingest_file(
    lakehouse: Lakehouse,
    batch_id: str,
    file: LandedFile,
    opener: Opener,
    feed: FeedContract,
    validator: ChunkValidator,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Ingested:
    """Read, validate and write one landed file as batch ``batch_id``, chunk by chunk.

    Raises:
        SchemaError: the file cannot be ingested as a whole (unreadable, required columns
            missing...); nothing is written (see :func:`quarantine_rejected`).
        fraud_core.readers.StoreError: the store failed while the file was read.
    """
    lineage = _lineage(lakehouse, batch_id, file, feed)
    index = earlier_claims(lakehouse, batch_id)
    raw = lakehouse.partition_writer(RAW, batch_id, raw_template())
    quarantine = lakehouse.partition_writer(QUARANTINE, batch_id, quarantine_all(None, ""))
    counts = IngestCounts()
    try:
        for received in read_chunks(file.name, opener, feed, chunk_rows):
            valid, quarantined = validator.check(feed.apply(received), received)
            hashes = content_hashes(valid)
            delivery = index.classify(valid, hashes)
            new = ~delivery.re_delivered
            raw.write(with_versions(valid[new], hashes[new], delivery.supersedes[new]))
            quarantine.write(quarantined)
            counts.rows_in += len(received)
            counts.valid += int(new.sum())
            counts.corrections += delivery.corrections
            counts.re_delivered += int(delivery.re_delivered.sum())
            counts.quarantined += len(quarantined)
    except BaseException:
        raw.abort()
        quarantine.abort()
        raise
    lineage.update(asdict(counts))
    return _commit(lakehouse, batch_id, raw, quarantine, counts, lineage)


def _commit(
    lakehouse: Lakehouse,
    batch_id: str,
    raw: PartitionWriter,
    quarantine: PartitionWriter,
    counts: IngestCounts,
    lineage: dict[str, Any],
) -> Ingested:
    """Replace the batch's raw and quarantine partitions (a commit each), then its lineage row."""
    commit = {INGEST_METADATA: json.dumps(lineage, sort_keys=True)}
    raw_uri = raw.commit(commit)
    quarantine_uri = quarantine.commit(commit)
    record_lineage(lakehouse, batch_id, lineage)
    return Ingested(counts, raw_uri, quarantine_uri, lineage)


def quarantine_rejected(
    lakehouse: Lakehouse,
    batch_id: str,
    file: LandedFile,
    opener: Opener | None,
    feed: FeedContract,
    reason: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Ingested:
    """A file rejected as a whole: raw gets an empty partition, and every row that can be
    read (up to where the file breaks; none when ``opener`` is None) goes to quarantine as
    received, with the file's reason, so a fixed file can be replayed from it."""
    lineage = _lineage(lakehouse, batch_id, file, feed)
    raw = lakehouse.partition_writer(RAW, batch_id, raw_template())
    quarantine = lakehouse.partition_writer(QUARANTINE, batch_id, quarantine_all(None, reason))
    counts = IngestCounts()
    try:
        if opener is not None:
            try:
                for received in read_chunks(file.name, opener, feed, chunk_rows):
                    rows = quarantine_all(received, reason)
                    rows[ROW_NUMBER_COLUMN] += counts.rows_in
                    quarantine.write(rows)
                    counts.rows_in += len(rows)
            except SchemaError:
                pass  # the rest of the file cannot be read: the rows before are kept
        counts.quarantined = counts.rows_in
    except BaseException:
        raw.abort()
        quarantine.abort()
        raise
    lineage.update(asdict(counts), rejected=reason)
    return _commit(lakehouse, batch_id, raw, quarantine, counts, lineage)
