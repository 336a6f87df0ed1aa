"""raw_claims and quarantined_claims: one landing file, split by the claims contract."""

import dagster as dg

from expectations.claims import validate_claims
from fraud_assets.partitions import landing_batches
from fraud_assets.resources import LakehouseResource, LocalLanding
from fraud_core.lakehouse import QUARANTINE, RAW
from fraud_core.landing import read_claims_file
from fraud_core.schema import QUARANTINE_REASON_COLUMN, SchemaError

CONTRACT_CHECK = "claims_contract"


class ClaimsContractConfig(dg.Config):
    max_failure_rate: float = 0.05
    """Above this share of rejected rows the batch is stopped (downstream assets don't run)."""


@dg.multi_asset(
    outs={
        "raw_claims": dg.AssetOut(description="Validated claims of one landed file."),
        "quarantined_claims": dg.AssetOut(
            description="Rejected rows of one landed file, as received, with their reasons."
        ),
    },
    partitions_def=landing_batches,
    check_specs=[
        dg.AssetCheckSpec(
            CONTRACT_CHECK,
            asset="raw_claims",
            blocking=True,
            description="Great Expectations claims suite: share of rejected rows under the limit.",
        )
    ],
    group_name="claims",
)
def claims_batch(
    context: dg.AssetExecutionContext,
    config: ClaimsContractConfig,
    lakehouse: LakehouseResource,
    landing: LocalLanding,
):  # type: ignore[no-untyped-def]
    """Read the landed file, validate every row, write valid and quarantined rows."""
    batch_id = context.partition_key
    lh = lakehouse.get()
    landed = landing.find(batch_id)
    try:
        raw = read_claims_file(landed.name, landing.read(landed.name), landing.max_file_bytes)
        result = validate_claims(raw)
    except SchemaError as exc:
        raise dg.Failure(
            description=f"landing file {landed.name} was not ingested: {exc}",
            metadata={"file": landed.name, "kept at": landing.path},
        ) from exc
    raw_uri = lh.write_batch(RAW, batch_id, result.valid)
    quarantine_uri = lh.write_batch(QUARANTINE, batch_id, result.quarantined)
    top_reasons = (
        result.quarantined[QUARANTINE_REASON_COLUMN].value_counts().head(10).to_dict()
        if len(result.quarantined)
        else {}
    )
    yield dg.MaterializeResult(
        asset_key="raw_claims",
        metadata={
            "file": landed.name,
            "rows_in": result.rows_in,
            "dagster/row_count": len(result.valid),
            "quarantined": len(result.quarantined),
            "uri": dg.MetadataValue.path(raw_uri),
            "ignored_columns": ", ".join(result.ignored_columns) or "none",
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantined_claims",
        metadata={
            "dagster/row_count": len(result.quarantined),
            "uri": dg.MetadataValue.path(quarantine_uri),
            "top_reasons": dg.MetadataValue.json(top_reasons),
        },
    )
    passed = result.failure_rate <= config.max_failure_rate
    yield dg.AssetCheckResult(
        check_name=CONTRACT_CHECK,
        asset_key="raw_claims",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(result.quarantined)} of {result.rows_in} rows rejected "
            f"({result.failure_rate:.2%}; limit {config.max_failure_rate:.2%})"
        ),
        metadata={
            "failure_rate": result.failure_rate,
            "max_failure_rate": config.max_failure_rate,
            "failures_by_expectation": dg.MetadataValue.json(result.failures_by_expectation),
        },
    )
