"""claim_features vs a plain DuckDB window-function implementation of the same features.

The anchor is what an engineer would write by hand: one SQL query over the claims table. Both
run in this process on the same frame; the benchmark first checks that they agree.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from bench.common import figure, timed
from fraud_core.features import NUMERIC_FEATURES, build_features
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims

BASELINE_SQL = """
SELECT claim_id,
    ln(1 + claimed_amount) AS log_amount,
    claimed_amount / coverage_limit AS amount_to_limit,
    deductible / claimed_amount AS deductible_to_amount,
    date_diff('day', policy_start_date, claim_date)::DOUBLE AS days_since_policy_start,
    report_delay_days::DOUBLE AS report_delay_days,
    police_report::DOUBLE AS police_report,
    witnesses::DOUBLE AS witnesses,
    asset_age_years::DOUBLE AS asset_age_years,
    prior_claims::DOUBLE AS prior_claims,
    (count(*) OVER ph30 - 1)::DOUBLE AS ph_claims_30d,
    (count(*) OVER ph365 - 1)::DOUBLE AS ph_claims_365d,
    ln(1 + greatest(sum(claimed_amount) OVER ph30 - claimed_amount, 0)) AS ph_amount_30d_log,
    (count(*) OVER prov90 - 1)::DOUBLE AS prov_claims_90d,
    avg(ln(1 + claimed_amount)) OVER prov90 AS prov_mean_log_amount_90d,
    avg(CASE WHEN report_delay_days > 30 THEN 1.0 ELSE 0.0 END) OVER prov90
        AS prov_late_report_rate_90d
FROM claims
WINDOW
    ph30 AS (PARTITION BY policyholder_id ORDER BY claim_date
             RANGE BETWEEN INTERVAL 30 DAYS PRECEDING AND CURRENT ROW),
    ph365 AS (PARTITION BY policyholder_id ORDER BY claim_date
              RANGE BETWEEN INTERVAL 365 DAYS PRECEDING AND CURRENT ROW),
    prov90 AS (PARTITION BY provider_id ORDER BY claim_date
               RANGE BETWEEN INTERVAL 90 DAYS PRECEDING AND CURRENT ROW)
"""


def baseline(claims: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        con.register("claims", claims)
        return con.execute(BASELINE_SQL).fetchdf()
    finally:
        con.close()


def run(quick: bool) -> list[dict[str, Any]]:
    n = 200_000 if quick else 5_000_000
    claims = coerce_claims(simulate_claims(SimulationConfig(n_claims=n, seed=20_261))).frame
    ours = build_features(claims)
    theirs = baseline(claims).set_index("claim_id").loc[ours["claim_id"]]
    cols = list(NUMERIC_FEATURES)
    if not np.allclose(ours[cols].to_numpy(), theirs[cols].to_numpy(), equal_nan=True):
        raise AssertionError("claim_features and the DuckDB baseline disagree: not comparable")
    runs = 1 if quick else 3
    ours_s, _ = timed(lambda: build_features(claims), runs=runs, warmup=1)
    base_s, _ = timed(lambda: baseline(claims), runs=runs, warmup=1)
    ratio = [a / b for a, b in zip(ours_s, base_s, strict=True)]
    return [
        figure(
            "features_vs_duckdb",
            ratio,
            "x",
            goal="<= 1.0",
            anchor=f"plain DuckDB query: {np.median(base_s):.2f} s",
            notes=f"{n:,} claims, {len(cols)} numeric + 3 categorical features; values equal",
            warmup=1,
        ),
        figure(
            "features_throughput",
            [n / s for s in ours_s],
            "claims/s",
            notes="build_features over the whole frame (history windows + row-local features)",
            warmup=1,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
