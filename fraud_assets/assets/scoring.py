"""claim_scores: the champion's fraud score and decision for every claim of a batch."""

import dagster as dg

from expectations.scores import validate_scores
from fraud_assets.monitoring import (
    SCORE_DRIFT_CHECK,
    contract_result,
    contract_spec,
    drift_check,
    drift_spec,
)
from fraud_assets.partitions import landing_batches
from fraud_assets.resources import LakehouseResource
from fraud_core.layout import SCORE_DRIFT, SCORES
from fraud_core.model.bundle import load_champion
from fraud_core.pipeline import score_batch
from fraud_core.schema import DECISION_COLUMN, Decision


@dg.asset(
    partitions_def=landing_batches,
    deps=["claim_features", "champion_model"],
    group_name="scoring",
    output_required=False,
    check_specs=[
        contract_spec("scores_contract", "claim_scores"),
        drift_spec(SCORE_DRIFT_CHECK, "claim_scores"),
    ],
)
def claim_scores(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):  # type: ignore[no-untyped-def]
    """Fraud score (calibrated probability) and decision per claim, with the model version."""
    lh = lakehouse.get()
    if lh.champion() is None:
        # Before the first model is promoted there is nothing to score with; the batch is
        # scored when claim_scores runs again after champion_model.
        context.log.warning("no champion model yet: batch left unscored until one is promoted")
        for check in ("scores_contract", SCORE_DRIFT_CHECK):  # check outputs are not optional
            yield dg.AssetCheckResult(
                check_name=check,
                asset_key="claim_scores",
                passed=True,
                description="not scored yet (no champion model): nothing to check",
            )
        return
    bundle = load_champion(lh)
    scores = score_batch(lh, context.partition_key, bundle)
    alerts = int((scores[DECISION_COLUMN] == Decision.INVESTIGATE).sum())
    yield dg.Output(
        None,
        metadata={
            "dagster/row_count": len(scores),
            "model_version": bundle.version,
            "alerts": alerts,
            "alert_rate": alerts / max(len(scores), 1),
            "mean_score": float(scores["fraud_score"].mean()),
            "uri": dg.MetadataValue.path(lh.url(lh.batch_file(SCORES, context.partition_key))),
        },
    )
    yield contract_result(
        validate_scores(scores), "scores_contract", "claim_scores", lh, context.partition_key
    )
    yield drift_check(
        lh,
        context.partition_key,
        scores.rename(columns={"fraud_score": "score"}),
        ("score",),
        SCORE_DRIFT,
        SCORE_DRIFT_CHECK,
        "claim_scores",
    )
