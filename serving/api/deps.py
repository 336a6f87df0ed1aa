"""What requests read from the app: the :class:`Service` in ``app.state.service`` (built once
by :func:`serving.main.create_app`), and the dependencies over it: the model serving now, the
champion, the settings, the metrics, the claim body.

The API key is checked before routing, by :class:`serving.core.security.ApiKeyGuard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette

from serving.api.models import Claim, claim_context, load_example
from serving.core.batching import LoopBatcher
from serving.core.champion import Champion, LoadedModel
from serving.core.config import Settings
from serving.core.metrics import Metrics

# The OpenAPI request body of a route that reads its claim with :func:`read_claim`.
CLAIM_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Claim"}}},
    }
}


@dataclass(frozen=True, slots=True)
class Service:
    """The app's state: its settings, collectors, champion and micro-batcher."""

    settings: Settings
    metrics: Metrics
    champion: Champion
    batcher: LoopBatcher

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        """A service with nothing loaded yet (the champion loads in the app's lifespan)."""
        metrics = Metrics()
        example = vars(Claim.model_validate(load_example()))  # checks every model loaded
        return cls(
            settings=settings,
            metrics=metrics,
            champion=Champion(
                settings.lakehouse_uri, metrics, example, reload_history=settings.reload_history
            ),
            batcher=LoopBatcher(on_flush=metrics.claims_per_pass.observe),
        )


def service_of(app: Starlette) -> Service:
    """The app's service (``request.app`` in a request)."""
    service: Service = app.state.service
    return service


async def read_claim(request: Request) -> BaseModel:
    """The body as a :data:`~serving.api.models.Claim`, or a 422 like FastAPI's own
    (``loc`` starts with ``"body"``).

    One pass of pydantic's JSON parser over the bytes, where a ``Claim`` body parameter parses
    the JSON, then validates the dict, through FastAPI's dependency machinery (bench/serve.py:
    ``echo_fastapi_throughput`` against ``echo_throughput``). Routes using it declare
    :data:`CLAIM_REQUEST_BODY` in their ``openapi_extra``.
    """
    skew = service_of(request.app).settings.claim_date_max_skew_days
    try:
        return Claim.model_validate_json(await request.body(), context=claim_context(skew))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def current_model(champion: Champion) -> LoadedModel:
    """The model serving at the time of the call; 503 when none is loaded.

    The request keeps this object even if a new champion is swapped in while it runs.
    """
    model = champion.model
    if model is None:
        reason = champion.error or "not loaded yet"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no model loaded: {reason}")
    return model


async def get_champion(request: Request) -> Champion:
    """The app's champion."""
    return service_of(request.app).champion


async def get_model(request: Request) -> LoadedModel:
    """:func:`current_model` as a dependency."""
    return current_model(service_of(request.app).champion)


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return service_of(request.app).settings


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus collectors."""
    return service_of(request.app).metrics


ChampionDep = Annotated[Champion, Depends(get_champion)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
