"""The model quality gate: a candidate becomes champion only if it is good and sane."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraud_core import metrics
from fraud_core.model.calibration import expected_calibration_error
from fraud_core.schema import ID_COLUMN, LABEL_COLUMN

if TYPE_CHECKING:  # torch: imported by whoever loads a bundle
    from fraud_core.model.bundle import ModelBundle


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate.

    Attributes:
        min_average_precision: held-out AP the candidate must reach.
        max_ap_drop: how much worse than the champion (same claims) the candidate may be.
        max_calibration_error: bound on the expected calibration error of its probabilities.
        max_directional_violations: share of suspicious claims whose score may drop
            materially (by over 10%) when their fraud signal is pushed further (a network is
            not monotone by construction; a few flat spots are tolerated, a trend is not).
    """

    min_average_precision: float = 0.05
    max_ap_drop: float = 0.02
    max_calibration_error: float = 0.02
    max_directional_violations: float = 0.05


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
    failures += _behaviour(candidate, holdout, config, m)
    return GateResult(not failures, failures, m)


# Each fraud scenario as (which held-out claims show it, how to push its signal further, and
# a clear case of it). Values are feature values, as fraud_core.features computes them.
_SCENARIOS: dict[str, tuple[Any, dict[str, Any], dict[str, float]]] = {
    "near_limit_late": (
        lambda f: (f["amount_to_limit"] >= 0.9) & (f["report_delay_days"] > 30),
        {"report_delay_days": lambda v: v + 30},
        {"amount_to_limit": 0.97, "report_delay_days": 75.0},
    ),
    "early_claim": (
        lambda f: f["days_since_policy_start"] < 30,
        {"days_since_policy_start": lambda v: np.maximum(v // 2, 0)},
        {"days_since_policy_start": 3.0},
    ),
    "claim_burst": (
        lambda f: f["ph_claims_30d"] >= 2,
        {"ph_claims_30d": lambda v: v + 2, "ph_claims_365d": lambda v: v + 2},
        {"ph_claims_30d": 4.0, "ph_claims_365d": 5.0},
    ),
}


def _behaviour(
    candidate: ModelBundle, holdout: pd.DataFrame, config: GateConfig, m: dict[str, Any]
) -> list[str]:
    """Directional and minimum-functionality tests, per fraud scenario."""
    failures = []
    for name, (shows, push, clear) in _SCENARIOS.items():
        rows = holdout[shows(holdout)]
        if len(rows):
            scores = candidate.predict_proba(rows)
            pushed = rows.assign(**{col: fn(rows[col]) for col, fn in push.items()})
            drop = scores - candidate.predict_proba(pushed)
            # A material drop: more than 10% of the score (and 1e-3). Where the true risk is
            # flat (e.g. a third vs a fifth recent claim) a network wobbles slightly; that is
            # not a reversed signal.
            share = float(np.mean(drop > np.maximum(1e-3, 0.1 * scores)))
            m[f"directional_{name}_violations"] = share
            if share > config.max_directional_violations:
                failures.append(
                    f"directional: pushing {name} further lowered {share:.1%} of scores "
                    f"(limit {config.max_directional_violations:.0%})"
                )
        # A clear case: a real held-out claim showing the scenario (its median-scored one, so
        # the rest of the claim is consistent with it), with the signal set to a clear value.
        base = (
            rows.iloc[[int(np.argsort(scores)[len(scores) // 2])]]
            if len(rows)
            else holdout.iloc[[len(holdout) // 2]]
        )
        case_score = float(candidate.predict_proba(base.assign(**clear))[0])
        m[f"clear_{name}_score"] = case_score
        if case_score < candidate.threshold:
            failures.append(
                f"minimum functionality: a clear {name} case scores {case_score:.3f}, below "
                f"the decision threshold {candidate.threshold:.3f}"
            )
    return failures
