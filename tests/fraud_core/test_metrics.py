"""Metrics agree with scikit-learn and refuse to invent numbers."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_core import metrics


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.random(5_000) < 0.03
    s = rng.normal(size=5_000) + 1.5 * y
    s[:200] = np.round(s[:200], 1)  # ties
    return y, s


def test_matches_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    assert metrics.average_precision(y, s) == pytest.approx(
        average_precision_score(y, s), abs=1e-12
    )
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_precision_at_k_and_recall_at_fpr() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert metrics.precision_at_k(y, s, 2) == 0.5
    assert metrics.precision_at_k(y, s, 3) == pytest.approx(2 / 3)
    assert metrics.recall_at_fpr(y, s, 0.0) == 0.5  # only the top claim before any false alarm
    assert metrics.recall_at_fpr(y, s, 0.125) == 1.0


def test_undefined_metrics_raise() -> None:
    with pytest.raises(ValueError, match="without a single fraud"):
        metrics.average_precision(np.zeros(5, bool), np.arange(5.0))
    with pytest.raises(ValueError, match="both fraud and non-fraud"):
        metrics.roc_auc(np.ones(5, bool), np.arange(5.0))
    with pytest.raises(ValueError, match="NaN"):
        metrics.average_precision(np.array([1, 0], bool), np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.roc_auc(np.array([1, 0], bool), np.array([1.0]))


def test_cost_threshold_weighs_amounts_against_investigations() -> None:
    y = np.array([1, 1, 0, 0, 0], dtype=bool)
    s = np.array([0.9, 0.6, 0.5, 0.2, 0.1])
    amounts = np.array([10_000.0, 5_000.0, 100.0, 100.0, 100.0])
    assert metrics.cost_optimal_threshold(y, s, amounts, investigation_cost=150.0) == 0.6
    # When investigations cost more than any fraud, alert nobody.
    t = metrics.cost_optimal_threshold(y, s, amounts, investigation_cost=50_000.0)
    assert t > s.max()


def test_break_ties_keeps_the_order_and_randomises_only_ties() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.5, 0.5, 0.9])
    ranked = metrics.break_ties(scores, np.random.default_rng(1))
    assert len(np.unique(ranked)) == scores.size
    for i in range(scores.size):
        for j in range(scores.size):
            if scores[i] > scores[j]:
                assert ranked[i] > ranked[j]
    orders = {
        tuple(np.argsort(metrics.break_ties(scores, np.random.default_rng(s)))) for s in range(30)
    }
    assert len(orders) > 1


def test_random_ties_report_is_the_expected_report() -> None:
    # One tied pair, one fraud: step-wise AP takes the worst order (0.5); the two orders give
    # AP 1.0 and 0.5, so the expectation is 0.75.
    y, s = np.array([False, True]), np.array([0.3, 0.3])
    assert metrics.average_precision(y, s) == pytest.approx(0.5)
    report = metrics.ranking_report_random_ties(y, s, k=1, draws=4000)
    assert report.average_precision == pytest.approx(0.75, abs=0.03)
    # Without ties it is the plain report.
    rng = np.random.default_rng(3)
    y2, s2 = rng.random(500) < 0.1, rng.random(500)
    tied = metrics.ranking_report_random_ties(y2, s2, draws=3).as_dict()
    assert tied == pytest.approx(metrics.ranking_report(y2, s2).as_dict())


def test_platt_scaling_agrees_with_scikit_learn() -> None:
    """fit_platt is scikit-learn's sigmoid calibration (Platt's smoothed targets), which
    scikit-learn keeps private; sklearn's parameters are (-a, -b)."""
    from sklearn.calibration import _sigmoid_calibration

    from fraud_core.model.calibration import fit_platt

    rng = np.random.default_rng(0)
    logits = rng.normal(size=5_000) * 2
    labels = rng.random(5_000) < 1 / (1 + np.exp(-(1.7 * logits - 3)))
    a, b = fit_platt(logits, labels)
    sk_a, sk_b = _sigmoid_calibration(logits, labels)
    assert (a, b) == pytest.approx((-sk_a, -sk_b), abs=1e-6)


def test_pr_curve_runs_from_the_highest_score() -> None:
    y = np.array([1, 0, 1, 0], dtype=bool)
    precision, recall = metrics.pr_curve(y, np.array([0.9, 0.8, 0.7, 0.1]))
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]


def test_ap_by_scenario_judges_each_scenario_against_plain_claims() -> None:
    from fraud_core.metrics import ap_by_scenario

    y = np.array([1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
    scenario = np.array(["a", "a", "b", "", "", "a+b", "b", ""], dtype=object)
    # Scores rank a's frauds first and b's fraud below plain claims.
    scores = np.array([0.9, 0.1, 0.05, 0.2, 0.3, 0.8, 0.01, 0.25])
    out = ap_by_scenario(y, scores, scenario)
    assert set(out) == {"a", "b"}
    assert out["a"] == 1.0  # rows a, a, "", "", a+b, "": both frauds on top
    rows = np.array([False, False, True, True, True, True, True, True])
    assert out["b"] == pytest.approx(average_precision_score(y[rows], scores[rows]))
    assert out["b"] < 1.0
    with pytest.raises(ValueError, match="align"):
        ap_by_scenario(y, scores, scenario[:3])
