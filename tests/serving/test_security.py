"""ApiKeyGuard as ASGI middleware, on its own: which paths it guards, and that a refused
request never reaches the app (http and websocket alike)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serving.core.config import Settings
from serving.core.security import ApiKeyGuard, ApiKeys

KEY = "guard-key-0123456789abcdef"


def _guard(**settings: Any) -> tuple[ApiKeyGuard, list[str]]:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    config = Settings(api_keys=[KEY], auth_disabled=False, **settings)
    guard = ApiKeyGuard(app, ApiKeys.from_settings(config), ApiKeyGuard.protected_paths(config))
    return guard, reached


def _call(guard: ApiKeyGuard, kind: str, path: str, key: str | None) -> list[dict[str, Any]]:
    headers = [(b"x-api-key", key.encode())] if key is not None else []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("a refused request's body is read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": kind, "path": path, "headers": headers}
    asyncio.run(guard(scope, receive, send))
    return sent


@pytest.mark.parametrize(
    ("settings", "path", "guarded"),
    [
        ({}, "/v1/score", True),
        ({}, "/v1/anything/new", True),
        ({}, "/invocations", True),
        ({"sagemaker": True}, "/invocations", False),
        ({}, "/metrics", False),
        ({"metrics_require_key": True}, "/metrics", True),
        ({}, "/healthz", False),
        ({}, "/v1", False),  # not a route; answered 404 by the app
    ],
)
def test_which_paths_are_guarded(settings: dict[str, Any], path: str, guarded: bool) -> None:
    guard, reached = _guard(**settings)
    sent = _call(guard, "http", path, None)
    if guarded:
        assert reached == [] and sent[0]["status"] == 401
        assert (b"www-authenticate", b"X-API-Key") in sent[0]["headers"]
    else:
        assert reached == [path] and sent == []
    _call(guard, "http", path, KEY)  # the right key always passes
    assert reached[-1] == path


def test_wrong_key_and_websocket_refused_without_reaching_the_app() -> None:
    guard, reached = _guard()
    (start, body) = _call(guard, "http", "/v1/model", "wrong-key-0123456789abcdef")
    assert start["status"] == 401 and b"invalid X-API-Key" in body["body"]
    (close,) = _call(guard, "websocket", "/v1/stream", None)
    assert close == {"type": "websocket.close", "code": 1008, "reason": "X-API-Key refused"}
    assert reached == []
    _call(guard, "websocket", "/v1/stream", KEY)
    assert reached == ["/v1/stream"]
