"""The scoring API application: ``create_app()`` builds it; nothing happens at import time.

Run it with ``uvicorn serving.main:create_app --factory`` (or :func:`run`). At startup the
lifespan loads the champion model and the claims history; when that fails (no champion yet, a
corrupt bundle) the app still starts, ``/readyz`` answers 503 with the reason and the scoring
endpoints answer 503. A background task then polls the champion pointer and swaps in a new
model when the champion changes; a new model that cannot be loaded is refused and the old one
keeps serving (``/readyz`` shows the error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd
import torch
import uvicorn
from fastapi import FastAPI

from fraud_core.lakehouse import Lakehouse
from fraud_core.schema import coerce_claims
from fraud_core.scoring import ClaimScorer
from serving.api.models import load_example
from serving.api.routes import health, model, score
from serving.core.config import Settings

log = logging.getLogger(__name__)

# A refused champion is tried again after this long (the failure may have been transient).
RETRY_REFUSED_SECONDS = 60.0


def load_scorer(lakehouse: Lakehouse, version: str) -> ClaimScorer:
    """Load ``version`` with the lakehouse's claims history and check that it scores.

    Raises:
        BundleError, LakehouseError: the bundle or the history cannot be read.
        RuntimeError: the bundle loads but does not give a probability for the example claim.
    """
    scorer = ClaimScorer.from_lakehouse(lakehouse, version)
    example = coerce_claims(pd.DataFrame([load_example()])).frame
    value = float(scorer.score(example)["fraud_score"].iloc[0])
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise RuntimeError(f"model {version} scores the example claim as {value}, not in [0, 1]")
    return scorer


async def refresh_model(app: FastAPI) -> None:
    """Load the champion if it is not the model serving now; never drops a working model.

    State in ``app.state``: ``scorer`` (the serving :class:`ClaimScorer` or None),
    ``model_error`` (why the current champion is not serving, or None),
    ``failed_pointer`` and ``failed_at`` (a champion pointer refused, and when: it is not
    retried before :data:`RETRY_REFUSED_SECONDS` unless the pointer changes).
    """
    state = app.state
    lakehouse: Lakehouse = state.lakehouse
    try:
        pointer: dict[str, Any] | None = await asyncio.to_thread(lakehouse.champion)
    except Exception as exc:  # unreadable pointer: keep serving, say why
        log.error("cannot read the champion pointer: %s", exc)
        state.model_error = f"champion pointer unreadable: {exc}"
        return
    current: ClaimScorer | None = state.scorer
    if pointer is None:
        if current is None:
            state.model_error = (
                f"no champion model in {lakehouse.url('models')}: materialize fraud_model and "
                "champion_model first (make demo does)"
            )
        return
    version = str(pointer["version"])
    if current is not None and current.version == version:
        state.model_error = None
        state.failed_pointer = None
        return
    if (
        pointer == state.failed_pointer
        and time.monotonic() - state.failed_at < RETRY_REFUSED_SECONDS
    ):
        return
    try:
        new = await asyncio.to_thread(load_scorer, lakehouse, version)
    except Exception as exc:  # a bad bundle must not take the service down
        log.error("champion %s refused, keeping %s: %s", version, current and current.version, exc)
        state.failed_pointer = pointer
        state.failed_at = time.monotonic()
        state.model_error = f"champion {version} could not be loaded: {exc}"
        return
    state.scorer = new  # one assignment: requests in flight keep the scorer they got
    state.model_error = None
    state.failed_pointer = None
    log.info("serving model %s (was %s)", version, current and current.version)


async def _watch_champion(app: FastAPI, every: float) -> None:
    """Poll the champion pointer every ``every`` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        try:
            await refresh_model(app)
        except Exception:  # keep polling whatever happens; the next poll may succeed
            log.exception("champion poll failed")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model, start the champion watcher, stop it on shutdown."""
    settings: Settings = app.state.settings
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    app.state.lakehouse = Lakehouse(settings.lakehouse_uri)
    app.state.scorer = None
    app.state.model_error = None
    app.state.failed_pointer = None
    app.state.failed_at = 0.0
    await refresh_model(app)
    if app.state.scorer is None:
        log.warning("starting without a model: %s", app.state.model_error)
    watcher = (
        asyncio.create_task(_watch_champion(app, settings.poll_seconds), name="champion-watcher")
        if settings.poll_seconds > 0
        else None
    )
    try:
        yield
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app (settings from the environment unless given)."""
    app = FastAPI(
        title="Claim fraud scoring",
        version="0.1.0",
        description="Scores insurance claims with the champion fraud model from the lakehouse.",
        lifespan=lifespan,
    )
    app.state.settings = settings or Settings()
    app.state.scorer = None
    app.state.model_error = "starting"
    app.include_router(health.router)
    app.include_router(score.router)
    app.include_router(model.router)
    return app


def run(host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the app with uvicorn (settings from the environment)."""
    uvicorn.run("serving.main:create_app", factory=True, host=host, port=port)


if __name__ == "__main__":
    run()
