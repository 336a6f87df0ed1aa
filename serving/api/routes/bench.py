"""The framework's ceiling for bench/serve.py: parse a claim like POST /v1/score, answer a
constant. Mounted only with ``FRAUD_API_BENCH_ECHO=true``; not in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import ApiKey
from serving.api.models import Claim, Health

router = APIRouter(prefix="/v1", tags=["bench"], dependencies=[ApiKey], include_in_schema=False)

_CONSTANT = Health()


@router.post("/echo", response_model=Health)
async def echo(claim: Claim) -> Health:  # type: ignore[valid-type]
    """Validate the body exactly as /v1/score does (auth included), skip the scoring."""
    return _CONSTANT
