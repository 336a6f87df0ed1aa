"""The scoring API application: ``create_app()`` builds it; nothing happens at import time.

Run it with ``uvicorn serving.main:create_app --factory`` (or :func:`run`). Settings are read
and checked first: a process without API keys (and without the explicit local opt-out) does not
start. At startup the lifespan loads the champion model and the claims history; when that fails
(no champion yet, a corrupt bundle) the app still starts, ``/readyz`` answers 503 with the
reason and the scoring endpoints answer 503. A background task then polls the champion pointer
and swaps in a new model when the champion changes (or, with ``reload_history``, when new raw
batches land); a new model that cannot be loaded or fails its check is refused, the old one
keeps serving, and ``/readyz``, the logs and ``fraud_api_model_reloads_total{result="refused"}``
say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from threadpoolctl import threadpool_limits

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from serving.api.models import PAIR_RULE_FIELDS, Claim
from serving.api.routes import bench, health, model, sagemaker, score
from serving.core.batching import LoopBatcher
from serving.core.champion import LoadedModel, load_model
from serving.core.config import Settings
from serving.core.limits import BodySizeLimit
from serving.core.metrics import Metrics, MetricsMiddleware
from serving.core.security import API_KEY_HEADER, ApiKeyGuard, ApiKeys, needs_key

log = logging.getLogger(__name__)

# A refused champion is tried again after this long (the failure may have been transient).
RETRY_REFUSED_SECONDS = 60.0

DESCRIPTION = """\
Scores insurance claims with the champion fraud model from the lakehouse, and swaps to a new
champion without a restart.

**Authentication**: every `/v1` route needs an `X-API-Key` header with one of the keys in
`FRAUD_API_KEYS` (401 otherwise). `/healthz`, `/readyz` and `/metrics` are open (probes and
aggregates; `FRAUD_API_METRICS_REQUIRE_KEY=true` closes `/metrics`).

**Validation**: a claim must carry every field of `Claim`, with the types, ranges and allowed
values of the claims contract. **Unknown fields are refused** (422 `extra_forbidden`), so a
misspelt field is never scored as missing. A 422 lists each problem with its `field`, `loc`,
`type` and `msg`. Bodies larger than the configured limit get 413.

