"""The simulator: realistic columns, seeded, scenarios with their signatures, a usable oracle."""

import numpy as np
import pandas as pd
import pytest

from fraud_core import schema
from fraud_core.features import build_features
from fraud_core.metrics import average_precision
from fraud_core.simulate import (
    SCENARIOS,
    SimulationConfig,
    inject_bad_rows,
    simulate_claims,
    split_into_batches,
    write_landing_files,
)


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return simulate_claims(SimulationConfig(n_claims=50_000, seed=3))


def test_columns_are_the_schema_and_clean(claims: pd.DataFrame) -> None:
    assert [c.name for c in schema.CLAIM_COLUMNS] == list(claims.columns[:-1])
    coerced = schema.coerce_claims(claims.drop(columns="scenario"))
    assert not coerced.bad_mask.any()
    assert claims["claim_id"].is_unique
    assert (claims["claimed_amount"] <= claims["coverage_limit"]).all()
    assert (claims["policy_start_date"] <= claims["claim_date"]).all()
    assert claims["claim_date"].is_monotonic_increasing


def test_same_seed_same_claims_other_seed_other_claims() -> None:
    a = simulate_claims(SimulationConfig(n_claims=2_000, seed=5))
    b = simulate_claims(SimulationConfig(n_claims=2_000, seed=5))
    c = simulate_claims(SimulationConfig(n_claims=2_000, seed=6))
    pd.testing.assert_frame_equal(a, b)
    assert not a["claimed_amount"].equals(c["claimed_amount"])


def test_fraud_rate_and_oracle(claims: pd.DataFrame) -> None:
    rate = claims["is_fraud"].astype(bool).mean()
    assert 0.01 <= rate <= 0.03
    # Labels are drawn from the true probability: their means agree.
    assert abs(claims["true_fraud_probability"].mean() - rate) < 0.003
    y = claims["is_fraud"].to_numpy(dtype=bool)
    oracle_ap = average_precision(y, claims["true_fraud_probability"].to_numpy())
    assert oracle_ap > 4 * rate  # the oracle ranks far better than chance


def test_each_scenario_has_its_signature_and_raises_fraud(claims: pd.DataFrame) -> None:
    features = build_features(schema.coerce_claims(claims.drop(columns="scenario")).frame)
    base = claims.loc[claims["scenario"] == "", "is_fraud"].astype(bool).mean()
    for name in SCENARIOS:
        shows = claims["scenario"].str.contains(name).to_numpy()
        assert shows.sum() > 100, name
        assert claims.loc[shows, "is_fraud"].astype(bool).mean() > 5 * base, name
    early = claims["scenario"].str.contains("early_claim").to_numpy()
    assert (features.loc[early, "days_since_policy_start"] < 30).all()
    burst = claims["scenario"].str.contains("claim_burst").to_numpy()
    assert ((features["ph_claims_30d"] >= 2).to_numpy() == burst).all()
    nll = claims["scenario"].str.contains("near_limit_late").to_numpy()
    assert (features.loc[nll, "amount_to_limit"] >= 0.9).all()
    assert (features.loc[nll, "report_delay_days"] > 30).all()
    ring = claims["scenario"].str.contains("provider_ring").to_numpy()
    assert (
        features.loc[ring, "prov_mean_log_amount_90d"].mean()
        > features.loc[~ring, "prov_mean_log_amount_90d"].mean() + 0.2
    )


def test_drift_shifts_later_claims() -> None:
    still = simulate_claims(SimulationConfig(n_claims=40_000, seed=4))
    drifted = simulate_claims(SimulationConfig(n_claims=40_000, seed=4, drift=1.0))
    late = drifted["claim_date"] > drifted["claim_date"].quantile(0.75)
    late_still = still["claim_date"] > still["claim_date"].quantile(0.75)
    nll = drifted.loc[late, "scenario"].str.contains("near_limit_late").mean()
    nll_still = still.loc[late_still, "scenario"].str.contains("near_limit_late").mean()
    assert nll > 2 * nll_still
    assert (
        drifted.loc[late, "claimed_amount"].median()
        > still.loc[late_still, "claimed_amount"].median()
    )


def test_bad_rows_are_caught_by_the_contract(claims: pd.DataFrame) -> None:
    from expectations.claims import validate_claims

    dirty = inject_bad_rows(claims.head(5_000).drop(columns="scenario"), 0.02, seed=1)
    result = validate_claims(dirty)
    assert len(result.valid) + len(result.quarantined) == 5_000
    assert 80 <= len(result.quarantined) <= 100  # ~100 corrupted; a few can't be told apart


def test_landing_files_in_every_format_read_back(tmp_path, claims: pd.DataFrame) -> None:
    from fraud_core.landing import read_claims_file

    batches = split_into_batches(claims.head(300), 3)
    paths = write_landing_files(batches, str(tmp_path), "mixed")
    assert [p.rsplit(".", 1)[1] for p in paths] == ["parquet", "csv", "jsonl"]
    for path, batch in zip(paths, batches, strict=True):
        with open(path, "rb") as fh:
            raw = read_claims_file(path, fh.read())
        typed = schema.coerce_claims(raw)
        assert not typed.bad_mask.any(), path
        assert typed.frame["claim_id"].tolist() == batch["claim_id"].tolist()
        np.testing.assert_allclose(typed.frame["claimed_amount"], batch["claimed_amount"])
        assert (typed.frame["claim_date"].to_numpy() == batch["claim_date"].to_numpy()).all()
