"""claim_scores: the champion's fraud score and decision for every claim of a batch."""

from collections.abc import Iterator

import dagster as dg

from fraud_assets.checks import (
    NO_CHAMPION,
    SCORE_DRIFT_CHECK,
    SCORES_CONTRACT,
    contract_result,
    selected,
    skip,
)
from fraud_assets.owners import OWNERS
from fraud_assets.partitions import landing_batches
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_core.layout import SCORES
from fraud_core.pipeline import score_batch
from fraud_core.registry import champion_bundle
from fraud_core.schema import DECISION_COLUMN, Decision


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "claim_scores",
            deps=["claim_features", "champion_model"],
            description="Fraud score (calibrated probability) and decision per claim, with the "
            "model version.",
            group_name="scoring",
            owners=OWNERS,
            kinds={"pytorch", "delta"},
            # Before the first model is promoted there is nothing to score with; the batch is
            # scored when claim_scores runs again after champion_model.
            skippable=True,
        )
    ],
    check_specs=[SCORES_CONTRACT, SCORE_DRIFT_CHECK.spec],
    partitions_def=landing_batches,
    can_subset=True,  # checks are optional outputs: one with nothing to check is skipped
)
def claim_scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Score the batch's features with the champion (loaded once); check the scores."""
    lh = lakehouse.get()
    batch_id = context.partition_key
    champion = champion_bundle(lh)
    if champion is None:
        context.log.warning(f"batch {batch_id} left unscored: {NO_CHAMPION}")
        skip(context, NO_CHAMPION, SCORES_CONTRACT, SCORE_DRIFT_CHECK.spec)
        return
    scores = score_batch(lh, batch_id, champion)
    alerts = int((scores[DECISION_COLUMN] == Decision.INVESTIGATE).sum())
    yield dg.MaterializeResult(
        asset_key="claim_scores",
        metadata={
            "dagster/row_count": len(scores),
            "model_version": champion.version,
            "alerts": alerts,
            "alert_rate": alerts / max(len(scores), 1),
            "mean_score": float(scores["fraud_score"].mean()),
            "uri": dg.MetadataValue.path(lh.batch_url(SCORES, batch_id)),
            "delta_version": lh.table_version(SCORES),
        },
    )
    if selected(context, SCORES_CONTRACT):
        from expectations.scores import validate_scores

        yield contract_result(SCORES_CONTRACT, validate_scores(scores), lh, batch_id)
    if selected(context, SCORE_DRIFT_CHECK.spec):
        frame = scores.rename(columns={"fraud_score": "score"})
        yield SCORE_DRIFT_CHECK.evaluate(lh, champion, batch_id, frame)
