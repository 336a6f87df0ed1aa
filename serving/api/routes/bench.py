"""The framework's ceiling for bench/serve.py: parse a claim like POST /v1/score, answer a
constant. Mounted only with ``FRAUD_API_BENCH_ECHO=true``; not in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.api.deps import read_claim

router = APIRouter(prefix="/v1", tags=["bench"], include_in_schema=False)

_CONSTANT = b'{"status":"ok"}'


@router.post("/echo")
async def echo(request: Request) -> Response:
    """Everything /v1/score does before scoring (the key check in the same middleware, the
    body read and validated by the same function), then a constant answer built the same way
    (a :class:`Response` of bytes)."""
    await read_claim(request)
    return Response(_CONSTANT, media_type="application/json")
