"""raw_claims and quarantined_claims: one landing file, split by the claims contract.

Every landed file ends in one of three ways, and the blocking ``claims_contract`` check says
which (downstream assets run only when it passes):

* read and validated: valid rows to raw, failing rows to quarantine with their reasons; the
  check fails when the share of rejected rows is over the limit, naming the main problems, or
  when a column's share of nulls is implausible (a column lost upstream). Its metadata links
  the batch's GX Data Docs page (``quality/data_docs/`` in the lakehouse).
* rejected as a whole (empty, corrupt, unreadable, over the size limit, required columns
  missing): raw gets an empty partition, every row that could be read goes to quarantine with
  the file's reason, and the file is recorded under ``rejected/`` (a copy and the reason). The
  check fails with the reason.
* not found, or ambiguous (two files map to the batch): nothing is written to the batch, the
  problem is recorded under ``rejected/`` and the check fails with it.

The landed file itself is never moved or deleted.
"""

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from expectations.claims import ClaimsValidation, validate_claims
from fraud_assets.checks import (
    CLAIMS_CONTRACT,
    ClaimsContractConfig,
    claims_contract,
    claims_rejected,
)
from fraud_assets.owners import OWNERS
from fraud_assets.partitions import landing_batches
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.landing import LandingZone
from fraud_core.lakehouse import Lakehouse
from fraud_core.landing import (
    LandedFile,
    check_size,
    empty_claims,
    quarantine_all,
    read_claims_file,
    record_rejection,
)
from fraud_core.layout import QUARANTINE, RAW
from fraud_core.schema import QUARANTINE_REASON_COLUMN, SchemaError


@dataclass
class LandedBatch:
    """A batch's landed file as read: validated rows, or why the file cannot be ingested.

    ``file`` is None when there is no single file to ingest (gone, or ambiguous); ``rows`` is
    what could be read when the file was rejected as a whole.
    """

    file: LandedFile | None
    data: bytes | None = None
    rows: pd.DataFrame | None = None
    validation: ClaimsValidation | None = None
    rejection: str | None = None

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame, int, list[str]]:
        """(valid rows, quarantined rows, rows in, ignored columns) to write for the batch."""
        if self.validation is not None:
            v = self.validation
            return v.valid, v.quarantined, v.rows_in, v.ignored_columns
        quarantined = quarantine_all(self.rows, self.rejection or "file rejected")
        return empty_claims(), quarantined, len(quarantined), []


def load_landed_batch(landing: LandingZone, batch_id: str) -> LandedBatch:
    """Find, size-check, read and validate a batch's file; file-level problems are returned.

    Store errors (network, permissions) and suite bugs are raised: they are not the file's
    fault and the run must fail loudly.
    """
    try:
        landed = landing.find(batch_id)
    except (FileNotFoundError, ValueError) as exc:  # gone, or ambiguous
        return LandedBatch(None, rejection=str(exc))
    try:
        check_size(landed.name, landed.size, landing.max_file_bytes)  # before downloading
    except SchemaError as exc:
        return LandedBatch(landed, rejection=str(exc))
    try:
        data = landing.read(landed.name)
    except FileNotFoundError as exc:  # removed between listing and reading
        return LandedBatch(None, rejection=str(exc))
    batch = LandedBatch(landed, data)
    try:
        batch.rows = read_claims_file(landed.name, data, landing.max_file_bytes)
        batch.validation = validate_claims(batch.rows)
    except SchemaError as exc:
        base = os.path.basename(landed.name)
        reason = str(exc)
        batch.rejection = reason if reason.startswith(f"{base}:") else f"{base}: {reason}"
    return batch


@dg.multi_asset(
    outs={
        "raw_claims": dg.AssetOut(
            description="Validated claims of one landed file.",
            is_required=False,
            owners=OWNERS,
            kinds={"pandas", "parquet"},
        ),
        "quarantined_claims": dg.AssetOut(
            description="Rejected rows of one landed file, as received, with their reasons.",
            is_required=False,
            owners=OWNERS,
            kinds={"pandas", "parquet"},
        ),
    },
    partitions_def=landing_batches,
    check_specs=[CLAIMS_CONTRACT],
    group_name="claims",
)
def claims_batch(
    context: dg.AssetExecutionContext,
    config: ClaimsContractConfig,
    lakehouse: LakehouseResource,
    landing: LandingZone,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Read the landed file, validate every row, write valid and quarantined rows."""
    batch_id = context.partition_key
    lh = lakehouse.get()
    batch = load_landed_batch(landing, batch_id)
    source = landing.file_uri(batch.file.name) if batch.file else landing.location
    about = {"file": source, "version": batch.file.version if batch.file else "none"}
    if batch.rejection is not None:
        rows_quarantined = 0
        if batch.file is not None:  # mirror the file: no valid rows, every readable row held
            rows_quarantined = len((yield from _write_batch(lh, batch_id, batch, about)))
        record = record_rejection(
            lh,
            batch_id,
            reason=batch.rejection,
            source=source,
            file=batch.file,
            data=batch.data,
            rows_quarantined=rows_quarantined,
        )
        yield claims_rejected(
            batch.rejection,
            {**about, "rejection": record, "rows_quarantined": rows_quarantined},
        )
        return
    yield from _write_batch(lh, batch_id, batch, about)
    assert batch.validation is not None  # no rejection: the file was validated
    yield claims_contract(batch.validation, config, lh, batch_id, about)


def _write_batch(
    lh: Lakehouse, batch_id: str, batch: LandedBatch, about: dict[str, str]
) -> Generator[dg.MaterializeResult, None, pd.DataFrame]:
    """Write raw and quarantine partitions, yield their materializations; return quarantine."""
    valid, quarantined, rows_in, ignored = batch.split()
    raw_uri = lh.write_batch(RAW, batch_id, valid)
    quarantine_uri = lh.write_batch(QUARANTINE, batch_id, quarantined)
    yield dg.MaterializeResult(
        asset_key="raw_claims",
        metadata={
            **about,
            "rows_in": rows_in,
            "dagster/row_count": len(valid),
            "quarantined": len(quarantined),
            "uri": dg.MetadataValue.path(raw_uri),
            "ignored_columns": ", ".join(ignored) or "none",
        },
    )
    top = quarantined[QUARANTINE_REASON_COLUMN].value_counts().head(10)
    yield dg.MaterializeResult(
        asset_key="quarantined_claims",
        metadata={
            "dagster/row_count": len(quarantined),
            "uri": dg.MetadataValue.path(quarantine_uri),
            "top_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in top.items()}),
        },
    )
    return quarantined
