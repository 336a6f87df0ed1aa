"""Drift as a Great Expectations suite: KL divergence of a batch against a model's reference.

The reference profile (fraud_core.drift.profile) keeps the inner quantile edges and the share
of training rows per bin; GX's partition object gets open outer bins (-inf, +inf) so that values
beyond the training range count in the first/last bin instead of making KL infinite.
"""

from __future__ import annotations

import math
from typing import Any

import great_expectations as gx
import pandas as pd

from expectations.runner import FrameValidation


def partition_object(reference: dict[str, Any]) -> dict[str, list[float]]:
    return {
        "bins": [-math.inf, *map(float, reference["bins"]), math.inf],
        "weights": [float(w) for w in reference["weights"]],
    }


def kl_divergence(
    reference_profile: dict[str, Any],
    frame: pd.DataFrame,
    columns: list[str] | tuple[str, ...],
    threshold: float = 0.1,
) -> dict[str, dict[str, Any]]:
    """Run ``ExpectColumnKLDivergenceToBeLessThan`` per column; observed KL and success."""
    cols = [c for c in columns if c in reference_profile and c in frame.columns]
    if not cols:
        return {}
    validation = FrameValidation.compile(
        "drift",
        [
            gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
                column=col,
                partition_object=partition_object(reference_profile[col]),
                threshold=threshold,
                # Protects against: a shift of this input away from what the champion
                # learned on (its ranking and calibration no longer hold).
                meta={"intent": f"{col} is distributed as in the champion's training data"},
            )
            for col in cols
        ],
    )
    result = validation.run(frame[cols].astype("float64"))
    out: dict[str, dict[str, Any]] = {}
    for r in result.results:
        assert r.expectation_config is not None  # GX returns each result with its expectation
        col = r.expectation_config.kwargs["column"]
        observed = (r.result or {}).get("observed_value")
        out[col] = {"kl": None if observed is None else float(observed), "passed": bool(r.success)}
    return out
