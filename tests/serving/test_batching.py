"""Micro-batching of single claims on the event loop (serving/core/batching.py): the claims of
one pass are scored together, yet each answer is exactly the answer that claim gets alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from serving.api.deps import service_of
from serving.api.models import load_example
from serving.core.batching import LoopBatcher
from serving.core.config import Settings
from serving.main import create_app

KEY = "batch-key-0123456789abcdef"


def test_one_pass_runs_together_and_failures_stay_with_their_caller() -> None:
    passes: list[int] = []
    ran: list[int] = []

    def work(i: int) -> int:
        ran.append(i)
        if i == 2:
            raise ValueError("claim 2 is bad")
        return i * 10

    async def main() -> list[Any]:
        batcher = LoopBatcher(on_flush=passes.append)
        futures = [batcher.submit(work, i) for i in range(5)]
        futures[3].cancel()  # a client that went away: its call is skipped
        results = await asyncio.gather(*futures, return_exceptions=True)
        later = await batcher.submit(work, 7)  # the next pass: a new flush
        return [*results, later]

    results = asyncio.run(main())
    assert passes == [5, 1]
    assert ran == [0, 1, 2, 4, 7]
    assert results[:2] == [0, 10] and results[4:] == [40, 70]
    assert isinstance(results[2], ValueError)
    assert isinstance(results[3], asyncio.CancelledError)


async def _post(app: Any, body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"x-api-key", KEY.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_claims_scored_together_answer_as_if_alone(champion_lakehouse: Path) -> None:
    settings = Settings(
        lakehouse_uri=str(champion_lakehouse),
        api_keys=[KEY],
        auth_disabled=False,
        poll_seconds=0,
        torch_threads=0,
        bench_echo=False,
    )
    app = create_app(settings)
    example = load_example()
    # Same policyholder, same day: scored as one batch request they would see each other as
    # history; as single claims they must not. One invalid claim among them.
    claims = [
        {**example, "claim_id": f"MB-{i}", "claimed_amount": 800.0 + 400 * i} for i in range(12)
    ]
    claims[5]["claimed_amount"] = -1.0
    bodies = [json.dumps(c).encode() for c in claims]

    async def main() -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], str]:
        async with app.router.lifespan_context(app):
            alone = [await _post(app, b) for b in bodies]
            together = await asyncio.gather(*(_post(app, b) for b in bodies))
            return alone, list(together), service_of(app).metrics.exposition().decode()

    alone, together, metrics = asyncio.run(main())
    assert [s for s, _ in together] == [422 if i == 5 else 200 for i in range(12)]
    for i, ((s1, b1), (s2, b2)) in enumerate(zip(alone, together, strict=True)):
        assert s1 == s2, i
        if s1 == 200:
            one, other = json.loads(b1), json.loads(b2)
            assert one["claim_id"] == f"MB-{i}"
            assert other == one  # same score, decision and contributions
    # 11 alone (one pass each), then the 11 valid ones in one pass
    assert 'fraud_api_score_pass_claims_bucket{le="1.0"} 11.0' in metrics
    assert "fraud_api_score_pass_claims_count 12.0" in metrics
    assert "fraud_api_score_pass_claims_sum 22.0" in metrics


@pytest.mark.integration
def test_concurrent_clients_of_a_real_server_get_their_own_answers(
    served_champion: Any, http: Any
) -> None:
    example = load_example()
    bodies = [
        json.dumps({**example, "claim_id": f"RC-{i}", "witnesses": i % 4}).encode()
        for i in range(48)
    ]
    headers = {"X-API-Key": http.key, "content-type": "application/json"}
    port = served_champion.port

    async def main() -> tuple[list[Any], list[Any]]:
        alone = [await http.request(port, "POST", "/v1/score", b, headers) for b in bodies]
        together = await asyncio.gather(
            *(http.request(port, "POST", "/v1/score", b, headers) for b in bodies)
        )
        return alone, list(together)

    alone, together = asyncio.run(main())
    for i, ((s1, b1), (s2, b2)) in enumerate(zip(alone, together, strict=True)):
        assert s1 == s2 == 200, (i, b2)
        assert json.loads(b1) == json.loads(b2)
        assert json.loads(b2)["claim_id"] == f"RC-{i}"
