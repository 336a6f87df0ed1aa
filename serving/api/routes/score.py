"""Scoring endpoints: one claim, or a batch where each claim stands or fails on its own.

Both run the fast path, no pandas per request: :meth:`~fraud_core.scoring.ClaimScorer.score_one`
for one claim (history windows and the network's forward + backward pass in compiled kernels:
bench/serve.py ``claim_fast_path``) in an ``async def`` endpoint, since a hand-off to the
threadpool would cost more than the work; :meth:`~fraud_core.scoring.ClaimScorer.score_records`
(vectorised numpy) for a batch, run off the event loop so probes and single claims go on
meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from fraud_core.schema import DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS, Decision
from fraud_core.scoring import FeatureContribution
from serving.api.deps import (
    CLAIM_REQUEST_BODY,
    MetricsDep,
    ModelDep,
    SettingsDep,
    current_model,
    read_claim,
    service_of,
)
from serving.api.errors import error_details
from serving.api.models import BatchRequest, BatchResponse, Claim, ScoreResponse, claim_context
from serving.api.openapi import NO_MODEL, TOO_MANY_CLAIMS, UNAUTHORIZED, Responses
from serving.core.champion import LoadedModel
from serving.core.config import MAX_TOP_FEATURES, Settings
from serving.core.metrics import Metrics

router = APIRouter(prefix="/v1", tags=["scoring"])

_COMMON: Responses = {
    **UNAUTHORIZED,
    413: {"description": "Request body larger than the server's limit; `detail` says it."},
    **NO_MODEL,
}
TopFeatures = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_TOP_FEATURES,
        description="How many contributing features to return per claim (0, the default: none).",
    ),
]

# Plain strings for the answers encoded by orjson on the hot path.
INVESTIGATE, FAST_TRACK = Decision.INVESTIGATE.value, Decision.FAST_TRACK.value


_TOP_FEATURES_PARAMETER = {
    "name": "top_features",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TOP_FEATURES},
    "description": "How many contributing features to return (0: none; default: the server's "
    "FRAUD_API_TOP_FEATURES, 3 unless set).",
}


def _top_k(request: Request, default: int) -> int:
    """``?top_features=`` of /v1/score, read by hand: a declared query parameter goes through
    FastAPI's dependency machinery, which /v1/score avoids (see :func:`score_claim`); the
    OpenAPI document still declares it."""
    if not request.scope["query_string"]:
        return default
    raw = request.query_params.get("top_features")
    if raw is None:
        return default
    value = int(raw) if raw.isdigit() and raw.isascii() else -1
    if not 0 <= value <= MAX_TOP_FEATURES:
        raise RequestValidationError(
            [
                {
                    "type": "top_features",
                    "loc": ("query", "top_features"),
                    "msg": f"top_features must be a whole number from 0 to {MAX_TOP_FEATURES}",
                    "input": raw,
                }
            ]
        )
    return value


def _contributions(top: list[FeatureContribution]) -> list[dict[str, Any]]:
    """Contributions as JSON objects (orjson writes a named tuple as a list)."""
    return [{"feature": c.feature, "value": c.value, "contribution": c.contribution} for c in top]


def check_batch_size(claims: int, settings: Settings, what: str) -> None:
    """413 when ``claims`` (in one ``what``) is over the server's ``max_batch_size``."""
    if claims > settings.max_batch_size:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{claims} claims in one {what}; this server accepts at most {settings.max_batch_size}",
        )


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses={
        **_COMMON,
        422: {
            "description": "Invalid claim: each problem with its `field`, `loc`, `type` and `msg`.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        },
    },
    openapi_extra={"parameters": [_TOP_FEATURES_PARAMETER], **CLAIM_REQUEST_BODY},
)
async def score_claim(request: Request) -> Response:
    """Fraud score, decision and top contributing features for one claim (a `Claim`).

    History features (the policyholder's and provider's earlier claims) come from the raw
    claims in the lakehouse. Invalid or unknown fields are refused with 422.
    """
    # The hot path: no FastAPI dependencies or body parameter (each costs more per request
    # than scoring the claim: bench/serve.py, echo_fastapi against echo); the body is
    # read by read_claim, the claim scored with the others of this pass of the event loop
    # (serving/core/batching.py) and the answer encoded directly (its shape is ScoreResponse,
    # checked by the tests).
    claim = await read_claim(request)
    service = service_of(request.app)
    model = current_model(service.champion)
    k = _top_k(request, service.settings.top_features)
    body = await service.batcher.submit(_score_one, model, vars(claim), k, service.metrics)
    return Response(body, media_type="application/json")


