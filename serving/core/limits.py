"""Request body size limit: 413 with a message saying the limit and the setting that sets it.

A declared ``Content-Length`` over the limit is refused before the body is read; a body sent
without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Pure ASGI middleware: at most ``default`` bytes per request body, ``per_path`` overrides.

    Args:
        app: the wrapped app.
        default: the limit of every path not in ``per_path``, and the setting behind it (named
            in the 413 message).
        per_path: exact paths with their own limit and setting (e.g. the batch route).
    """

    def __init__(
        self, app: ASGIApp, default: tuple[int, str], per_path: dict[str, tuple[int, str]]
    ) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path

    @staticmethod
    def _message(path: str, limit: int, setting: str, size: int | None) -> str:
        got = f"{size:,} bytes" if size is not None else "more than that"
        return (
            f"request body too large: {path} accepts at most {limit:,} bytes, got {got}. "
            f"Send fewer claims per request (or raise {setting})."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit, setting = self.per_path.get(path, self.default)
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > limit:
            refusal = JSONResponse(
                {"detail": self._message(path, limit, setting, declared)},
                status.HTTP_413_CONTENT_TOO_LARGE,
                headers={"connection": "close"},
            )
            await refusal(scope, receive, send)
            return
        if declared is not None:  # the server does not deliver more than the declared length
            await self.app(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE, self._message(path, limit, setting, None)
                    )
            return message

        await self.app(scope, counting_receive, send)
