"""The champion in the API: the model this process serves, and :class:`Champion`, which loads
it, checks it and swaps in a new one without a restart.

At startup :meth:`Champion.watching` loads the champion; when that fails (no champion yet, a
corrupt bundle) the service still starts and :attr:`Champion.error` says why. It then polls the
champion pointer and swaps in a new model when the champion changes. With ``reload_history``
it also follows raw: batches that land are added to the history the model holds
(:meth:`ClaimScorer.updated`: their rows only are read, and the rows the window no longer
reaches dropped), and a batch replaced or removed reloads the history. A new model that
cannot be loaded or fails its check is refused: the old one keeps serving, ``error`` and the
logs say why,
``fraud_api_model_reloads_total{result="refused"}`` counts it, and it is not tried again before
:data:`RETRY_REFUSED_SECONDS` unless the pointer or the raw batches change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.online.plan import PLAN
from fraud_core.schema import ID_COLUMN, claims_frame
from fraud_core.scoring import ClaimScorer
from serving.core.metrics import Metrics

log = logging.getLogger(__name__)

# The fast path and the pipeline's path may differ by float rounding, never by more.
FAST_PATH_TOLERANCE = 1e-5
# A refused champion is tried again after this long (the failure may have been transient).
RETRY_REFUSED_SECONDS = 60.0


@dataclass(frozen=True)
class LoadedModel:
    """A scorer ready to serve, with its lineage. Immutable: a swap replaces the whole object,
    so a request keeps the model it started with."""

    scorer: ClaimScorer
    pointer: dict[str, Any]
    bundle_uri: str
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def version(self) -> str:
        """The bundle's version."""
        return self.scorer.version

    def lineage(self, key: str) -> str | None:
        """A lineage value from the champion pointer, else from the bundle's manifest."""
        value = self.pointer.get(key, self.scorer.bundle.lineage.get(key))
        return None if value is None else str(value)


def load_model(
    lakehouse: Lakehouse, pointer: Mapping[str, Any], example: Mapping[str, Any]
) -> LoadedModel:
    """Load the bundle the pointer names with the lakehouse's claims history, and check it.

    The check scores ``example`` (a validated claim record) through the fast path, the
    pipeline's path (pandas + DuckDB features, the torch network) and every other path a
    request takes: a bundle whose score is not a probability, or whose paths disagree, is
    refused.

    Raises:
        BundleError, LakehouseError: the bundle or the history cannot be read.
        ValueError: the bundle loads but the history or the network does not fit this code.
        RuntimeError: the check fails.
    """
    version = str(pointer["version"])
    scorer = ClaimScorer.from_lakehouse(lakehouse, version)
    fast = float(scorer.score_records([example], explain=True).fraud_score[0])
    reference = float(scorer.score(claims_frame([dict(example)]))["fraud_score"].iloc[0])
    if not (math.isfinite(fast) and 0.0 <= fast <= 1.0):
        raise RuntimeError(f"model {version} scores the example claim as {fast}, not in [0, 1]")
    # Every path a request takes scores it too (one claim with and without its top features,
    # a batch): their compiled kernels are built now, not on the first request (~4 s on a
    # fresh install), and a path that disagrees refuses the model.
    # (the batch's other claim under keys of its own: in none of the example's windows)
    twin = {**example, ID_COLUMN: f"{example[ID_COLUMN]}-twin"}
    twin.update({key: f"{example[key]}-twin" for key in PLAN.entities})
    paths = {
        "the pipeline's path": reference,
        "the per-request path": scorer.score_one(example, top_k=3).fraud_score,
        "the per-request path without features": scorer.score_one(example).fraud_score,
        "the batch path": float(scorer.score_records([twin, example]).fraud_score[1]),
    }
    for path, score in paths.items():
        if abs(fast - score) > FAST_PATH_TOLERANCE:
            raise RuntimeError(
                f"model {version}: the fast path scores the example claim {fast:.6f}, {path} "
                f"{score:.6f}; refusing a model the two paths disagree on"
            )
    return LoadedModel(
        scorer=scorer,
        pointer=dict(pointer),
        bundle_uri=str(
            pointer.get("bundle_uri") or lakehouse.url(lakehouse.model_path(version, ""))
        ),
    )


