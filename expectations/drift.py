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
from great_expectations.data_context.types.base import ProgressBarsConfig


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
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("drift")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(
            name="drift",
            expectations=[
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
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="drift", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame[cols].astype("float64")})
    out: dict[str, dict[str, Any]] = {}
    for r in result.results:
        col = r.expectation_config.kwargs["column"]
        observed = (r.result or {}).get("observed_value")
        out[col] = {"kl": None if observed is None else float(observed), "passed": bool(r.success)}
    return out
