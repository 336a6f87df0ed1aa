"""Converting a Parquet lakehouse (a file per batch: ``DATASET/batch=ID/part-0.parquet``, and
``metrics/model_metrics/part-0.parquet``) into the Delta tables of :data:`fraud_core.layout.TABLES`,
in place: ``fraud lakehouse migrate``.

Each batch file is read and written as its batch of the Delta table in the same folder (one
commit), then the old file is deleted. Raw batches go first, each with its lineage (the
ingest record its file's footer held) into the batch lineage table, so the order in which
batches were first ingested survives. Stopping half-way loses nothing: a rerun converts what
is left (a batch written twice is replaced, never appended).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fraud_core.claim_versions import INGEST_METADATA, as_raw, record_lineage
from fraud_core.lakehouse import LEGACY_PART_FILE, Lakehouse
from fraud_core.layout import LEGACY_METRICS_FILE, METRICS, RAW, TABLES


@dataclass
class Migration:
    """What :func:`migrate` converted: batches per table folder, and the metrics table."""

    batches: dict[str, int] = field(default_factory=dict)
    metrics_rows: int | None = None

    def describe(self) -> str:
        parts = [f"{path}: {n} batch(es)" for path, n in self.batches.items() if n]
        if self.metrics_rows is not None:
            parts.append(f"{METRICS}: {self.metrics_rows} row(s)")
        return "; ".join(parts) or "nothing to convert (already Delta tables)"


def legacy_batches(lakehouse: Lakehouse, dataset: str) -> list[str]:
    """Batches of ``dataset`` still stored as Parquet files (``batch=ID/part-0.parquet``)."""
    ids = []
    for rel in lakehouse.find(dataset):
        folder, _, name = rel.partition("/")
        if name == LEGACY_PART_FILE and folder.startswith("batch="):
            ids.append(folder.split("=", 1)[1])
    return sorted(ids)


def migrate(lakehouse: Lakehouse) -> Migration:
    """Convert every Parquet dataset of ``lakehouse`` into its Delta table, in place."""
    done = Migration()
    by_batch = [t for t in TABLES if t.by_batch and t.partitioned]
    by_batch.sort(key=lambda t: t.path != RAW)  # raw first: its lineage orders the batches
    for spec in by_batch:
        ids = legacy_batches(lakehouse, spec.path)
        for batch_id in ids:
            rel = f"{spec.path}/batch={batch_id}/{LEGACY_PART_FILE}"
            frame = lakehouse.read_parquet(rel)
            if spec.path == RAW:
                text = lakehouse.file_metadata(rel).get(INGEST_METADATA)
                lineage = json.loads(text) if text else {"batch_id": batch_id}
                lakehouse.write_batch(RAW, batch_id, as_raw(frame))
                record_lineage(lakehouse, batch_id, {**lineage, "migrated_from": rel})
            else:
                lakehouse.write_batch(spec.path, batch_id, frame)
            lakehouse.delete(f"{spec.path}/batch={batch_id}")
        done.batches[spec.path] = len(ids)
    if lakehouse.exists(LEGACY_METRICS_FILE):
        table = lakehouse.read_parquet(LEGACY_METRICS_FILE)
        lakehouse.write_table(METRICS, table)
        lakehouse.delete(LEGACY_METRICS_FILE)
        done.metrics_rows = len(table)
    return done