def freeze_heap() -> None:
    """Put everything alive now (libraries, the model, its history index) out of the cyclic
    collector's reach.

    A full collection of the long-lived objects of a loaded app would stall requests at random
    (it was the p99 of /v1/score: bench/serve.py ``score_p99``). Called once a model is loaded;
    it unfreezes first, so the replaced model's reference cycles are collected in this one
    pause instead of leaking.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Champion:
    """The champion model of this process, and the watcher that keeps it current.

    Read by requests (on the event loop): :attr:`model` (the :class:`LoadedModel` serving now,
    or None), :attr:`error` (why the current champion is not serving, or None) and
    :attr:`pointer_version` (the version the champion pointer named at the last poll).

    Args:
        lakehouse_uri: the lakehouse holding ``models/champion.json`` and the raw claims.
        metrics: the app's collectors (reloads, the serving model's info).
        example: a validated claim record, scored by :func:`load_model`'s check.
        reload_history: also reload the history when new raw batches land.
    """

    def __init__(
        self,
        lakehouse_uri: str,
        metrics: Metrics,
        example: Mapping[str, Any],
        reload_history: bool,
    ) -> None:
        self.lakehouse_uri = lakehouse_uri
        self.metrics = metrics
        self.example = example
        self.reload_history = reload_history
        self.model: LoadedModel | None = None
        self.error: str | None = "starting"
        self.pointer_version: str | None = None
        self._refused_key: str | None = None  # the champion (and batches) refused last
        self._refused_at = 0.0

    @cached_property
    def lakehouse(self) -> Lakehouse:
        """The lakehouse, opened at the first :meth:`refresh` (in the app's lifespan)."""
        return Lakehouse(self.lakehouse_uri)

    async def refresh(self) -> None:
        """Load the champion if it is not the model serving now; never drops a working model."""
        lakehouse = self.lakehouse
        lakehouse.fs.invalidate_cache()  # object stores' listings are cached by fsspec
        try:
            pointer: dict[str, Any] | None = await asyncio.to_thread(lakehouse.champion)
        except Exception as exc:  # unreadable pointer: keep serving, say why
            log.error("cannot read the champion pointer: %s", exc)
            self.error = f"champion pointer unreadable: {exc}"
            return
        current = self.model
        if pointer is None:
            self.pointer_version = None
            if current is None:
                self.error = (
                    f"no champion model in {lakehouse.url('models')}: materialize fraud_model "
                    "and champion_model first (make demo does)"
                )
            return
        version = str(pointer["version"])
        self.pointer_version = version
        key = repr(sorted(pointer.items()))
        if current is not None and current.version == version:
            if not self.reload_history:
                self.error = None
                return
            try:
                updated = await asyncio.to_thread(current.scorer.updated, lakehouse)
            except Exception as exc:  # unreadable raw: keep serving, say why
                log.error("cannot add the new raw batches to the history: %s", exc)
                self.error = f"raw claims unreadable: {exc}"
                return
            if updated is current.scorer:
                self.error = None
                return
            if updated is not None:  # batches were added: the same model, the history grown
                self._swap(dataclasses.replace(current, scorer=updated), "new raw batches")
                return
            batches = await asyncio.to_thread(lakehouse.batches, RAW)
            key += repr(batches)
            reason = f"raw batches replaced ({len(batches)} now)"
        else:
            reason = f"champion changed (serving {current and current.version})"
        if key == self._refused_key and time.monotonic() - self._refused_at < RETRY_REFUSED_SECONDS:
            return
        try:
            new = await asyncio.to_thread(load_model, lakehouse, pointer, self.example)
        except Exception as exc:  # a bad bundle must not take the service down
            log.error(
                "champion %s refused, keeping %s: %s", version, current and current.version, exc
            )
            self._refused_key = key
            self._refused_at = time.monotonic()
            self.error = f"champion {version} could not be loaded: {exc}"
            self.metrics.reloads.labels("refused").inc()
            return
        del current
        self._swap(new, reason)

    def _swap(self, new: LoadedModel, reason: str) -> None:
        """Serve ``new`` from now on (one assignment: requests in flight keep the model they
        got)."""
        self.model = new
        self.error = None
        self._refused_key = None
        freeze_heap()  # the replaced model goes with this collection
        self.metrics.reloads.labels("swapped").inc()
        self.metrics.model_changed(
            new.version, new.lineage("metaflow_run") or "", new.lineage("dagster_run_id") or ""
        )
        log.info(
            "serving model %s (%s; %d history claims)", new.version, reason, len(new.scorer.history)
        )

    async def _poll(self, every: float) -> None:
        """:meth:`refresh` every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception:  # keep polling whatever happens; the next poll may succeed
                log.exception("champion poll failed")

    @contextlib.asynccontextmanager
    async def watching(self, every: float) -> AsyncIterator[None]:
        """Load the champion, then poll for a new one every ``every`` seconds (0: never) until
        the block ends."""
        await self.refresh()
        if self.model is None:
            log.warning("starting without a model: %s", self.error)
        watcher = (
            asyncio.create_task(self._poll(every), name="champion-watcher") if every > 0 else None
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            gc.unfreeze()
