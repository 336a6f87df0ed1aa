"""Features: history-aware, no look-ahead, the same in batches as all at once."""

import numpy as np
import pandas as pd

from fraud_core.features import FEATURES, NUMERIC_FEATURES, build_features
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims


def _claims(n: int = 20_000, seed: int = 2) -> pd.DataFrame:
    return coerce_claims(simulate_claims(SimulationConfig(n_claims=n, seed=seed))).frame


def test_batch_with_history_equals_whole() -> None:
    claims = _claims()
    whole = build_features(claims)
    batch = claims.iloc[12_000:15_000]
    part = build_features(batch, claims)  # history may include the batch and later claims
    np.testing.assert_allclose(
        part[list(NUMERIC_FEATURES)].to_numpy(),
        whole.iloc[12_000:15_000][list(NUMERIC_FEATURES)].to_numpy(),
    )
    assert part["claim_id"].tolist() == batch["claim_id"].tolist()


def test_future_claims_do_not_change_past_features() -> None:
    claims = _claims(5_000)
    past = claims[claims["claim_date"] < "2024-06-01"]
    before = build_features(past)
    after = build_features(past, claims)
    pd.testing.assert_frame_equal(before[list(FEATURES)], after[list(FEATURES)])


def test_policyholder_history_counts() -> None:
    base = _claims(3).iloc[:1]
    rows = []
    for i, day in enumerate(["2024-03-01", "2024-03-10", "2024-03-20", "2024-05-01"]):
        rows.append(base.assign(claim_id=f"X{i}", claim_date=pd.Timestamp(day)))
    claims = pd.concat(rows, ignore_index=True)
    f = build_features(claims)
    assert f["ph_claims_30d"].tolist() == [0, 1, 2, 0]
    assert f["ph_claims_365d"].tolist() == [0, 1, 2, 3]
    assert f["prov_claims_90d"].tolist() == [0, 1, 2, 3]