**SageMaker**: `GET /ping` and `POST /invocations` follow SageMaker's serving contract
(`/invocations` answers like `POST /v1/score/batch`; without a key only when the service runs
with `FRAUD_API_SAGEMAKER=true`, behind SageMaker's IAM-authenticated InvokeEndpoint).

**Scores**: `fraud_score` is a calibrated probability; `decision` applies the model's threshold;
`top_features` ranks the inputs by their gradient x input contribution to the logit.
"""


def freeze_heap() -> None:
    """Put everything alive now (libraries, the model, its history index) out of the cyclic
    collector's reach.

    A full collection of the ~300,000 long-lived objects of a loaded app takes ~200 ms here and
    would stall requests at random (it was the p99 of /v1/score). Called once a model is
    loaded; it unfreezes first, so the replaced model's reference cycles are collected in this
    one pause instead of leaking.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _pointer_key(pointer: dict[str, Any]) -> str:
    return repr(sorted(pointer.items()))


async def refresh_model(app: FastAPI) -> None:
    """Load the champion if it is not the model serving now; never drops a working model.

    State in ``app.state``: ``model`` (the serving :class:`LoadedModel` or None),
    ``model_error`` (why the current champion is not serving, or None), ``champion_version``
    (the pointer's version at the last poll), ``failed_key`` and ``failed_at`` (a champion
    refused, and when: it is not retried before :data:`RETRY_REFUSED_SECONDS` unless the pointer
    or the raw batches change).
    """
    state = app.state
    lakehouse: Lakehouse = state.lakehouse
    metrics: Metrics = state.metrics
    settings: Settings = state.settings
    lakehouse.fs.invalidate_cache()  # object stores' listings are cached by fsspec
    try:
        pointer: dict[str, Any] | None = await asyncio.to_thread(lakehouse.champion)
    except Exception as exc:  # unreadable pointer: keep serving, say why
        log.error("cannot read the champion pointer: %s", exc)
        state.model_error = f"champion pointer unreadable: {exc}"
        return
    current: LoadedModel | None = state.model
    if pointer is None:
        state.champion_version = None
        if current is None:
            state.model_error = (
                f"no champion model in {lakehouse.url('models')}: materialize fraud_model and "
                "champion_model first (make demo does)"
            )
        return
    version = str(pointer["version"])
    state.champion_version = version
    key = _pointer_key(pointer)
    if current is not None and current.version == version:
        if not settings.reload_history:
            state.model_error = None
            return
        batches = await asyncio.to_thread(lakehouse.batches, RAW)
        if batches == current.scorer.history_batches:
            state.model_error = None
            return
        key += repr(batches)
        reason = f"new raw batches ({len(batches)} now)"
    else:
        reason = f"champion changed (serving {current and current.version})"
    if key == state.failed_key and time.monotonic() - state.failed_at < RETRY_REFUSED_SECONDS:
        return
    try:
        new = await asyncio.to_thread(load_model, lakehouse, pointer)
    except Exception as exc:  # a bad bundle must not take the service down
        log.error("champion %s refused, keeping %s: %s", version, current and current.version, exc)
        state.failed_key = key
        state.failed_at = time.monotonic()
        state.model_error = f"champion {version} could not be loaded: {exc}"
        metrics.reloads.labels("refused").inc()
        return
    state.model = new  # one assignment: requests in flight keep the model they got
    state.model_error = None
    state.failed_key = None
    del current  # the replaced model goes with the next collection
    freeze_heap()
    metrics.reloads.labels("swapped").inc()
    metrics.model_changed(
        new.version, new.lineage("metaflow_run") or "", new.lineage("dagster_run_id") or ""
    )
    log.info(
        "serving model %s (%s; %d history claims)",
        version,
        reason,
        len(new.scorer.history),
    )


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
    limits: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
        limits = threadpool_limits(limits=settings.torch_threads)
    app.state.lakehouse = Lakehouse(settings.lakehouse_uri)
    app.state.model = None
    app.state.model_error = None
    app.state.champion_version = None
    app.state.failed_key = None
    app.state.failed_at = 0.0
    with limits:
        await refresh_model(app)
        if app.state.model is None:
            log.warning("starting without a model: %s", app.state.model_error)
        watcher = (
            asyncio.create_task(
                _watch_champion(app, settings.poll_seconds), name="champion-watcher"
            )
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
            gc.unfreeze()


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 listing each problem with the field it concerns and why (no echo of the input)."""
    assert isinstance(exc, RequestValidationError)
    detail = []
    for error in exc.errors():
        loc = [str(p) if not isinstance(p, int) else p for p in error.get("loc", ())]
        path = loc[1:] if loc[:1] in (["body"], ["query"], ["header"], ["path"]) else loc
        field = ".".join(str(p) for p in path) or PAIR_RULE_FIELDS.get(error.get("type", ""), "")
        detail.append(
            {"field": field, "loc": loc, "type": error.get("type"), "msg": error.get("msg")}
        )
    return JSONResponse(status_code=422, content={"detail": detail})


def _openapi(app: FastAPI, protected: frozenset[str]) -> Any:
    """``app.openapi``: FastAPI's document, plus what the hot path declares by hand: the
    ``Claim`` schema (read by :func:`~serving.api.deps.read_claim`, not by a body parameter)
    and the ``X-API-Key`` scheme on every operation :class:`ApiKeyGuard` protects."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            claim = Claim.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(claim.pop("$defs", {}))
            schemas["Claim"] = claim
            components["securitySchemes"] = {
                "APIKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": API_KEY_HEADER,
                    "description": "One of the keys in FRAUD_API_KEYS (comma-separated on the "
                    "server).",
                }
            }
            for path, operations in schema["paths"].items():
                if needs_key(path, protected):
                    for operation in operations.values():
                        operation["security"] = [{"APIKeyHeader": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app (settings from the environment unless given).

    Raises:
        pydantic.ValidationError: the settings are refused (e.g. no API keys): the process must
            not start.
    """
    settings = settings or Settings()
    app = FastAPI(
        title="Claim fraud scoring",
        version="0.2.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = ApiKeys.from_settings(settings)
    app.state.metrics = Metrics()
    app.state.batcher = LoopBatcher(on_flush=app.state.metrics.claims_per_pass.observe)
    app.state.model = None
    app.state.model_error = "starting"
    app.state.champion_version = None
    if settings.auth_disabled:
        log.warning("API key check disabled (FRAUD_API_AUTH_DISABLED=true): local demo only")
    if settings.sagemaker:
        log.info(
            "SageMaker mode: POST /invocations takes no API key (IAM guards InvokeEndpoint)%s",
            "" if settings.api_keys else "; no FRAUD_API_KEYS, so the /v1 routes accept none",
        )
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Routes are matched in order (~3 us per included router passed, FastAPI 0.165): the
    # scoring routes first. The benchmark's ceiling goes before them, so it never pays for
    # routing that /v1/score does not.
    routers = [score.router, health.router, model.router, sagemaker.router]
    if settings.bench_echo:
        routers.insert(0, bench.router)
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        BodySizeLimit,
        default=settings.max_body_bytes,
        per_path={
            "/v1/score/batch": settings.max_batch_body_bytes,
            "/invocations": settings.max_batch_body_bytes,
        },
        setting_names={
            "": "FRAUD_API_MAX_BODY_BYTES",
            "/v1/score/batch": "FRAUD_API_MAX_BATCH_BODY_BYTES",
            "/invocations": "FRAUD_API_MAX_BATCH_BODY_BYTES",
        },
    )
    protected = ApiKeyGuard.protected_paths(settings)
    app.add_middleware(ApiKeyGuard, keys=app.state.api_keys, protected=protected)
    static_paths = frozenset(
        str(route.path) for router in routers for route in router.routes if hasattr(route, "path")
    )
    app.add_middleware(  # outermost: counts every answer, the 401s and 413s included
        MetricsMiddleware, metrics=app.state.metrics, known_paths=static_paths
    )
    app.openapi = _openapi(app, protected)  # type: ignore[method-assign]
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
