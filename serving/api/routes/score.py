"""Scoring endpoints: one claim, or a batch where each claim stands or fails on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
from fastapi import APIRouter, HTTPException, status
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ValidationError

from fraud_core.schema import claims_frame
from fraud_core.scoring import ClaimScorer
from serving.api.deps import ScorerDep, SettingsDep
from serving.api.models import (
    BatchItemError,
    BatchItemScore,
    BatchRequest,
    BatchResponse,
    Claim,
    ScoreResponse,
)

router = APIRouter(prefix="/v1", tags=["scoring"])

_NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"description": "No model loaded; `detail` says why."}
}


def _score(scorer: ClaimScorer, claims: list[BaseModel]) -> pd.DataFrame:
    """Score validated claims, typed exactly as the pipeline types raw batches."""
    return scorer.score(claims_frame([c.model_dump() for c in claims]))


@router.post("/score", response_model=ScoreResponse, responses=_NO_MODEL)
async def score_claim(claim: Claim, scorer: ScorerDep) -> ScoreResponse:  # type: ignore[valid-type]
    """Fraud score and decision for one claim.

    History features (the policyholder's and provider's earlier claims) come from the raw
    claims in the lakehouse. Invalid or unknown fields are refused with 422.
    """
    row = _score(scorer, [claim]).iloc[0]
    return ScoreResponse(
        claim_id=str(row["claim_id"]),
        fraud_score=float(row["fraud_score"]),
        decision=row["decision"],
        model_version=scorer.version,
        threshold=scorer.bundle.threshold,
    )


def _duplicate_error(claim_id: str, first: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "duplicate_claim_id",
            "loc": ["claim_id"],
            "msg": f"claim_id {claim_id!r} repeats the claim at index {first}",
            "input": claim_id,
        }
    ]


def score_items(scorer: ClaimScorer, items: list[dict[str, Any]]) -> BatchResponse:
    """Validate each item on its own, score the valid ones together, answer in item order."""
    errors: dict[int, list[dict[str, Any]]] = {}
    valid: list[tuple[int, BaseModel]] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        try:
            claim = Claim.model_validate(item)
        except ValidationError as exc:
            errors[i] = jsonable_encoder(exc.errors(include_url=False))
            continue
        claim_id: str = claim.claim_id  # type: ignore[attr-defined]
        if claim_id in first_seen:
            errors[i] = _duplicate_error(claim_id, first_seen[claim_id])
            continue
        first_seen[claim_id] = i
        valid.append((i, claim))

    results: list[BatchItemScore | BatchItemError] = [
        BatchItemError(index=i, error=e) for i, e in errors.items()
    ]
    if valid:
        frame = _score(scorer, [c for _, c in valid])
        threshold = scorer.bundle.threshold
        results += [
            BatchItemScore(
                index=i,
                claim_id=str(claim_id),
                fraud_score=float(score),
                decision=decision,
                model_version=scorer.version,
                threshold=threshold,
            )
            for (i, _), claim_id, score, decision in zip(
                valid, frame["claim_id"], frame["fraud_score"], frame["decision"], strict=True
            )
        ]
    results.sort(key=lambda r: r.index)
    return BatchResponse(results=results, model_version=scorer.version)


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    responses={
        **_NO_MODEL,
        413: {"description": "More claims than the server's max_batch_size."},
    },
)
async def score_batch(
    body: BatchRequest, scorer: ScorerDep, settings: SettingsDep
) -> BatchResponse:
    """Score up to 10,000 claims in one call; each claim is validated on its own.

    `results` has one entry per claim, in request order, each with the claim's `index` in
    `claims`. A valid claim gets its score and decision; an invalid one gets
    `{"index": i, "error": [...]}` with the error list a 422 from `POST /v1/score` would give
    (a repeated `claim_id` is an error for every copy after the first), and the other claims
    are still scored. The request itself fails (422) only when `claims` is not a list of
    objects, is empty or too long.

    As in a pipeline batch, the valid claims of one request count as each other's history
    (a policyholder's two claims of the same day each see the other).
    """
    if len(body.claims) > settings.max_batch_size:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{len(body.claims)} claims in one batch; this server accepts at most "
            f"{settings.max_batch_size}",
        )
    # A full batch takes ~0.5 s of CPU: off the event loop, so probes and single claims go on.
    return await asyncio.to_thread(score_items, scorer, body.claims)
