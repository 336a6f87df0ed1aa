"""claim_features: model features of one batch, with earlier claims as history."""

from collections.abc import Iterator

import dagster as dg

from fraud_assets.checks import (
    FEATURE_DRIFT_CHECK,
    FEATURES_CONTRACT,
    NO_CHAMPION,
    contract_result,
    selected,
    skip,
)
from fraud_assets.owners import OWNERS
from fraud_assets.partitions import landing_batches
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_core.features import NUMERIC_FEATURES
from fraud_core.layout import FEATURES
from fraud_core.pipeline import featurize_batch
from fraud_core.registry import champion_bundle


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "claim_features",
            deps=["raw_claims"],
            description="Model features per claim: amounts, timing and history per "
            "policyholder and provider.",
            group_name="claims",
            owners=OWNERS,
            kinds={"duckdb", "delta"},
        )
    ],
    check_specs=[FEATURES_CONTRACT, FEATURE_DRIFT_CHECK.spec],
    partitions_def=landing_batches,
    can_subset=True,  # checks are optional outputs: one with nothing to check is skipped
)
def claim_features(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Featurize the batch's raw claims (every other batch as history); check the features."""
    lh = lakehouse.get()
    batch_id = context.partition_key
    features = featurize_batch(lh, batch_id)
    means = features[list(NUMERIC_FEATURES)].mean().round(4).to_dict()
    yield dg.MaterializeResult(
        asset_key="claim_features",
        metadata={
            "dagster/row_count": len(features),
            "uri": dg.MetadataValue.path(lh.batch_url(FEATURES, batch_id)),
            "delta_version": lh.table_version(FEATURES),
            "feature_means": dg.MetadataValue.json(means),
        },
    )
    if selected(context, FEATURES_CONTRACT):
        from expectations.features import validate_features

        yield contract_result(FEATURES_CONTRACT, validate_features(features), lh, batch_id)
    if selected(context, FEATURE_DRIFT_CHECK.spec):
        champion = champion_bundle(lh)
        if champion is None:
            skip(context, NO_CHAMPION, FEATURE_DRIFT_CHECK.spec)
        else:
            yield FEATURE_DRIFT_CHECK.evaluate(lh, champion, batch_id, features)
