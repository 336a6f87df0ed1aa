"""The API's fast path equals the pipeline's: features, scores and the numpy forward pass.

``ClaimScorer.score_records`` computes history features with numpy from the scorer's index and
runs the network as a numpy forward pass; these tests hold it to
:func:`fraud_core.features.build_features` (DuckDB windows over the full history) and to the
torch network, on many claims: every window edge, same-day claims, claims of one request that
see each other, claims already in the history, unknown policyholders and categories.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fraud_core.features import (
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    ClaimValue,
    WindowFeature,
    build_features,
    claim_values,
    history_features,
)
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.model.bundle import BundleError
from fraud_core.model.fast import NumpyForward, _nonzero_spans
from fraud_core.model.network import FraudNet, NetConfig, average_of
from fraud_core.model.train import encode
from fraud_core.online import kernels
from fraud_core.online.history import HistoryIndex
from fraud_core.online.plan import Plan
from fraud_core.schema import INPUT_COLUMNS
from fraud_core.scoring import ClaimScorer
from tests.fraud_core.test_features import EXTENDED

NUMERIC = list(NUMERIC_FEATURES)


@pytest.fixture(scope="module")
def scorer_and_claims(champion_lakehouse: Path) -> tuple[ClaimScorer, pd.DataFrame]:
    lh = Lakehouse(str(champion_lakehouse))
    claims = lh.read_batches(RAW).drop(columns="batch_id")
    return ClaimScorer.from_lakehouse(lh), claims


def records_of(claims: pd.DataFrame) -> list[dict[str, Any]]:
    """Typed claims as the API's request model gives them: python values, dates as dates."""
    out = []
    for row in claims[list(INPUT_COLUMNS)].astype(object).to_dict("records"):
        out.append(
            {
                k: (
                    v.date()
                    if isinstance(v, pd.Timestamp)
                    else v.item()
                    if hasattr(v, "item")
                    else v
                )
                for k, v in row.items()
            }
        )
    return out


