"""claim_features: model features of one batch, with earlier claims as history."""

import dagster as dg

from expectations.features import validate_features
from fraud_assets.monitoring import (
    FEATURE_DRIFT_CHECK,
    contract_result,
    contract_spec,
    drift_check,
    drift_spec,
)
from fraud_assets.partitions import landing_batches
from fraud_assets.resources import LakehouseResource
from fraud_core.drift import MONITORED_FEATURES
from fraud_core.features import NUMERIC_FEATURES
from fraud_core.layout import FEATURE_DRIFT, FEATURES
from fraud_core.pipeline import featurize_batch


@dg.asset(
    partitions_def=landing_batches,
    deps=["raw_claims"],
    group_name="claims",
    check_specs=[
        contract_spec("features_contract", "claim_features"),
        drift_spec(FEATURE_DRIFT_CHECK, "claim_features"),
    ],
)
def claim_features(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):  # type: ignore[no-untyped-def]
    """Model features per claim: amounts, timing and history per policyholder and provider."""
    lh = lakehouse.get()
    batch_id = context.partition_key
    features = featurize_batch(lh, batch_id)
    means = features[list(NUMERIC_FEATURES)].mean().round(4).to_dict()
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(features),
            "uri": dg.MetadataValue.path(lh.url(lh.batch_file(FEATURES, batch_id))),
            "feature_means": dg.MetadataValue.json(means),
        }
    )
    yield contract_result(
        validate_features(features), "features_contract", "claim_features", lh, batch_id
    )
    yield drift_check(
        lh,
        batch_id,
        features,
        MONITORED_FEATURES,
        FEATURE_DRIFT,
        FEATURE_DRIFT_CHECK,
        "claim_features",
    )
