"""The OpenAPI document: the service's description, and what the hot path declares by hand (the
``Claim`` schema and the ``X-API-Key`` scheme)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from serving.api.models import Claim, NotReady
from serving.core.security import API_KEY_HEADER, needs_key

Responses = dict[int | str, dict[str, Any]]
# Answers documented on several routes.
UNAUTHORIZED: Responses = {401: {"description": "Missing or invalid X-API-Key."}}
NO_MODEL: Responses = {503: {"description": "No model loaded; `detail` says why."}}
NOT_READY: Responses = {503: {"model": NotReady, "description": NO_MODEL[503]["description"]}}
TOO_MANY_CLAIMS: Responses = {413: {"description": "Too many claims or too large a body."}}

DESCRIPTION = """\
Scores insurance claims with the champion fraud model from the lakehouse, and swaps to a new
champion without a restart.

**Authentication**: every `/v1` route needs an `X-API-Key` header with one of the keys in
`FRAUD_API_KEYS` (401 otherwise). `/healthz`, `/readyz` and `/metrics` are open (probes and
aggregates; `FRAUD_API_METRICS_REQUIRE_KEY=true` closes `/metrics`).

**Validation**: a claim must carry every field of `Claim`, with the types, ranges and allowed
values of the claims contract. **Unknown fields are refused** (422 `extra_forbidden`), so a
misspelt field is never scored as missing. A 422 lists each problem with its `field`, `loc`,
`type` and `msg`. Bodies larger than the configured limit get 413.

**SageMaker**: `GET /ping` and `POST /invocations` follow SageMaker's serving contract
(`/invocations` answers like `POST /v1/score/batch`; without a key only when the service runs
with `FRAUD_API_SAGEMAKER=true`, behind SageMaker's IAM-authenticated InvokeEndpoint).

**Scores**: `fraud_score` is a calibrated probability; `decision` applies the model's threshold;
`top_features` ranks the inputs by their gradient x input contribution to the logit.
"""


def openapi_builder(app: FastAPI, protected: frozenset[str]) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's document, plus what the hot path declares by hand: the
    ``Claim`` schema (read by :func:`~serving.api.deps.read_claim`, not by a body parameter)
    and the ``X-API-Key`` scheme on every operation
    :class:`~serving.core.security.ApiKeyGuard` protects (``protected``: its exact paths)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            claim = Claim.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(claim.pop("$defs", {}))
            schemas["Claim"] = claim
            components["securitySchemes"] = {
                "APIKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": API_KEY_HEADER,
                    "description": "One of the keys in FRAUD_API_KEYS (comma-separated on the "
                    "server).",
                }
            }
            for path, operations in schema["paths"].items():
                if needs_key(path, protected):
                    for operation in operations.values():
                        operation["security"] = [{"APIKeyHeader": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
