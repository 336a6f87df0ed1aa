"""The model currently serving, and its lineage back to the data it was trained on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fraud_core.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from serving.api.deps import ModelDep
from serving.api.models import ModelInfo
from serving.api.openapi import NO_MODEL, UNAUTHORIZED

router = APIRouter(prefix="/v1", tags=["model"])

ATTRIBUTION = (
    "gradient x input on the standardized inputs the MLP sees (numeric: log1p where the model "
    "logs, centred on the training mean and scaled, clipped to +-8; categories: the embedding "
    "vector, summed over its dimensions), in logit units: a first-order estimate of how far "
    "each input moves the claim's logit from a claim at the training mean"
)


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={**UNAUTHORIZED, **NO_MODEL},
)
async def model_info(model: ModelDep) -> ModelInfo:
    """Version, threshold, lineage (Metaflow run, Dagster runs, training batches, split) and
    held-out metrics of the serving model, and the history its features read."""
    bundle = model.scorer.bundle
    lineage: dict[str, Any] = bundle.lineage
    pointer = model.pointer
    return ModelInfo(
        version=bundle.version,
        trained_at=pointer.get("trained_at") or bundle.created_at or None,
        created_at=bundle.created_at,
        threshold=bundle.threshold,
        metaflow_run=model.lineage("metaflow_run"),
        dagster_run_id=model.lineage("dagster_run_id"),
        promoted_at=pointer.get("promoted_at"),
        promoted_by_run=pointer.get("promoted_by_run"),
        previous_version=pointer.get("previous_version"),
        bundle_uri=model.bundle_uri,
        training_batches=[str(b) for b in lineage.get("training_batches", [])],
        table_versions={str(k): int(v) for k, v in lineage.get("table_versions", {}).items()},
        split=dict(lineage.get("split", {})),
        hyperparameters=dict(lineage.get("hyperparameters", {})),
        metrics=bundle.metrics,
        features={"numeric": list(NUMERIC_FEATURES), "categorical": list(CATEGORICAL_FEATURES)},
        attribution=ATTRIBUTION,
        history_batches=list(model.scorer.history_batches),
        history_claims=len(model.scorer.history),
        loaded_at=model.loaded_at,
        champion=dict(pointer),
    )
