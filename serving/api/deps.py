"""Request dependencies: the model serving now, the settings, the metrics, the API key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from serving.core.champion import LoadedModel
from serving.core.config import Settings
from serving.core.metrics import Metrics
from serving.core.security import API_KEY_HEADER, ApiKeys

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="One of the keys in FRAUD_API_KEYS (comma-separated on the server).",
)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless the request carries an accepted ``X-API-Key`` (or auth is disabled)."""
    keys: ApiKeys = request.app.state.api_keys
    if keys.accepts(key):
        return
    detail = f"missing {API_KEY_HEADER} header" if not key else f"invalid {API_KEY_HEADER}"
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": API_KEY_HEADER}
    )


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
ApiKey = Depends(require_api_key)
