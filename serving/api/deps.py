"""Request dependencies: the model serving now, the settings, the metrics, the claim body.

The API key is checked before routing, by :class:`serving.core.security.ApiKeyGuard`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from serving.api.models import Claim
from serving.core.champion import LoadedModel
from serving.core.config import Settings
from serving.core.metrics import Metrics

# The OpenAPI request body of a route that reads its claim with :func:`read_claim`.
CLAIM_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Claim"}}},
    }
}


async def read_claim(request: Request) -> BaseModel:
    """The body as a :data:`~serving.api.models.Claim`, or a 422 like FastAPI's own
    (``loc`` starts with ``"body"``).

    One pass of pydantic's JSON parser over the bytes: a ``Claim`` body parameter costs ~17 us
    more per request here (``json.loads``, then validation of the dict, through FastAPI's
    dependency machinery). Routes using it declare :data:`CLAIM_REQUEST_BODY` in their
    ``openapi_extra``.
    """
    try:
        return Claim.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def current_model(request: Request) -> LoadedModel:
    """The model in ``app.state`` at the time of the request; 503 when none is loaded.

    The request keeps this object even if a new champion is swapped in while it runs.
    """
    model: LoadedModel | None = request.app.state.model
    if model is None:
        reason = request.app.state.model_error or "not loaded yet"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no model loaded: {reason}")
    return model


async def get_model(request: Request) -> LoadedModel:
    """:func:`current_model` as a dependency."""
    return current_model(request)


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus collectors."""
    metrics: Metrics = request.app.state.metrics
    return metrics


ModelDep = Annotated[LoadedModel, Depends(get_model)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
