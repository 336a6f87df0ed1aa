"""Great Expectations benchmarks: the claims contract and the drift check over 1M claims.

gx_claims_suite   validate_claims on 1,000,000 clean claims as they arrive (typing, numpy
                  row-level expectations, GX batch-level null fractions, row-level split);
                  goal <= 1 s
gx_claims_dirty   the same on 1,000,000 claims with 2% bad rows (reasons built per bad row)
gx_data_docs      publishing that validation's Data Docs page into a local lakehouse (the
                  static files are already there, as after the first batch)
gx_drift_check    PSI + binned KS + GX KL divergence of 1,000,000 feature rows against a
                  reference profile
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

from bench.common import figure, timed
from expectations.claims import build_claims_suite, validate_claims
from expectations.data_docs import publish_validation
from expectations.drift import kl_divergence
from fraud_core import drift
from fraud_core.features import build_features
from fraud_core.lakehouse import Lakehouse
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, inject_bad_rows, simulate_claims


def run(quick: bool) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    runs = 1 if quick else 3
    claims = simulate_claims(SimulationConfig(n_claims=n, seed=20_263)).drop(columns="scenario")
    suite_s, result = timed(lambda: validate_claims(claims), runs=runs, warmup=1)
    assert len(result.valid) == n, "clean claims must all pass the contract"
    dirty = inject_bad_rows(claims, 0.02, seed=7)
    dirty_s, dirty_result = timed(lambda: validate_claims(dirty), runs=runs, warmup=1)
    assert len(dirty_result.quarantined) > 0.015 * n, "the bad rows must be quarantined"
    assert result.report is not None
    with tempfile.TemporaryDirectory() as lake:
        lh = Lakehouse(lake)
        pages = iter(range(1_000))
        publish = lambda: publish_validation(  # noqa: E731
            lh, result.report, build_claims_suite(), f"b{next(pages)}"
        )
        docs_s, _ = timed(publish, runs=runs, warmup=1)
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
            notes=f"{n:,} claims as they arrive: typing, {len(claims.columns)} columns, "
            "row-level expectations in numpy, GX batch-level null fractions, row-level split",
            warmup=1,
        ),
        figure(
            "gx_claims_dirty",
            dirty_s,
            "s",
            notes=f"{n:,} claims, {len(dirty_result.quarantined):,} quarantined with reasons",
            warmup=1,
        ),
        figure(
            "gx_data_docs",
            docs_s,
            "s",
            notes=f"one validation's Data Docs page ({len(result.report.results)} expectations) "
            "into a local lakehouse; "
            "independent of the batch size",
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
