"""raw_claims and quarantined_claims: one landing file, split by the claims contract.

The file is read with its feed's contract (``FEEDS_FILE``), a chunk at a time
(fraud_core.ingest), and every landed file ends in one of three ways, which the blocking
``claims_contract`` check says (downstream assets run only when it passes):

* read and validated: valid rows to raw (claims delivered before with the same content are
  counted as re-delivered and not written again; changed ones are corrections), failing rows
  to quarantine with their reasons; the check fails when the share of rejected rows is over
  the limit, naming the main problems, or when a column's share of nulls is implausible (a
  column lost upstream). Its metadata links the batch's GX Data Docs page
  (``quality/data_docs/`` in the lakehouse).
* rejected as a whole (empty, corrupt, unreadable, of an unsupported type, over the size
  limit, required columns missing): raw gets an empty partition, every row that could be read
  goes to quarantine with the file's reason, and the file is recorded under ``rejected/`` (a
  copy and the reason). The check fails with the reason.
* not found, or ambiguous (two files map to the batch): nothing is written to the batch, the
  problem is recorded under ``rejected/`` and the check fails with it.

The landed file itself is never moved or deleted.
"""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg

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
from fraud_core.feeds import FeedContract
from fraud_core.ingest import Ingested, ingest_file, quarantine_rejected
from fraud_core.lakehouse import Lakehouse
from fraud_core.landing import LandedFile, check_size, record_rejection
from fraud_core.readers import Opener, file_kind
from fraud_core.schema import DateWindow, SchemaError


@dg.multi_asset(
    outs={
        "raw_claims": dg.AssetOut(
            description="Validated claims of one landed file.",
            is_required=False,
            owners=OWNERS,
            kinds={"pandas", "delta"},
        ),
        "quarantined_claims": dg.AssetOut(
            description="Rejected rows of one landed file, as received, with their reasons.",
            is_required=False,
            owners=OWNERS,
            kinds={"pandas", "delta"},
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
    """Read the landed file with its feed's contract, validate every row, write valid and
    quarantined rows."""
    batch_id = context.partition_key
    lh = lakehouse.get()
    try:
        landed = landing.find(batch_id)
    except (FileNotFoundError, ValueError) as exc:  # gone, or ambiguous: nothing to write
        reason = str(exc)
        record = record_rejection(
            lh, batch_id, reason=reason, source=landing.location, file=None, copy=None,
            rows_quarantined=0,
        )  # fmt: skip
        yield claims_rejected(reason, {"file": landing.location, "rejection": record})
        return
    feed = landing.feeds().for_file(landed.name)
    about: dict[str, Any] = {
        "file": landing.file_uri(landed.name),
        "version": landed.version,
        **feed.lineage(),
    }
    try:  # refused before anything is read (and not copied)
        file_kind(landed.name, feed)
        check_size(landed.name, landed.size, landing.max_file_bytes)
        if landed.size == 0:
            raise SchemaError(f"{os.path.basename(landed.name)}: the file is empty")
    except SchemaError as exc:
        yield from _rejected(context, lh, landed, None, feed, str(exc), about)
        return
    from expectations.claims import ClaimsValidator

    validator = ClaimsValidator(
        feed.value_formats(), DateWindow.until_today(landing.claim_date_max_skew_days)
    )
    opener = landing.opener(landed.name)
    try:
        ingested = ingest_file(
            lh, batch_id, landed, opener, feed, validator, chunk_rows=landing.chunk_rows
        )
    except FileNotFoundError as exc:  # removed while it was read: its next version will run
        raise dg.Failure(f"{about['file']} disappeared while it was read: {exc}") from exc
    except SchemaError as exc:
        base = os.path.basename(landed.name)
        reason = str(exc) if str(exc).startswith(f"{base}:") else f"{base}: {exc}"
        yield from _rejected(context, lh, landed, opener, feed, reason, about)
        return
    yield from _materializations(ingested, about)
    yield claims_contract(validator, ingested.counts, config, lh, batch_id, about)


def _rejected(
    context: dg.AssetExecutionContext,
    lh: Lakehouse,
    landed: LandedFile,
    opener: Opener | None,
    feed: FeedContract,
    reason: str,
    about: dict[str, Any],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A file rejected as a whole: its readable rows quarantined (when ``opener`` can read
    it), a copy and the reason recorded, the contract failed with the reason."""
    batch_id = context.partition_key
    rejected = quarantine_rejected(lh, batch_id, landed, opener, feed, reason)
    yield from _materializations(rejected, about)
    rows = rejected.counts.quarantined
    record = record_rejection(
        lh, batch_id, reason=reason, source=about["file"], file=landed, copy=opener,
        rows_quarantined=rows, feed=feed.lineage(),
    )  # fmt: skip
    context.log.warning(f"file rejected: {reason}")
    yield claims_rejected(reason, {**about, "rejection": record, "rows_quarantined": rows})


def _materializations(batch: Ingested, about: dict[str, Any]) -> Iterator[dg.MaterializeResult]:
    """raw_claims and quarantined_claims as written, with where every row went."""
    counts = batch.counts
    yield dg.MaterializeResult(
        asset_key="raw_claims",
        metadata={
            **about,
            "rows_in": counts.rows_in,
            "dagster/row_count": counts.valid,
            "corrections": counts.corrections,
            "re_delivered": counts.re_delivered,
            "quarantined": counts.quarantined,
            "ingested_at": batch.lineage["ingested_at"],
            "uri": dg.MetadataValue.path(batch.raw_uri),
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantined_claims",
        metadata={
            "dagster/row_count": counts.quarantined,
            "uri": dg.MetadataValue.path(batch.quarantine_uri),
        },
    )