def _score_one(model: LoadedModel, record: dict[str, Any], k: int, metrics: Metrics) -> bytes:
    """One claim's answer to ``POST /v1/score`` (JSON), its score recorded in ``metrics``."""
    scored = model.scorer.score_one(record, k)
    metrics.observe_score(model.version, scored.fraud_score, scored.investigate)
    return orjson.dumps(
        {
            "claim_id": scored.claim_id,
            "fraud_score": scored.fraud_score,
            "decision": INVESTIGATE if scored.investigate else FAST_TRACK,
            "model_version": model.version,
            "threshold": model.scorer.bundle.threshold,
            "top_features": _contributions(scored.top_features),
        }
    )


def _duplicate_error(claim_id: str, first: int) -> list[dict[str, Any]]:
    return [
        {
            "field": "claim_id",
            "loc": ["claim_id"],
            "type": "duplicate_claim_id",
            "msg": f"claim_id {claim_id!r} repeats the claim at index {first}",
        }
    ]


def score_items(
    model: LoadedModel,
    items: list[dict[str, Any]],
    top_k: int = 0,
    metrics: Metrics | None = None,
    max_skew_days: int = DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS,
) -> dict[str, Any]:
    """Validate each item on its own, score the valid ones together, answer in item order.

    The answer is a ``BatchResponse`` as plain JSON-ready values, encoded by orjson: building
    and re-validating pydantic results costs several times more (the tests check its shape
    against ``BatchResponse``).
    """
    errors: dict[int, list[dict[str, Any]]] = {}
    valid: list[tuple[int, BaseModel]] = []
    first_seen: dict[str, int] = {}
    context = claim_context(max_skew_days)
    for i, item in enumerate(items):
        try:
            claim = Claim.model_validate(item, context=context)
        except ValidationError as exc:
            errors[i] = error_details(exc.errors(include_url=False, include_input=False))
            continue
        claim_id: str = claim.claim_id  # type: ignore[attr-defined]
        if claim_id in first_seen:
            errors[i] = _duplicate_error(claim_id, first_seen[claim_id])
            continue
        first_seen[claim_id] = i
        valid.append((i, claim))

    results: list[dict[str, Any]] = [{"index": i, "error": e} for i, e in errors.items()]
    if valid:
        scorer = model.scorer
        scores = scorer.score_records([vars(c) for _, c in valid], explain=top_k > 0)
        if metrics is not None:
            metrics.observe_scores(model.version, scores.fraud_score, scores.investigate)
        threshold = scorer.bundle.threshold
        version = model.version
        results += [
            {
                "claim_id": claim_id,
                "fraud_score": score,
                "decision": INVESTIGATE if flagged else FAST_TRACK,
                "model_version": version,
                "threshold": threshold,
                "top_features": _contributions(scores.top_features(j, top_k)) if top_k else [],
                "index": i,
            }
            for j, ((i, _), claim_id, score, flagged) in enumerate(
                zip(
                    valid,
                    scores.claim_ids,
                    scores.fraud_score.tolist(),
                    scores.investigate.tolist(),
                    strict=True,
                )
            )
        ]
    results.sort(key=lambda r: r["index"])
    return {
        "results": results,
        "model_version": model.version,
        "scored": len(valid),
        "failed": len(errors),
    }


def batch_response(result: dict[str, Any]) -> Response:
    """:func:`score_items`' answer as the HTTP response (documented as ``BatchResponse``)."""
    return Response(orjson.dumps(result), media_type="application/json")


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    responses={**_COMMON, **TOO_MANY_CLAIMS},
)
async def score_batch(
    body: BatchRequest,
    model: ModelDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    top_features: TopFeatures = None,
) -> Response:
    """Score up to 10,000 claims in one call; each claim is validated on its own.

    `results` has one entry per claim, in request order, each with the claim's `index` in
    `claims`. A valid claim gets its score and decision; an invalid one gets
    `{"index": i, "error": [...]}` with the error list a 422 from `POST /v1/score` would give
    (a repeated `claim_id` is an error for every copy after the first), and the other claims
    are still scored. The request itself fails (422) only when `claims` is not a list of
    objects, is empty or too long, and with 413 beyond the server's `max_batch_size`.

    As in a pipeline batch, the valid claims of one request count as each other's history
    (a policyholder's two claims of the same day each see the other).
    """
    check_batch_size(len(body.claims), settings, "batch")
    result = await asyncio.to_thread(
        score_items,
        model,
        body.claims,
        top_features or 0,
        metrics,
        settings.claim_date_max_skew_days,
    )
    return batch_response(result)
