"""A real uvicorn process (uvloop + httptools) on loopback, driven over raw HTTP/1.1: scoring,
batch, model, probes, metrics, auth, prod refusal, hot swap under load, a corrupt champion."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fraud_core.lakehouse import Lakehouse
from fraud_core.model.bundle import WEIGHTS_FILE, ModelBundle
from serving.api.models import load_example

pytestmark = pytest.mark.integration


def _post(http: Any, port: int, path: str, body: Any, key: str | None) -> tuple[int, Any]:
    headers = {"X-API-Key": key} if key else None
    status, data = asyncio.run(http.request(port, "POST", path, body, headers))
    return status, json.loads(data)


def test_score_batch_model_and_probes(served_champion: Any, http: Any) -> None:
    port = served_champion.port
    example = load_example()
    status, ready = http.get_json(port, "/readyz", key=None)
    assert status == 200, ready
    assert ready["model_version"] == "fm-test-1"
    assert ready["champion_version"] == "fm-test-1"
    assert http.get_json(port, "/healthz", key=None) == (200, {"status": "ok"})

    status, body = _post(http, port, "/v1/score", example, http.key)
    assert status == 200, body
    assert body["claim_id"] == example["claim_id"]
    assert body["model_version"] == "fm-test-1"
    assert 0.0 <= body["fraud_score"] <= 1.0
    assert body["decision"] in ("investigate", "fast_track")
    assert len(body["top_features"]) == 3

    claims = [{**example, "claim_id": f"U-{i}"} for i in range(50)]
    claims[7] = {**claims[7], "region": "nowhere"}
    status, batch = _post(http, port, "/v1/score/batch", {"claims": claims}, http.key)
    assert status == 200, batch
    assert (batch["scored"], batch["failed"]) == (49, 1)
    assert [r["index"] for r in batch["results"]] == list(range(50))
    assert batch["results"][7]["error"][0]["field"] == "region"

    status, info = http.get_json(port, "/v1/model")
    assert status == 200
    assert info["version"] == "fm-test-1"
    assert info["training_batches"] == ["b0", "b1", "b2"]
    assert info["history_claims"] > 0

    status, bad = _post(http, port, "/v1/score", {**example, "claimed_amount": -5}, http.key)
    assert status == 422
    assert bad["detail"][0]["field"] == "claimed_amount"
    big = {**example, "claim_id": "X" * 20_000}
    status, too_big = _post(http, port, "/v1/score", big, http.key)
    assert status == 413
    assert "at most 16,384 bytes" in too_big["detail"]


def test_auth_over_http(served_champion: Any, http: Any) -> None:
    port, example = served_champion.port, load_example()
    assert _post(http, port, "/v1/score", example, None)[0] == 401
    assert _post(http, port, "/v1/score", example, "wrong-key-0123456789abc")[0] == 401
    assert _post(http, port, "/v1/score", example, http.key)[0] == 200
    assert _post(http, port, "/v1/score", example, http.old_key)[0] == 200  # mid-rotation
    assert http.get_json(port, "/v1/model", key=None)[0] == 401
    assert http.get_json(port, "/v1/model", key="x" * 20)[0] == 401
    assert _post(http, port, "/v1/score/batch", {"claims": [example]}, None)[0] == 401


def test_refused_body_is_not_taken_for_the_next_request(served_champion: Any, http: Any) -> None:
    """A 401 is sent before the body is read: on the same keep-alive connection, the next
    request must still be parsed from its own first byte."""
    port, example = served_champion.port, load_example()
    body = json.dumps(example).encode()
    headers = {"content-type": "application/json"}

    async def main() -> list[tuple[int, bytes]]:
        connection = await http.connect(port)
        try:
            return [
                await connection.send("POST", "/v1/score", body, headers),
                await connection.send(
                    "POST", "/v1/score", body, {**headers, "X-API-Key": "w" * 20}
                ),
                await connection.send(
                    "POST", "/v1/score", body, {**headers, "X-API-Key": http.key}
                ),
            ]
        finally:
            connection.close()

    (s1, _), (s2, _), (s3, answer) = asyncio.run(main())
    assert (s1, s2, s3) == (401, 401, 200)
    assert json.loads(answer)["claim_id"] == example["claim_id"]


def test_metrics_over_http(served_champion: Any, http: Any) -> None:
    port = served_champion.port
    _post(http, port, "/v1/score", load_example(), http.key)
    status, text = http.get_json(port, "/metrics", key=None)
    assert status == 200
    assert 'fraud_api_requests_total{method="POST",route="/v1/score",status="200"}' in text
    assert "fraud_api_request_duration_seconds_bucket" in text
    assert 'fraud_api_scores_count{model_version="fm-test-1"}' in text
    assert 'fraud_api_model_info{dagster_run_id="",metaflow_run="",version="fm-test-1"} 1.0' in text


def test_prod_refuses_to_start_without_keys(
    champion_lakehouse: Path, start_server: Callable[..., Any]
) -> None:
    no_keys = start_server(champion_lakehouse, wait=False, FRAUD_ENV="prod")
    opted_out = start_server(
        champion_lakehouse, wait=False, FRAUD_ENV="prod", FRAUD_API_AUTH_DISABLED="true"
    )
    assert no_keys.proc.wait(timeout=60) != 0
    assert "FRAUD_ENV=prod refuses to start without them" in no_keys.log()
    assert opted_out.proc.wait(timeout=60) != 0
    assert "local demo only" in opted_out.log()


def _publish(lh: Lakehouse, version: str, corrupt: bool = False) -> None:
    """A new champion: a copy of fm-test-1 under ``version`` (with garbage weights if corrupt)."""
    bundle = ModelBundle.load(lh, "fm-test-1")
    bundle.version = version
    bundle.save(lh)
    if corrupt:
        lh.write_bytes(lh.model_path(version, WEIGHTS_FILE), b"not safetensors at all")
    lh.set_champion({"version": version, "dagster_run_id": f"run-{version}"})


def test_hot_swap_under_load_and_corrupt_champion(
    champion_lakehouse: Path, tmp_path: Path, start_server: Callable[..., Any], http: Any
) -> None:
    """Bounded load (4 keep-alive connections) while the champion changes: fm-test-2, then a
    corrupt bundle (refused: fm-test-2 keeps serving), then fm-test-3. No request fails, and
    the versions in the responses switch in that order."""
    root = tmp_path / "lh"
    shutil.copytree(champion_lakehouse, root)
    lh = Lakehouse(str(root))
    # The rotation is over for this process: only the new key.
    server = start_server(root, FRAUD_API_KEYS=http.key, FRAUD_API_POLL_SECONDS="0.2")
    port = server.port
    example = load_example()
    max_requests, max_seconds = 6000, 90.0  # caps; a run takes ~3 s, ~1,000 requests
    results: list[tuple[float, int, str]] = []
    done = asyncio.Event()
    log: list[str] = []

    async def worker(n: int) -> None:
        conn = await http.connect(port)
        i = 0
        try:
            while not done.is_set() and len(results) < max_requests:
                body = json.dumps({**example, "claim_id": f"L-{n}-{i}"}).encode()
                status, data = await conn.send("POST", "/v1/score", body, {"X-API-Key": http.key})
                version = json.loads(data).get("model_version", "") if status == 200 else ""
                results.append((time.monotonic(), status, version))
                i += 1
                await asyncio.sleep(0.01)
        finally:
            conn.close()

    async def wait_for(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{server.log()}")
            await asyncio.sleep(0.05)

    def latest(version: str) -> bool:
        return bool(results) and results[-1][2] == version

    async def readyz() -> dict[str, Any]:
        status, data = await http.request(port, "GET", "/readyz")
        assert status == 200
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    async def swaps() -> None:
        try:
            await wait_for(lambda: len(results) >= 50, "first responses")
            await asyncio.to_thread(_publish, lh, "fm-test-2")
            log.append("published fm-test-2")
            await wait_for(lambda: latest("fm-test-2"), "fm-test-2 serving")
            await asyncio.to_thread(_publish, lh, "fm-bad", True)
            log.append("published corrupt fm-bad")
            ready: dict[str, Any] = {}

            async def refused() -> None:
                nonlocal ready
                while not (ready.get("reload_error") or "").startswith("champion fm-bad"):
                    ready = await readyz()
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(refused(), timeout=30)
            assert ready["model_version"] == "fm-test-2"
            assert ready["champion_version"] == "fm-bad"
            assert "checksum mismatch" in ready["reload_error"]
            mark = len(results)
            await asyncio.sleep(0.5)
            assert {v for _, _, v in results[mark:]} == {"fm-test-2"}  # old model serving
            await asyncio.to_thread(_publish, lh, "fm-test-3")
            log.append("published fm-test-3")
            await wait_for(lambda: latest("fm-test-3"), "fm-test-3 serving")
            await asyncio.sleep(0.2)
        finally:
            done.set()

    async def main() -> None:
        await asyncio.wait_for(
            asyncio.gather(swaps(), *(worker(n) for n in range(4))), timeout=max_seconds
        )

    asyncio.run(main())
    statuses = [s for _, s, _ in results]
    assert statuses.count(200) == len(results), {s: statuses.count(s) for s in set(statuses)}
    assert 200 <= len(results) <= max_requests
    # Versions in completion order: 1 ... 2 ... 3, each a contiguous run (the swap is atomic
    # per request; one request may finish on the old model just after another on the new).
    order = sorted(results)
    switches = [order[0][2]] + [
        v for (_, _, prev), (_, _, v) in zip(order, order[1:], strict=False) if v != prev
    ]
    assert switches == ["fm-test-1", "fm-test-2", "fm-test-3"], switches
    text = server.log()
    assert "champion fm-bad refused, keeping fm-test-2" in text
    assert "checksum mismatch" in text
    status, metrics = http.get_json(port, "/metrics", key=None)
    assert 'fraud_api_model_reloads_total{result="refused"} 1.0' in metrics
    (info_line,) = [x for x in metrics.splitlines() if x.startswith("fraud_api_model_info{")]
    assert info_line.startswith('fraud_api_model_info{dagster_run_id="run-fm-test-3"')
    status, info = http.get_json(port, "/v1/model")
    assert (info["version"], info["dagster_run_id"]) == ("fm-test-3", "run-fm-test-3")
