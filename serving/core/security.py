"""API keys: the ``X-API-Key`` header checked in constant time against every configured key.

Each key is kept as its SHA-256 digest only, and a request's key is hashed the same way, so every
comparison is between two 32-byte strings: ``hmac.compare_digest`` then takes the same time
whatever the key's length or how much of it matches. All configured keys are compared on every
request (no early exit), so the time does not tell which key matched either. :class:`ApiKeyGuard`
applies the check to every protected path as ASGI middleware.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from fastapi import status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from serving.core.config import Settings

API_KEY_HEADER = "X-API-Key"

log = logging.getLogger(__name__)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The accepted keys (as digests), or ``disabled`` for a local demo."""

    digests: tuple[bytes, ...]
    disabled: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The keys of validated settings (which refuse no keys unless explicitly disabled)."""
        return cls(
            digests=tuple(_digest(k.get_secret_value()) for k in settings.api_keys),
            disabled=settings.auth_disabled,
        )

    def accepts(self, key: str | None) -> bool:
        """True when auth is disabled or ``key`` is one of the keys (constant time)."""
        if self.disabled:
            return True
        if not key:
            return False
        given = _digest(key)
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(given, digest)
        return matched


def needs_key(path: str, protected: frozenset[str]) -> bool:
    """Whether ``path`` (a request path or a route template) needs a key: every path under
    ``/v1/``, and the exact paths in ``protected`` (:meth:`ApiKeyGuard.protected_paths`)."""
    return path.startswith("/v1/") or path in protected


def log_key_policy(settings: Settings) -> None:
    """Say in the log when the settings open routes that normally want a key."""
    if settings.auth_disabled:
        log.warning("API key check disabled (FRAUD_API_AUTH_DISABLED=true): local demo only")
    if settings.sagemaker:
        log.info(
            "SageMaker mode: POST /invocations takes no API key (IAM guards InvokeEndpoint)%s",
            "" if settings.api_keys else "; no FRAUD_API_KEYS, so the /v1 routes accept none",
        )


class ApiKeyGuard:
    """Pure ASGI middleware: the ``X-API-Key`` check of every protected path, before routing.

    Protected: every path under ``/v1/``; ``/invocations`` unless the service runs behind
    SageMaker (``FRAUD_API_SAGEMAKER=true``: IAM guards InvokeEndpoint); ``/metrics`` with
    ``FRAUD_API_METRICS_REQUIRE_KEY=true``. A refused request gets 401 with ``detail`` saying
    whether the key was missing or wrong, and ``WWW-Authenticate: X-API-Key``; its body is never
    read (the server discards it). One check for every route (websockets included: closed with
    1008), so a new ``/v1`` route cannot forget it, and no per-request FastAPI dependency such as
    ``fastapi.security.APIKeyHeader`` (which /v1/score avoids: bench/serve.py).

    Args:
        app: the wrapped app.
        keys: the accepted keys.
        protected: exact paths guarded besides the ``/v1/`` prefix.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys, protected: frozenset[str]) -> None:
        self.app = app
        self.keys = keys
        self.protected = protected

    @classmethod
    def protected_paths(cls, settings: Settings) -> frozenset[str]:
        """The exact paths guarded besides ``/v1/...`` under these settings."""
        paths = set()
        if not settings.sagemaker:
            paths.add("/invocations")
        if settings.metrics_require_key:
            paths.add("/metrics")
        return frozenset(paths)

    def protects(self, path: str) -> bool:
        """Whether ``path`` (a request path or a route template) needs a key."""
        return needs_key(path, self.protected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        key: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
                break
        if self.keys.accepts(key):
            await self.app(scope, receive, send)
            return
        refusal: ASGIApp
        if scope["type"] == "websocket":  # none today; a future one is guarded all the same
            refusal = WebSocketClose(status.WS_1008_POLICY_VIOLATION, f"{API_KEY_HEADER} refused")
        else:
            detail = f"missing {API_KEY_HEADER} header" if not key else f"invalid {API_KEY_HEADER}"
            refusal = JSONResponse(
                {"detail": detail},
                status.HTTP_401_UNAUTHORIZED,
                headers={"www-authenticate": API_KEY_HEADER},
            )
        await refusal(scope, receive, send)
