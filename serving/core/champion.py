"""The model a process serves: a checked :class:`ClaimScorer` plus the champion pointer it came
from, and the load that builds it (run off the event loop: it reads the lakehouse)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraud_core.lakehouse import Lakehouse
from fraud_core.schema import claims_frame
from fraud_core.scoring import ClaimScorer
from serving.api.models import Claim, load_example

# The fast path and the pipeline's path may differ by float rounding, never by more.
FAST_PATH_TOLERANCE = 1e-5


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


def load_model(lakehouse: Lakehouse, pointer: dict[str, Any]) -> LoadedModel:
    """Load the bundle the pointer names with the lakehouse's claims history, and check it.

    The check scores the example claim through the fast path and through the pipeline's
    path (pandas + DuckDB features, the torch network): a bundle whose score is not a
    probability, or whose fast-path score disagrees, is refused.

    Raises:
        BundleError, LakehouseError: the bundle or the history cannot be read.
        ValueError: the bundle loads but the history or the network does not fit this code.
        RuntimeError: the check fails.
    """
    version = str(pointer["version"])
    scorer = ClaimScorer.from_lakehouse(lakehouse, version)
    example = Claim.model_validate(load_example())
    fast = float(scorer.score_records([vars(example)], explain=True).fraud_score[0])
    reference = float(scorer.score(claims_frame([example.model_dump()]))["fraud_score"].iloc[0])
    if not (math.isfinite(fast) and 0.0 <= fast <= 1.0):
        raise RuntimeError(f"model {version} scores the example claim as {fast}, not in [0, 1]")
    if abs(fast - reference) > FAST_PATH_TOLERANCE:
        raise RuntimeError(
            f"model {version}: the fast path scores the example claim {fast:.6f}, the "
            f"pipeline's path {reference:.6f}; refusing a model the two paths disagree on"
        )
    return LoadedModel(
        scorer=scorer,
        pointer=dict(pointer),
        bundle_uri=str(
            pointer.get("bundle_uri") or lakehouse.url(lakehouse.model_path(version, ""))
        ),
    )
