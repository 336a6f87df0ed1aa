"""The scoring API application: ``create_app()`` builds it; nothing happens at import time.

Run it with ``uvicorn serving.main:create_app --factory`` (or :func:`run`). Settings are read
and checked first: a process without API keys (and without the explicit local opt-out) does not
start. The champion model loads in the lifespan and is kept current by
:class:`~serving.core.champion.Champion`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware import Middleware
from fastapi.routing import APIRoute
from threadpoolctl import threadpool_limits

from serving.api.deps import Service, service_of
from serving.api.errors import validation_error
from serving.api.openapi import DESCRIPTION, openapi_builder
from serving.api.routes import bench, health, model, sagemaker, score
from serving.core.config import Settings
from serving.core.limits import BodySizeLimit
from serving.core.metrics import MetricsMiddleware
from serving.core.security import ApiKeyGuard, ApiKeys, log_key_policy


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the champion and keep it current until shutdown, on ``torch_threads`` threads."""
    service = service_of(app)
    threads = service.settings.torch_threads
    if threads:
        torch.set_num_threads(threads)
    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        async with service.champion.watching(service.settings.poll_seconds):
            yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app (settings from the environment unless given).

    Raises:
        pydantic.ValidationError: the settings are refused (e.g. no API keys): the process must
            not start.
    """
    settings = settings or Settings()
    log_key_policy(settings)
    service = Service.from_settings(settings)
    # Routes are matched in order: the scoring routes first, and the benchmark's ceiling before
    # them, so it never pays for routing that /v1/score does not.
    routers = [score.router, health.router, model.router, sagemaker.router]
    if settings.bench_echo:
        routers.insert(0, bench.router)
    paths = frozenset(
        r.path for router in routers for r in router.routes if isinstance(r, APIRoute)
    )
    protected = ApiKeyGuard.protected_paths(settings)
    batch_limit = (settings.max_batch_body_bytes, "FRAUD_API_MAX_BATCH_BODY_BYTES")
    app = FastAPI(
        title="Claim fraud scoring",
        version="0.2.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        exception_handlers={RequestValidationError: validation_error},
        middleware=[  # outermost first: the metrics count every answer, 401s and 413s included
            Middleware(MetricsMiddleware, metrics=service.metrics, known_paths=paths),
            Middleware(ApiKeyGuard, keys=ApiKeys.from_settings(settings), protected=protected),
            Middleware(
                BodySizeLimit,
                default=(settings.max_body_bytes, "FRAUD_API_MAX_BODY_BYTES"),
                per_path={"/v1/score/batch": batch_limit, "/invocations": batch_limit},
            ),
        ],
    )
    app.state.service = service
    for router in routers:
        app.include_router(router)
    app.openapi = openapi_builder(app, protected)  # type: ignore[method-assign]
    return app


def run(host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the app with uvicorn (uvloop + httptools; settings from the environment)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        "serving.main:create_app",
        factory=True,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    run()
