"""The framework's ceilings for bench/serve.py, mounted only with ``FRAUD_API_BENCH_ECHO=true``
(and left out of the OpenAPI document).

``POST /v1/echo`` does everything ``POST /v1/score`` does before scoring (the key check in the
same middleware, the body read and validated by the same function), then answers a constant
built the same way: the ceiling /v1/score is measured against. ``POST /v1/echo-fastapi`` takes
the same claim the way FastAPI's documentation writes it (a ``Claim`` body parameter, a
``response_model``): what this API would cost per request without its hand-written hot path.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.api.deps import read_claim
from serving.api.models import Claim, Health

router = APIRouter(prefix="/v1", tags=["bench"], include_in_schema=False)

_CONSTANT = b'{"status":"ok"}'
_HEALTH = Health()


@router.post("/echo")
async def echo(request: Request) -> Response:
    """/v1/score without the scoring: the ceiling (matched first: it never pays for routing
    that /v1/score does not)."""
    await read_claim(request)
    return Response(_CONSTANT, media_type="application/json")


@router.post("/echo-fastapi", response_model=Health)
async def echo_fastapi(claim: Claim) -> Health:  # type: ignore[valid-type]
    """The claim as a FastAPI body parameter, a constant through response validation."""
    return _HEALTH
