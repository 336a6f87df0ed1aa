"""SageMaker's serving contract on a real uvicorn process: ``GET /ping`` and
``POST /invocations`` (one claim, a list, ``{"instances": [...]}``), the key policy with and
without ``FRAUD_API_SAGEMAKER=true``, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.api.models import BatchResponse, load_example

pytestmark = pytest.mark.integration


def _post(http: Any, port: int, body: Any, key: str | None = None) -> tuple[int, Any]:
    headers = {"X-API-Key": key} if key else None
    status, data = asyncio.run(http.request(port, "POST", "/invocations", body, headers))
    return status, json.loads(data)


def test_sagemaker_mode_pings_and_scores_without_a_key(
    champion_lakehouse: Path, start_server: Callable[..., Any], http: Any
) -> None:
    """As the container runs behind SageMaker: no FRAUD_API_KEYS, /invocations open, /v1 shut."""
    server = start_server(champion_lakehouse, FRAUD_API_SAGEMAKER="true", FRAUD_API_KEYS="")
    port, example = server.port, load_example()
    status, ping = http.get_json(port, "/ping", key=None)
    assert status == 200, ping
    assert ping["model_version"] == "fm-test-1"

    status, one = _post(http, port, example)
    assert status == 200, one
    assert (one["scored"], one["failed"], one["model_version"]) == (1, 0, "fm-test-1")
    (result,) = one["results"]
    assert result["index"] == 0 and result["claim_id"] == example["claim_id"]
    assert 0.0 <= result["fraud_score"] <= 1.0
    assert len(result["top_features"]) == 3  # the server's default: no query string on SageMaker

    claims = [{**example, "claim_id": f"SM-{i}"} for i in range(40)]
    claims[5] = {**claims[5], "claimed_amount": -1}
    status, listed = _post(http, port, claims)
    status_i, instances = _post(http, port, {"instances": claims})
    assert status == status_i == 200, (listed, instances)
    assert listed == instances
    BatchResponse.model_validate(listed)  # the documented shape
    assert (listed["scored"], listed["failed"]) == (39, 1)
    assert [r["index"] for r in listed["results"]] == list(range(40))
    assert listed["results"][5]["error"][0]["field"] == "claimed_amount"

    # The same per-claim results as the batch route (served with a key by another process).
    batch_server = start_server(champion_lakehouse, FRAUD_API_KEYS=http.key)
    status, batch = asyncio.run(
        http.request(
            batch_server.port,
            "POST",
            "/v1/score/batch?top_features=3",
            {"claims": claims},
            {"X-API-Key": http.key},
        )
    )
    assert status == 200
    assert json.loads(batch) == listed

    for bad in ({"instances": example}, {"instances": [example], "extra": 1}, [], "text"):
        status, body = _post(http, port, bad)
        assert status == 422, (bad, body)
    status, body = _post(http, port, {**example, "instances": [example]})
    assert status == 422, body
    # No keys configured: the /v1 routes accept none.
    status, _ = asyncio.run(http.request(port, "POST", "/v1/score", example, None))
    assert status == 401
    assert http.get_json(port, "/v1/model", key="any-key-0123456789abc")[0] == 401


def test_invocations_want_a_key_outside_sagemaker(served_champion: Any, http: Any) -> None:
    port, example = served_champion.port, load_example()
    assert _post(http, port, example)[0] == 401
    assert _post(http, port, example, "wrong-key-0123456789abc")[0] == 401
    status, body = _post(http, port, {"instances": [example]}, http.key)
    assert status == 200 and body["scored"] == 1, body
    assert http.get_json(port, "/ping", key=None)[0] == 200


def test_ping_is_503_without_a_model(
    tmp_path: Path, start_server: Callable[..., Any], http: Any
) -> None:
    empty = tmp_path / "empty-lakehouse"
    empty.mkdir()
    server = start_server(empty, FRAUD_API_SAGEMAKER="true")
    status, body = http.get_json(server.port, "/ping", key=None)
    assert status == 503
    assert body["status"] == "not_ready" and "no champion" in body["detail"]
    assert _post(http, server.port, load_example())[0] == 503


def test_openapi_documents_the_sagemaker_routes(served_champion: Any, http: Any) -> None:
    status, spec = http.get_json(served_champion.port, "/openapi.json", key=None)
    assert status == 200
    ping = spec["paths"]["/ping"]["get"]
    assert {"200", "503"} <= ping["responses"].keys()
    invocations = spec["paths"]["/invocations"]["post"]
    body = invocations["requestBody"]["content"]["application/json"]
    assert {"one claim", "instances", "list"} <= body["examples"].keys()
    assert invocations["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchResponse"
    }
    assert {"401", "413", "422", "503"} <= invocations["responses"].keys()
