"""Waiting on an app under test (FastAPI's TestClient) until a JSON answer says what a test
expects; the last answer is returned either way, so a test's assertion shows what came."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from fraud_core.polling import poll_until


def wait_for_json(
    client: TestClient, path: str, ok: Callable[[Any], Any], timeout: float = 10.0
) -> Any:
    """GET ``path`` every 0.1 s until ``ok(body)`` is truthy or ``timeout`` passes; the body."""
    seen: list[Any] = []

    def probe() -> bool:
        seen.append(client.get(path).json())
        return bool(ok(seen[-1]))

    # On a timeout the caller asserts on the last answer, which says what was there instead.
    with contextlib.suppress(TimeoutError):
        poll_until(probe, what=f"GET {path}", timeout=timeout, interval=0.1)
    return seen[-1]
