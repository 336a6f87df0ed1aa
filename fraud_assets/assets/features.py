"""claim_features: model features of one batch, with earlier claims as history."""

import dagster as dg

from fraud_assets.partitions import landing_batches
from fraud_assets.resources import LakehouseResource
from fraud_core.features import NUMERIC_FEATURES
from fraud_core.lakehouse import FEATURES
from fraud_core.pipeline import featurize_batch


@dg.asset(
    partitions_def=landing_batches,
    deps=["raw_claims"],
    group_name="claims",
)
def claim_features(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    """Model features per claim: amounts, timing and history per policyholder and provider."""
    lh = lakehouse.get()
    features = featurize_batch(lh, context.partition_key)
    means = features[list(NUMERIC_FEATURES)].mean().round(4).to_dict()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(features),
            "uri": dg.MetadataValue.path(lh.url(lh.batch_file(FEATURES, context.partition_key))),
            "feature_means": dg.MetadataValue.json(means),
        }
    )
