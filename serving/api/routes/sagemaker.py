"""The SageMaker serving contract: ``GET /ping`` and ``POST /invocations`` on port 8080.

SageMaker runs the container as ``docker run IMAGE serve``, probes ``GET /ping`` (healthy on
200) and forwards every ``InvokeEndpoint`` call to ``POST /invocations`` with the caller's
body and content type. ``make deploy`` (fraud_cli.deploy) deploys the bundle as ``model.tar.gz``,
unpacked to ``/opt/ml/model`` as a one-model lakehouse (``LAKEHOUSE_URI=/opt/ml/model``), so
the container runs this same app.

``/invocations`` answers exactly what ``POST /v1/score/batch`` answers (one result per claim,
in order, invalid claims reported by index). SageMaker's runtime cannot send an ``X-API-Key``
(callers of ``InvokeEndpoint`` are authenticated by IAM in front of the container), so with
``FRAUD_API_SAGEMAKER=true`` the route is open; otherwise it wants a key like every ``/v1``
route (:class:`~serving.core.security.ApiKeyGuard`), so mounting it never opens a way around
the keys.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response, status
from fastapi.responses import JSONResponse

from serving.api.deps import ChampionDep, MetricsDep, SettingsDep, current_model
from serving.api.models import BatchResponse, Readiness, load_example
from serving.api.openapi import NO_MODEL, NOT_READY, TOO_MANY_CLAIMS
from serving.api.routes.health import readiness
from serving.api.routes.score import batch_response, check_batch_size, score_items

router = APIRouter(tags=["sagemaker"])

# Up to this many claims are scored on the event loop; more go to a worker thread, as a batch.
INLINE_CLAIMS = 16

InvocationBody = Annotated[
    dict[str, Any] | list[dict[str, Any]],
    Body(
        description='One claim (the fields of `Claim`), `{"instances": [claim, ...]}` (the '
        "SageMaker convention), or a list of claims. Each claim is validated on its own.",
        openapi_examples={
            "one claim": {"value": load_example()},
            "instances": {
                "value": {"instances": [load_example(), {**load_example(), "claim_id": "C-2"}]}
            },
            "list": {"value": [load_example()]},
        },
    ),
]


def _claims_of(payload: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims of an invocation body (a claim never has an ``instances`` field: unknown
    fields are refused, so the two object forms cannot be confused)."""
    if isinstance(payload, list):
        return payload
    if "instances" in payload:
        instances = payload["instances"]
        if len(payload) != 1 or not isinstance(instances, list):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                '{"instances": [...]} must hold a list of claims and nothing else',
            )
        if not all(isinstance(c, dict) for c in instances):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "every instance must be a claim object"
            )
        return instances
    return [payload]


@router.get(
    "/ping",
    response_model=Readiness,
    responses=NOT_READY,
)
async def ping(champion: ChampionDep) -> Readiness | JSONResponse:
    """SageMaker's health check: 200 when a model is loaded, else 503 (as `GET /readyz`)."""
    return readiness(champion)


@router.post(
    "/invocations",
    response_model=BatchResponse,
    responses={
        401: {"description": "Missing or invalid X-API-Key (unless FRAUD_API_SAGEMAKER=true)."},
        **TOO_MANY_CLAIMS,
        422: {"description": "The body is not a claim, a list of claims or `instances`."},
        **NO_MODEL,
    },
)
async def invocations(
    payload: InvocationBody,
    champion: ChampionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> Response:
    """SageMaker's inference route (`application/json`): the claims' scores, exactly as
    `POST /v1/score/batch` gives them (`results` in request order, an invalid claim reported by
    its `index` without failing the others), for one claim, a list or `{"instances": [...]}`.

    Each result carries the server's default number of `top_features`
    (`FRAUD_API_TOP_FEATURES`, 3 unless set): SageMaker passes no query string.
    """
    model = current_model(champion)
    claims = _claims_of(payload)
    if not claims:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no claims to score")
    check_batch_size(len(claims), settings, "invocation")
    args = (model, claims, settings.top_features, metrics, settings.claim_date_max_skew_days)
    if len(claims) <= INLINE_CLAIMS:
        return batch_response(score_items(*args))
    return batch_response(await asyncio.to_thread(score_items, *args))
