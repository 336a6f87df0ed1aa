"""Waiting for something to happen elsewhere: the one polling loop of the project.

A server that starts, a model the scoring API swaps in, a Dagster run that ends: each is a
probe called until it answers or time runs out. No dependency of the project offers this for
any probe (botocore's waiters serve AWS calls only, dagster-graphql has no wait), so it is
written once, here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something truthy; return it.

    The probe is called at least once, and once more after the last sleep, so an answer that
    arrives in time is not missed. A probe gives up early by raising; it says "not yet" by
    returning something falsy (and keeps what it saw, for its caller's message).

    Args:
        what: what is awaited, for the timeout's message ("the asset graph").

    Raises:
        TimeoutError: ``timeout`` seconds passed without an answer.
    """
    deadline = clock() + timeout
    while True:
        value = probe()
        if value:
            return value
        if clock() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        sleep(interval)
