"""The model quality gate: a candidate becomes champion only if it is good and sane."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fraud_core import metrics
from fraud_core.model.bundle import ModelBundle
from fraud_core.model.calibration import expected_calibration_error
from fraud_core.schema import ID_COLUMN, LABEL_COLUMN


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate.

    Attributes:
        min_average_precision: held-out AP the candidate must reach.
        max_ap_drop: how much worse than the champion (same claims) the candidate may be.
        max_calibration_error: bound on the expected calibration error of its probabilities.
    """

    min_average_precision: float = 0.05
    max_ap_drop: float = 0.02
    max_calibration_error: float = 0.02


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)


def evaluate_gate(
    candidate: ModelBundle,
    champion: ModelBundle | None,
    holdout: pd.DataFrame,
    config: GateConfig,
) -> GateResult:
    """Judge ``candidate`` on labelled held-out feature rows (and against ``champion``)."""
    y = holdout[LABEL_COLUMN].to_numpy(dtype=bool)
    if not y.any():
        return GateResult(False, ["the held-out claims contain no fraud label"])
    scores = candidate.predict_proba(holdout)
    m: dict[str, Any] = {
        "holdout_claims": int(len(y)),
        "holdout_frauds": int(y.sum()),
        "candidate_ap": metrics.average_precision(y, scores),
        "candidate_ece": expected_calibration_error(scores, y),
    }
    failures = []
    if m["candidate_ap"] < config.min_average_precision:
        failures.append(
            f"held-out AP {m['candidate_ap']:.4f} is below the floor "
            f"{config.min_average_precision:.4f}"
        )
    if m["candidate_ece"] > config.max_calibration_error:
        failures.append(
            f"expected calibration error {m['candidate_ece']:.4f} is above "
            f"{config.max_calibration_error:.4f}"
        )
    if champion is not None:
        m["champion_version"] = champion.version
        m["champion_ap"] = metrics.average_precision(y, champion.predict_proba(holdout))
        if m["candidate_ap"] < m["champion_ap"] - config.max_ap_drop:
            failures.append(
                f"AP {m['candidate_ap']:.4f} is worse than champion {champion.version}'s "
                f"{m['champion_ap']:.4f} on the same claims by more than {config.max_ap_drop}"
            )
    # Invariance: the claim id is not a feature, so renaming claims must not move any score.
    renamed = holdout.assign(**{ID_COLUMN: "renamed-" + holdout[ID_COLUMN].astype(str)})
    m["invariance_max_delta"] = float(np.max(np.abs(candidate.predict_proba(renamed) - scores)))
    if m["invariance_max_delta"] > 1e-9:
        failures.append(f"changing claim ids moved scores by {m['invariance_max_delta']:.2e}")
    return GateResult(not failures, failures, m)
