"""Asset checks. The claims contract (GX) is yielded by the claims asset itself (it splits the
rows); the model gate below decides whether a candidate may become champion."""

import dagster as dg

from fraud_assets.assets.model import fraud_model
from fraud_assets.resources import LakehouseResource
from fraud_core.gate import GateConfig, evaluate_gate
from fraud_core.layout import CANDIDATE_POINTER
from fraud_core.model.bundle import ModelBundle, load_champion
from fraud_core.training import holdout_of


class ModelGateConfig(dg.Config):
    min_average_precision: float = GateConfig.min_average_precision
    """Held-out AP the candidate must reach."""
    max_ap_drop: float = GateConfig.max_ap_drop
    """How much worse than the champion, on the same held-out claims, is tolerated."""
    max_calibration_error: float = GateConfig.max_calibration_error
    """Bound on the expected calibration error of the candidate's probabilities."""


@dg.asset_check(asset=fraud_model, blocking=True, name="model_gate")
def model_gate(config: ModelGateConfig, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Candidate vs floor, calibration bound, champion on the same claims, and invariance."""
    lh = lakehouse.get()
    candidate = ModelBundle.load(lh, lh.read_json(CANDIDATE_POINTER)["version"])
    champion = load_champion(lh) if lh.champion() is not None else None
    if champion is not None and champion.version == candidate.version:
        champion = None  # re-checking the current champion: nothing to compare against
    holdout = holdout_of(lh, candidate.lineage)
    result = evaluate_gate(
        candidate,
        champion,
        holdout,
        GateConfig(
            min_average_precision=config.min_average_precision,
            max_ap_drop=config.max_ap_drop,
            max_calibration_error=config.max_calibration_error,
        ),
    )
    return dg.AssetCheckResult(
        passed=result.passed,
        description="; ".join(result.failures) or "candidate passed every gate",
        metadata={"candidate_version": candidate.version, **result.measurements},
    )
