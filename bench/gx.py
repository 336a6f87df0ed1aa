"""Great Expectations benchmarks: the claims contract and the drift check over 1M claims.

  gx_claims_suite   validate_claims on 1,000,000 clean claims as they arrive (typing + GX +
                    row-level split); goal <= 1 s
  gx_drift_check    PSI + binned KS + GX KL divergence of 1,000,000 feature rows against a
                    reference profile
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.common import figure, timed
from expectations.claims import validate_claims
from expectations.drift import kl_divergence
from fraud_core import drift
from fraud_core.features import build_features
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims


def run(quick: bool) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    runs = 1 if quick else 3
    claims = simulate_claims(SimulationConfig(n_claims=n, seed=20_263)).drop(columns="scenario")
    suite_s, result = timed(lambda: validate_claims(claims), runs=runs, warmup=1)
    assert len(result.valid) == n, "clean claims must all pass the contract"
    features = build_features(coerce_claims(claims).frame)
    reference = drift.profile(features.iloc[: n // 2], drift.MONITORED_FEATURES)

    def check() -> None:
        drift.drift_table(reference, features, drift.MONITORED_FEATURES)
        kl_divergence(reference, features, drift.MONITORED_FEATURES)

    drift_s, _ = timed(check, runs=runs, warmup=1)
    return [
        figure(
            "gx_claims_suite",
            suite_s,
            "s",
            goal="<= 1.0",
            notes=f"{n:,} claims as they arrive: typing, {len(claims.columns)} columns, GX suite, "
            "row-level split",
            warmup=1,
        ),
        figure(
            "gx_drift_check",
            drift_s,
            "s",
            notes=f"{n:,} rows x {len(drift.MONITORED_FEATURES)} features: PSI, KS, GX KL",
            warmup=1,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
