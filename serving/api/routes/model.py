"""The model currently serving."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import ScorerDep
from serving.api.models import ModelInfo

router = APIRouter(prefix="/v1", tags=["model"])


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={503: {"description": "No model loaded."}},
)
async def model_info(scorer: ScorerDep) -> ModelInfo:
    """Version, threshold, lineage and test metrics of the serving model."""
    bundle = scorer.bundle
    lineage = bundle.lineage
    return ModelInfo(
        version=bundle.version,
        created_at=bundle.created_at,
        threshold=bundle.threshold,
        metaflow_run=lineage.get("metaflow_run"),
        training_batches=list(lineage.get("training_batches", [])),
        metrics=bundle.metrics,
    )
