"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from serving.api.models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """200 whenever the process answers (model loaded or not)."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"description": "No model loaded; `detail` says why."}},
)
async def readyz(request: Request) -> Readiness | JSONResponse:
    """200 with the model version when a model is loaded; 503 with the reason otherwise."""
    state = request.app.state
    scorer = getattr(state, "scorer", None)
    error: str | None = getattr(state, "model_error", None)
    if scorer is None:
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content={"status": "not_ready", "detail": f"no model loaded: {error or 'loading'}"},
        )
    return Readiness(model_version=scorer.version, reload_error=error)
