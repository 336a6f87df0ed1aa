"""Features: history-aware, no look-ahead, the same in batches as all at once."""

import numpy as np
import pandas as pd
import pytest

from fraud_core.features import (
    AMOUNT,
    FEATURES,
    NUMERIC,
    NUMERIC_FEATURES,
    POLICYHOLDER,
    PROVIDER,
    ClaimValue,
    Op,
    Stat,
    WindowFeature,
    build_features,
    claim_values,
    history_columns,
    history_features,
)
from fraud_core.online.plan import Plan
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


# A declaration with features of every kind the model does not use (yet): a shorter window, a
# mean of a nested value, a window grouped by a category column, a value of a value.
AMOUNT_TO_LIMIT = ClaimValue("amount_to_limit", Op.RATIO, ("claimed_amount", "coverage_limit"))
EXTENDED: tuple[ClaimValue | WindowFeature, ...] = (
    *NUMERIC,
    ClaimValue("log_limit_share", Op.LOG1P, (AMOUNT_TO_LIMIT,)),
    WindowFeature("ph_claims_7d", POLICYHOLDER, 7, Stat.COUNT),
    WindowFeature("prov_amount_to_limit_90d", PROVIDER, 90, Stat.MEAN, of=AMOUNT_TO_LIMIT),
    WindowFeature("region_amount_30d_log", "region", 30, Stat.SUM, of=AMOUNT, log=True),
)


def _brute_force(claims: pd.DataFrame, feature: WindowFeature) -> np.ndarray:
    """``feature`` by its definition, one claim at a time (the claims are their own history)."""
    values = claim_values(claims, (feature.of,)).to_numpy()[:, 0] if feature.of else None
    days = claims["claim_date"].to_numpy("datetime64[D]").astype(np.int64)
    keys = claims[feature.entity].to_numpy(object)
    out = np.empty(len(claims))
    for i in range(len(claims)):
        same = (keys == keys[i]) & (days <= days[i]) & (days >= days[i] - feature.days)
        others = same & (np.arange(len(claims)) != i)
        if feature.stat == Stat.COUNT:
            out[i] = others.sum()
        elif feature.stat == Stat.SUM:
            out[i] = values[others].sum()
        else:
            out[i] = values[same].mean()
    return np.log1p(np.maximum(out, 0.0)) if feature.log else out


def test_window_features_follow_their_declaration() -> None:
    """The generated DuckDB query computes each declared statistic as its definition says."""
    claims = _claims(20_000, seed=4)
    busy = claims["policyholder_id"].value_counts().index[:40]
    claims = claims[claims["policyholder_id"].isin(busy)].reset_index(drop=True)
    windowed = tuple(f for f in EXTENDED if isinstance(f, WindowFeature))
    got = history_features(claims, None, windowed)
    for feature in windowed:
        np.testing.assert_allclose(
            got[feature.name], _brute_force(claims, feature), rtol=1e-9, err_msg=feature.name
        )
    assert list(got.columns) == [f.name for f in windowed]
    assert history_columns(windowed)[-1] == "coverage_limit"  # read by the mean's value


def test_mistakes_in_a_declaration_are_refused() -> None:
    with pytest.raises(ValueError, match="takes 2"):
        ClaimValue("x", Op.RATIO, ("claimed_amount",))
    with pytest.raises(ValueError, match="not a claim column"):
        ClaimValue("x", Op.LOG1P, ("claimed_amount_eur",))
    with pytest.raises(ValueError, match="days_between reads dates"):
        ClaimValue("x", Op.LOG1P, ("claim_date",))
    with pytest.raises(ValueError, match="a count takes no value"):
        WindowFeature("x", POLICYHOLDER, 7, Stat.COUNT, of=AMOUNT)
    with pytest.raises(ValueError, match="id or category"):
        WindowFeature("x", "claimed_amount", 7, Stat.COUNT)
    with pytest.raises(ValueError, match="two different claim values"):
        Plan.of((*NUMERIC, ClaimValue("log_amount", Op.LOG1P, ("deductible",))))
