"""Micro-batching on the event loop: the single-claim requests that arrive together are scored
together, one after another, in one callback.

Under load uvloop hands uvicorn several requests per pass of the loop, and each becomes a task.
Scored inside their own tasks, every claim pays the cold-cache price of the compiled path: the
framework's code between two claims pushes the kernels, numpy's dispatch and the model out of
the caches, so a claim costs several times more in the server than in a loop (bench/serve.py,
``claim_fast_path``). Here each task submits its claim and waits; the claims of one pass are
scored back to back, after the tasks that brought them, and every task then answers its own
request. Claims are still scored alone (never as each other's history), each on the model its
request started with. With one request at a time the cost is one more pass of the loop
(microseconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class LoopBatcher:
    """Runs the calls submitted during one pass of the event loop together, at its end.

    Only for short synchronous work that belongs on the event loop (it blocks the loop while it
    runs). Use from the loop's thread only.
    """

    def __init__(self, on_flush: Callable[[int], None] | None = None) -> None:
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._on_flush = on_flush  # told how many calls each pass ran

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """A future for ``fn(*args)``, run with the other calls of this pass of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((fn, args, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if self._on_flush is not None:
            self._on_flush(len(pending))
        for fn, args, future in pending:
            if future.cancelled():  # the client went away
                continue
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # the caller's request fails, not its neighbours'
                future.set_exception(exc)
