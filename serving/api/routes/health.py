"""Liveness and readiness probes, and the Prometheus metrics (no API key unless
``FRAUD_API_METRICS_REQUIRE_KEY=true``: see :class:`~serving.core.security.ApiKeyGuard`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.deps import ChampionDep, MetricsDep
from serving.api.models import Health, NotReady, Readiness
from serving.api.openapi import NOT_READY
from serving.core.champion import Champion

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """200 whenever the process answers (model loaded or not)."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=NOT_READY,
)
async def readyz(champion: ChampionDep) -> Readiness | JSONResponse:
    """200 with the model version when a model is loaded; 503 with the reason otherwise.

    `reload_error` is set while a newer champion is refused (the old model keeps serving).
    """
    return readiness(champion)


def readiness(champion: Champion) -> Readiness | JSONResponse:
    """The answer of ``/readyz`` (and of SageMaker's ``/ping``)."""
    model, error = champion.model, champion.error
    if model is None:
        body = NotReady(detail=f"no model loaded: {error or 'loading'}")
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE, content=body.model_dump()
        )
    return Readiness(
        model_version=model.version,
        champion_version=champion.pointer_version,
        loaded_at=model.loaded_at,
        reload_error=error,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format.",
        },
        401: {"description": "FRAUD_API_METRICS_REQUIRE_KEY=true and no valid X-API-Key."},
    },
)
async def metrics(collectors: MetricsDep) -> Response:
    """Request counts and latency histograms per route, the score distribution and decisions
    per model version, the serving model (`fraud_api_model_info`), reloads, process stats."""
    return Response(collectors.exposition(), media_type=CONTENT_TYPE_LATEST)