def assert_same_features(scorer: ClaimScorer, claims: pd.DataFrame, history: pd.DataFrame) -> None:
    """Fast features of ``claims`` as one request and one by one == build_features."""
    claims = claims.reset_index(drop=True)
    expected = build_features(claims, history)
    records = records_of(claims)
    numeric, codes, categories = scorer.featurize_records(records)
    np.testing.assert_allclose(numeric, expected[NUMERIC].to_numpy(float), rtol=1e-9, atol=1e-9)
    _, expected_codes = encode(expected, scorer.bundle.vocabulary)
    np.testing.assert_array_equal(codes, expected_codes.numpy())
    assert categories == expected[list(CATEGORICAL_FEATURES)].astype(str).values.tolist()
    # One claim per call, as POST /v1/score does: the same, when the request has no neighbours.
    alone = build_features(claims.iloc[:10].reset_index(drop=True).iloc[[0]], history)
    one, _, _ = scorer.featurize_records(records[:1])
    np.testing.assert_allclose(one, alone[NUMERIC].to_numpy(float), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shift_days", [0, 1, 29, 30, 31, 89, 90, 91, 364, 365, 366, 400])
def test_features_at_window_edges(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame], shift_days: int
) -> None:
    """New claims copy existing ones, ``shift_days`` later: the originals sit on the edges."""
    scorer, history = scorer_and_claims
    claims = history.sample(150, random_state=shift_days).copy()
    claims["claim_id"] = "NEW-" + claims["claim_id"].astype(str)
    claims["claim_date"] = claims["claim_date"] + pd.Timedelta(days=shift_days)
    assert_same_features(scorer, claims, history)
    # one by one, each against the full history
    for i in range(0, 150, 37):
        claim = claims.iloc[[i]].reset_index(drop=True)
        got, _, _ = scorer.featurize_records(records_of(claim))
        want = build_features(claim, history)[NUMERIC].to_numpy(float)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_features_of_claims_that_see_each_other(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    """Every claim of a few busy policyholders and providers, as new claims in one request."""
    scorer, history = scorer_and_claims
    busy_ph = history["policyholder_id"].value_counts().index[:5]
    busy_prov = history["provider_id"].value_counts().index[:2]
    picked = history[history["policyholder_id"].isin(busy_ph)]
    picked = pd.concat([picked, history[history["provider_id"].isin(busy_prov)].head(300)])
    claims = picked.drop_duplicates("claim_id").copy()
    claims["claim_id"] = "REQ-" + claims["claim_id"].astype(str)
    claims["claim_date"] = claims["claim_date"] + pd.Timedelta(days=7)
    assert len(claims) > 300
    assert_same_features(scorer, claims, history)


def test_features_of_claims_already_in_the_history(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    """Rescoring stored claims: the stored copy is replaced by the request, not counted twice."""
    scorer, history = scorer_and_claims
    claims = history.sample(200, random_state=5).copy()
    claims.loc[claims.index[::2], "claimed_amount"] = 1234.5  # the request's values win
    claims["claimed_amount"] = np.minimum(claims["claimed_amount"], claims["coverage_limit"])
    assert_same_features(scorer, claims, history)


def test_features_of_unknown_keys_and_categories(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    scorer, history = scorer_and_claims
    claims = history.sample(20, random_state=9).copy()
    claims["claim_id"] = "UNK-" + claims["claim_id"].astype(str)
    claims["policyholder_id"] = "PH-NEVER-SEEN"
    claims.loc[claims.index[:10], "provider_id"] = "PRV-NEVER-SEEN"
    assert_same_features(scorer, claims, history)


def test_empty_history(scorer_and_claims: tuple[ClaimScorer, pd.DataFrame]) -> None:
    scorer, history = scorer_and_claims
    empty = ClaimScorer(bundle=scorer.bundle, history=history.iloc[:0])
    claims = history.sample(30, random_state=3)
    assert_same_features(empty, claims, history.iloc[:0])


def test_duplicate_ids_refused(scorer_and_claims: tuple[ClaimScorer, pd.DataFrame]) -> None:
    scorer, history = scorer_and_claims
    records = records_of(history.head(2))
    with pytest.raises(ValueError, match="unique"):
        scorer.featurize_records([records[0], records[0]])


def test_scores_equal_the_bundle(scorer_and_claims: tuple[ClaimScorer, pd.DataFrame]) -> None:
    scorer, history = scorer_and_claims
    claims = history.sample(300, random_state=1).reset_index(drop=True)
    claims["claim_id"] = "S-" + claims["claim_id"].astype(str)
    claims["claim_date"] = claims["claim_date"] + pd.Timedelta(days=2)
    expected = scorer.bundle.predict_proba(build_features(claims, history))
    got = scorer.score_records(records_of(claims), explain=True)
    np.testing.assert_allclose(got.fraud_score, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got.investigate, expected >= scorer.bundle.threshold)
    assert got.claim_ids == list(claims["claim_id"])
    pandas_path = scorer.score(claims)
    np.testing.assert_allclose(got.fraud_score, pandas_path["fraud_score"], rtol=1e-5, atol=1e-7)
    alone = scorer.score_records(records_of(claims.iloc[[7]]))
    assert alone.contributions is None
    assert alone.fraud_score[0] == pytest.approx(got.fraud_score[7], rel=1e-6)


def autograd_attribution(net: FraudNet, numeric: torch.Tensor, codes: torch.Tensor) -> np.ndarray:
    """Gradient x input on the MLP's inputs by torch autograd: numerics (with their encoding's
    bins summed in), then category columns."""
    n = len(numeric)
    inputs = {
        name: part.detach().requires_grad_(True)
        for name, part in net.mlp_inputs(numeric, codes).items()
    }
    net.mlp(torch.cat(list(inputs.values()), dim=1)).sum().backward()
    z, emb = inputs["standardized"], inputs["embeddings"]
    assert z.grad is not None and emb.grad is not None
    numeric_share = (z.grad * z).detach().numpy()
    if "piecewise" in inputs:  # the encoding's bins add to their feature
        ramp = inputs["piecewise"]
        assert ramp.grad is not None
        numeric_share += (
            (ramp.grad * ramp).detach().numpy().reshape(*numeric_share.shape, -1).sum(2)
        )
    expected = np.c_[
        numeric_share,
        (emb.grad * emb).detach().numpy().reshape(n, len(CATEGORICAL_FEATURES), -1).sum(2),
    ]
    return expected


def test_attribution_is_gradient_times_input(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    """The numpy attribution equals torch autograd's gradient x input on the MLP's inputs."""
    scorer, history = scorer_and_claims
    claims = history.sample(64, random_state=2).reset_index(drop=True)
    claims["claim_id"] = "G-" + claims["claim_id"].astype(str)
    scores = scorer.score_records(records_of(claims), explain=True)
    net = scorer.bundle.net
    numeric, codes = encode(build_features(claims, history), scorer.bundle.vocabulary)
    expected = autograd_attribution(net, numeric, codes)
    assert scores.contributions is not None
    np.testing.assert_allclose(scores.contributions, expected, rtol=1e-4, atol=1e-5)
    top = scores.top_features(0, 3)
    assert [t.feature for t in top] == [
        FEATURES[j] for j in np.argsort(-np.abs(expected[0]), kind="stable")[:3]
    ]
    assert all(isinstance(t.value, str) == (t.feature in CATEGORICAL_FEATURES) for t in top)


def random_inputs(
    seed: int,
    n: int,
    scale: float,
    nan: tuple[int, int],
    inf: tuple[int, int],
    neg_inf: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of network inputs: numerics ``N(0, scale)`` (float32) with NaN, +inf and -inf
    in every ``step``-th row of one column each (``(step, column)``), and category codes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, size=(n, len(NUMERIC))).astype(np.float32)
    for (step, col), value in zip((nan, inf, neg_inf), (np.nan, np.inf, -np.inf), strict=True):
        x[::step, col] = value
    return x, rng.integers(0, 4, size=(n, len(CATEGORICAL_FEATURES)))


def test_numpy_forward_matches_torch_with_nan_and_extremes(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    scorer, _ = scorer_and_claims
    fast = NumpyForward.from_bundle(scorer.bundle)
    x, codes = random_inputs(0, 500, 1e3, nan=(7, 3), inf=(11, 1), neg_inf=(13, 2))
    with torch.no_grad():
        expected = scorer.bundle.net(torch.from_numpy(x), torch.from_numpy(codes)).numpy()
    np.testing.assert_allclose(fast.logits(x, codes), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("bins", "members"), [(0, 1), (5, 1), (5, 3), (32, 2)])
def test_numpy_forward_of_any_encoding_matches_torch(bins: int, members: int) -> None:
    """Networks with and without the piecewise-linear encoding (older bundles have none), and
    an ensemble of seeds averaged into one network (training.ensemble)."""
    torch.manual_seed(bins)
    net = FraudNet(NetConfig(NUMERIC, [7, 5, 4], [16, 8], piecewise_bins=bins)).eval()
    rng = np.random.default_rng(bins)
    train = torch.from_numpy(rng.gamma(2.0, 20.0, size=(4000, len(NUMERIC))).astype(np.float32))
    net.standardize.fit(train)
    if net.piecewise is not None:
        net.piecewise.fit(train, (train[:, 0] > 40).numpy())
        assert net.piecewise.low.shape == (len(NUMERIC), bins)
    if members > 1:
        others = [FraudNet(net.config) for _ in range(members - 1)]
        for other in others:
            other.standardize.load_state_dict(net.standardize.state_dict())
            other.piecewise.load_state_dict(net.piecewise.state_dict())
        net = average_of([net, *others])
        assert net.config.hidden == [16 * members, 8 * members]
    fast = NumpyForward.from_net(net, tuple(CATEGORICAL_FEATURES))
    x = rng.gamma(2.0, 20.0, size=(300, len(NUMERIC))).astype(np.float32)
    x[::7, 0] = np.nan
    x[::11, 1] = np.inf
    x[::13, 0] = -np.inf
    codes = rng.integers(0, 4, size=(300, len(CATEGORICAL_FEATURES)))
    with torch.no_grad():
        expected = net(torch.from_numpy(x), torch.from_numpy(codes)).numpy()
    logits, contributions = fast.explain(x, codes)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    finite = np.isfinite(x).all(axis=1)  # autograd of an infinite input is not a number
    np.testing.assert_allclose(
        contributions[finite],
        autograd_attribution(net, torch.from_numpy(x[finite]), torch.from_numpy(codes[finite])),
        rtol=1e-4,
        atol=1e-5,
    )
    for i in range(0, 300, 17):
        logit, row = fast.explain_one(x[i].astype(float).tolist(), codes[i].tolist())
        assert logit == pytest.approx(expected[i], rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(row, contributions[i], rtol=1e-4, atol=1e-5)
    if bins:  # flat beyond the training range: far and farther out score the same
        far, farther = x[:20].copy(), x[:20].copy()
        high = float(net.piecewise.edges()[1][2])
        far[:, 2], farther[:, 2] = high + 1.0, high + 20.0
        # Inside the +-8 sd clip of Standardize: only the range clamp can make them equal.
        assert (farther[0, 2] - float(net.standardize.mean[2])) / float(net.standardize.std[2]) < 8
        np.testing.assert_array_equal(
            fast.logits(far, codes[:20]), fast.logits(farther, codes[:20])
        )
        with torch.no_grad():
            a = net(torch.from_numpy(far), torch.from_numpy(codes[:20]))
            b = net(torch.from_numpy(farther), torch.from_numpy(codes[:20]))
        assert torch.equal(a, b)
        assert fast.logit_one(far[0].astype(float).tolist(), codes[0].tolist()) == pytest.approx(
            fast.logit_one(farther[0].astype(float).tolist(), codes[0].tolist()), abs=0
        )


def test_numpy_forward_refuses_an_unknown_architecture(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    scorer, _ = scorer_and_claims
    bundle = copy.deepcopy(scorer.bundle)
    bundle.net.mlp = nn.Sequential(*bundle.net.mlp, nn.Sigmoid())
    with pytest.raises(BundleError, match="Sigmoid"):
        NumpyForward.from_bundle(bundle)


def test_dates_are_days(scorer_and_claims: tuple[ClaimScorer, pd.DataFrame]) -> None:
    """Datetimes count by their date, as the pipeline normalises them."""
    scorer, history = scorer_and_claims
    record = records_of(history.head(1))[0]
    record["claim_id"] = "DT-1"
    as_datetime = {
        **record,
        "claim_date": dt.datetime.combine(record["claim_date"], dt.time(23, 59)),
    }
    a, _, _ = scorer.featurize_records([record])
    b, _, _ = scorer.featurize_records([as_datetime])
    np.testing.assert_array_equal(a, b)


def test_one_claim_forward_matches_the_vectorised_one(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    """explain_one / logit_one (Python-float standardization, precomputed category rows)."""
    scorer, _ = scorer_and_claims
    fast = NumpyForward.from_bundle(scorer.bundle)
    x, codes = random_inputs(1, 200, 50, nan=(9, 4), inf=(10, 5), neg_inf=(12, 0))
    logits, contributions = fast.explain(x, codes)
    for i in range(len(x)):
        row, row_codes = x[i].astype(float).tolist(), codes[i].tolist()
        logit, contribution = fast.explain_one(row, row_codes)
        assert logit == pytest.approx(logits[i], rel=1e-5, abs=1e-5)
        assert fast.logit_one(row, row_codes) == pytest.approx(logit, rel=1e-6, abs=1e-6)
        np.testing.assert_allclose(contribution, contributions[i], rtol=1e-4, atol=1e-5)
    assert fast.probability(0.3) == pytest.approx(float(fast.probabilities(np.array([0.3]))[0]))


def test_score_one_equals_score_records(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    scorer, history = scorer_and_claims
    claims = history.sample(60, random_state=4).reset_index(drop=True)
    claims.loc[30:, "claim_id"] = "ONE-" + claims.loc[30:, "claim_id"].astype(str)  # half new
    for record in records_of(claims):
        one = scorer.score_one(record, top_k=4)
        many = scorer.score_records([record], explain=True)
        assert one.claim_id == record["claim_id"]
        assert one.fraud_score == pytest.approx(float(many.fraud_score[0]), rel=1e-9)
        assert one.investigate == bool(many.investigate[0])
        assert [t.feature for t in one.top_features] == [t.feature for t in many.top_features(0, 4)]
        assert scorer.score_one(record).top_features == []


def test_declared_features_are_computed_alike_online(
    scorer_and_claims: tuple[ClaimScorer, pd.DataFrame],
) -> None:
    """Features the model does not use are computed by the online path from their declaration
    alone, equal to the batch path's: one entry in a declaration is all a new feature needs."""
    _, history = scorer_and_claims
    plan = Plan.of(EXTENDED)
    index = HistoryIndex.build(history, plan)
    claims = history.sample(200, random_state=8).reset_index(drop=True)
    claims["claim_date"] = claims["claim_date"] + pd.Timedelta(days=3)
    claims.loc[::2, "claim_id"] = "EXT-" + claims.loc[::2, "claim_id"].astype(str)  # half new
    local = claim_values(claims, tuple(f for f in EXTENDED if isinstance(f, ClaimValue)))
    windowed = history_features(
        claims, history, tuple(f for f in EXTENDED if isinstance(f, WindowFeature))
    )
    expected = pd.concat([local, windowed], axis=1)[[f.name for f in EXTENDED]]
    records = records_of(claims)
    np.testing.assert_allclose(index.features(records), expected, rtol=1e-9, atol=1e-9)
    for i in range(0, 200, 25):  # alone (new claims in one compiled call, stored ones not)
        new = i % 2 == 0
        alone = index.one_claim(records[i]) if new else index.features(records[i : i + 1])[0]
        want = build_features(claims.iloc[[i]], history)[NUMERIC].to_numpy(float)[0]
        np.testing.assert_allclose(alone[: len(NUMERIC)], want, rtol=1e-9, atol=1e-9)


def test_nonzero_spans_cover_every_nonzero_weight() -> None:
    """The one-claim kernel visits each row only over its span: a span that missed a nonzero
    weight would drop it from the sum (an ensemble's block-diagonal layers, a zero row)."""
    weight = np.array(
        [[0.0, 2.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]],
        np.float32,
    )
    np.testing.assert_array_equal(_nonzero_spans(weight), [[1, 4], [0, 0], [0, 1], [3, 4]])
    blocks = np.zeros((6, 4), np.float32)
    blocks[:3, :2], blocks[3:, 2:] = 1.0, 2.0
    np.testing.assert_array_equal(_nonzero_spans(blocks), [[0, 2]] * 3 + [[2, 4]] * 3)
    np.testing.assert_array_equal(_nonzero_spans(blocks.T), [[0, 3]] * 2 + [[3, 6]] * 2)


def test_rows_are_grouped_in_their_order_and_null_keys_first() -> None:
    codes = np.random.default_rng(3).integers(-1, 50, 5_000)
    assert np.array_equal(kernels.group_order(codes, 50), np.argsort(codes, kind="stable"))
    assert kernels.group_order(np.zeros(0, np.int64), 0).shape == (0,)
