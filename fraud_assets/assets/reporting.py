"""model_metrics (the aggregated table) and its replica in the warehouse for BI."""

import dagster as dg

from fraud_assets.owners import OWNERS
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.warehouse import Warehouse
from fraud_core.layout import METRICS
from fraud_core.pipeline import aggregate_metrics, versions_in_scores


@dg.asset(deps=["claim_scores"], group_name="reporting", owners=OWNERS, kinds={"pandas", "delta"})
def model_metrics(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """Per model version, batch and day: volumes, alerts, fraud rate, precision, AP and drift."""
    from fraud_core.model.bundle import ModelBundle  # torch: only in the steps that need it

    lh = lakehouse.get()
    bundles = {v: ModelBundle.load(lh, v) for v in versions_in_scores(lh)}
    table = aggregate_metrics(lh, bundles)
    per_batch = (
        table.groupby(["model_version", "batch_id"], sort=True)
        .agg(
            days=("metric_date", "size"),
            claims_scored=("claims_scored", "sum"),
            alerts=("alerts", "sum"),
            average_precision=("batch_average_precision", "first"),
        )
        .reset_index()
    )
    per_batch.insert(5, "alert_rate", per_batch["alerts"] / per_batch["claims_scored"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "batches": len(per_batch),
            "uri": dg.MetadataValue.path(lh.table_url(METRICS)),
            "delta_version": lh.table_version(METRICS),
            "table": dg.MetadataValue.md(per_batch.round(4).to_markdown(index=False)),
        }
    )


@dg.asset(
    deps=["model_metrics"], group_name="reporting", owners=OWNERS, kinds={"snowflake", "duckdb"}
)
def snowflake_metrics_replica(
    lakehouse: LakehouseResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    """model_metrics upserted (MERGE on model version, batch and day) into the BI warehouse."""
    table = lakehouse.get().read_table(METRICS)
    result = warehouse.replicate_metrics(table)
    return dg.MaterializeResult(metadata={**result.metadata(), "warehouse": warehouse.location()})
