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
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from expectations.claims import ClaimsValidation, build_claims_suite, validate_claims
from fraud_assets.monitoring import data_docs_link
from fraud_assets.partitions import landing_batches
from fraud_assets.resources import LakehouseResource, LandedFile, LandingZone
from fraud_core.lakehouse import Lakehouse
from fraud_core.landing import (
    check_size,
    empty_claims,
    quarantine_all,
    read_claims_file,
    record_rejection,
)
from fraud_core.layout import QUARANTINE, RAW
from fraud_core.schema import QUARANTINE_REASON_COLUMN, SchemaError

CONTRACT_CHECK = "claims_contract"


class ClaimsContractConfig(dg.Config):
    max_failure_rate: float = 0.05
    """Above this share of rejected rows the batch is stopped (downstream assets don't run)."""
    stop_on_implausible_nulls: bool = True
    """Stop the batch when a column's share of nulls is over its plausible bound (the schema's
    ``max_null_fraction``: a column lost upstream), whatever the share of rejected rows."""


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


def problem_summary(quarantined: pd.DataFrame, top: int = 3) -> str:
    """The most frequent problems among quarantined rows, each with a count and an example.

    Reasons read ``subject: detail`` (a column or a rule, then what is wrong), several per row
    joined by ``"; "``.
    """
    if quarantined.empty:
        return ""
    reasons = quarantined[QUARANTINE_REASON_COLUMN].astype(str).str.split("; ").explode()
    parts = reasons.str.partition(": ")
    table = pd.DataFrame({"subject": parts[0], "detail": parts[2].where(parts[2] != "", parts[0])})
    grouped = table.groupby("subject", sort=False)["detail"].agg(["size", "first"])
    ranked = grouped.reset_index().sort_values(["size", "subject"], ascending=[False, True])
    return "; ".join(
        f"{row.subject} ({row.size:,} rows, e.g. {row.first})"
        for row in ranked.head(top).itertuples()
    )


@dg.multi_asset(
    outs={
        "raw_claims": dg.AssetOut(
            description="Validated claims of one landed file.", is_required=False
        ),
        "quarantined_claims": dg.AssetOut(
            description="Rejected rows of one landed file, as received, with their reasons.",
            is_required=False,
        ),
    },
    partitions_def=landing_batches,
    check_specs=[
        dg.AssetCheckSpec(
            CONTRACT_CHECK,
            asset="raw_claims",
            blocking=True,
            description="The file could be read as claims, and the share of rows the Great "
            "Expectations claims suite rejects is under the limit.",
        )
    ],
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
        yield dg.AssetCheckResult(
            check_name=CONTRACT_CHECK,
            asset_key="raw_claims",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"file rejected: {batch.rejection}",
            metadata={**about, "rejection": record, "rows_quarantined": rows_quarantined},
        )
        return
    yield from _write_batch(lh, batch_id, batch, about)
    assert batch.validation is not None  # no rejection: the file was validated
    docs = data_docs_link(lh, batch.validation.report, build_claims_suite(), batch_id)
    yield _contract_check(batch.validation, config, {**about, **docs})


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


def _contract_check(
    result: ClaimsValidation, config: ClaimsContractConfig, about: Mapping[str, Any]
) -> dg.AssetCheckResult:
    """The contract on a validated file: the share of rejected rows against the limit, and
    every column's share of nulls against its plausible bound."""
    max_failure_rate = config.max_failure_rate
    summary = problem_summary(result.quarantined)
    broken = "; ".join(f"{key}: {seen}" for key, seen in result.batch_failures.items())
    nulls_ok = not (result.batch_failures and config.stop_on_implausible_nulls)
    return dg.AssetCheckResult(
        check_name=CONTRACT_CHECK,
        asset_key="raw_claims",
        passed=result.failure_rate <= max_failure_rate and nulls_ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(result.quarantined):,} of {result.rows_in:,} rows rejected "
            f"({result.failure_rate:.2%}; limit {max_failure_rate:.2%})"
            + (f": {summary}" if summary else "")
            + (f". Implausible share of nulls: {broken}" if broken else "")
        ),
        metadata={
            **about,
            "failure_rate": result.failure_rate,
            "max_failure_rate": max_failure_rate,
            "failures_by_expectation": dg.MetadataValue.json(result.failures_by_expectation),
            "batch_failures": dg.MetadataValue.json(result.batch_failures),
        },
    )
