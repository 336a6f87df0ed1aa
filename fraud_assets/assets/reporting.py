"""model_metrics (the aggregated table) and its replica in the warehouse for BI."""

import dagster as dg

from fraud_assets.resources import DuckDBWarehouse, LakehouseResource
from fraud_core.model.bundle import ModelBundle
from fraud_core.pipeline import METRICS_FILE, aggregate_metrics, versions_in_scores


@dg.asset(deps=["claim_scores"], group_name="reporting")
def model_metrics(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """Per model version and batch: volumes, alerts, fraud rate, AP and drift."""
    lh = lakehouse.get()
    bundles = {v: ModelBundle.load(lh, v) for v in versions_in_scores(lh)}
    table = aggregate_metrics(lh, bundles)
    shown = ["model_version", "batch_id", "claims_scored", "alert_rate", "average_precision"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "uri": dg.MetadataValue.path(lh.url(METRICS_FILE)),
            "table": dg.MetadataValue.md(table[shown].round(4).to_markdown(index=False)),
        }
    )


@dg.asset(deps=["model_metrics"], group_name="reporting")
def snowflake_metrics_replica(
    lakehouse: LakehouseResource, warehouse: DuckDBWarehouse
) -> dg.MaterializeResult:
    """model_metrics upserted (MERGE on model version and batch) into the BI warehouse."""
    table = lakehouse.get().read_parquet(METRICS_FILE)
    rows = warehouse.replicate_metrics(table)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": rows, "warehouse": warehouse.location()}
    )
