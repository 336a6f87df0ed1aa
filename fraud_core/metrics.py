"""Ranking and decision metrics for fraud scores.

Fraud is rare (1-3% of claims), so accuracy says nothing. Average precision (the area under the
precision-recall curve) is the headline; ROC-AUC, precision among the top-k alerts and recall
at a fixed false-positive rate describe how investigators would experience the model.

The curves and areas are scikit-learn's; this module adds what it lacks: refusing undefined
metrics with a message instead of a warning and a made-up number, precision among the top k,
the cost-optimal threshold, and ranking with random order among tied scores (for the
Bayes-optimal probability of simulated claims, which has few distinct values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# sklearn (~2 s of imports) is imported by the functions that use it: every Dagster process
# loads this module (through the code location), and most compute no metric.


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise ValueError("no labelled claims to evaluate")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    return y, s


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (step-wise area under the PR curve)."""
    from sklearn import metrics as skm

    y, s = _check(y_true, scores)
    if not y.any():
        raise ValueError("average precision is undefined without a single fraud label")
    return float(skm.average_precision_score(y, s))


def _both_labels(y: np.ndarray, metric: str) -> None:
    if y.all() or not y.any():
        raise ValueError(f"{metric} needs both fraud and non-fraud labels")


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half)."""
    from sklearn import metrics as skm

    y, s = _check(y_true, scores)
    _both_labels(y, "ROC-AUC")
    return float(skm.roc_auc_score(y, s))


def precision_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of fraud among the ``k`` highest-scored claims (an investigation team's capacity)."""
    y, s = _check(y_true, scores)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    k = min(k, y.size)
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].mean())


def recall_at_fpr(y_true: np.ndarray, scores: np.ndarray, max_fpr: float = 0.01) -> float:
    """Highest recall reachable while flagging at most ``max_fpr`` of honest claims."""
    from sklearn import metrics as skm

    y, s = _check(y_true, scores)
    _both_labels(y, "recall at FPR")
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def pr_curve(
    y_true: np.ndarray, scores: np.ndarray, max_points: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score, highest score first, thinned to
    ``max_points`` for plotting."""
    from sklearn import metrics as skm

    y, s = _check(y_true, scores)
    if not y.any():
        raise ValueError("a precision-recall curve is undefined without a single fraud label")
    precision, recall, _ = skm.precision_recall_curve(y, s, drop_intermediate=False)
    # scikit-learn lists the thresholds ascending and ends with the (recall 0, precision 1)
    # point that no threshold reaches: highest threshold first, without that point.
    precision, recall = precision[-2::-1], recall[-2::-1]
    if precision.size > max_points:
        keep = np.unique(np.linspace(0, precision.size - 1, max_points).astype(int))
        precision, recall = precision[keep], recall[keep]
    return precision, recall


def cost_optimal_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    investigation_cost: float = 150.0,
) -> float:
    """Score threshold that minimises expected cost on labelled claims.

    A missed fraud costs its claimed amount; every alert costs one investigation. Claims with a
    score at or above the threshold are investigated.
    """
    y, s = _check(y_true, scores)
    a = np.asarray(amounts, dtype=np.float64).ravel()
    if a.shape != y.shape:
        raise ValueError("amounts must align with labels")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted, a_sorted = s[order], y[order], a[order]
    caught = np.cumsum(np.where(y_sorted, a_sorted, 0.0))
    alerts = np.arange(1, y.size + 1)
    missed_total = a_sorted[y_sorted].sum()
    cost = (missed_total - caught) + investigation_cost * alerts
    # Only cut between distinct scores; cost of alerting nobody for comparison.
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    best = last_of_run[np.argmin(cost[last_of_run])]
    if cost[best] >= missed_total:
        return float(np.nextafter(s_sorted[0], np.inf))  # alerting nobody is cheapest
    return float(s_sorted[best])


@dataclass(frozen=True)
class RankingReport:
    """The headline metrics of one set of scores on one set of labelled claims."""

    average_precision: float
    roc_auc: float
    precision_at_k: float
    recall_at_1pct_fpr: float
    k: int
    n: int
    positives: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def break_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same ranking with tied scores put in random order: unique scores (rank positions).

    Step-wise average precision gives every claim of a tied group the precision at the group's
    end, which is the worst order within the group. A score with few distinct values (the
    simulator's true probability has a few dozen) is understated by it; with ties broken at
    random it is judged by a ranking it could actually produce.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.lexsort((rng.random(s.size), -s))  # descending score, random among ties
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.arange(s.size, 0, -1, dtype=np.float64)
    return ranks


def ranking_report(y_true: np.ndarray, scores: np.ndarray, k: int | None = None) -> RankingReport:
    """All headline metrics at once. ``k`` defaults to 1% of the claims (at least 10)."""
    y, s = _check(y_true, scores)
    k = k if k is not None else max(10, y.size // 100)
    return RankingReport(
        average_precision=average_precision(y, s),
        roc_auc=roc_auc(y, s),
        precision_at_k=precision_at_k(y, s, k),
        recall_at_1pct_fpr=recall_at_fpr(y, s, 0.01),
        k=min(k, y.size),
        n=int(y.size),
        positives=int(y.sum()),
    )


def ranking_report_random_ties(
    y_true: np.ndarray, scores: np.ndarray, k: int | None = None, draws: int = 16, seed: int = 0
) -> RankingReport:
    """:func:`ranking_report` averaged over ``draws`` random orders of tied scores.

    For a score with many ties (the Bayes-optimal probability of simulated claims) this is the
    expected report of ranking by it; for a score without ties it equals :func:`ranking_report`.
    """
    y, s = _check(y_true, scores)
    rng = np.random.default_rng(seed)
    reports = [ranking_report(y, break_ties(s, rng), k) for _ in range(draws)]
    first = reports[0]
    return RankingReport(
        average_precision=float(np.mean([r.average_precision for r in reports])),
        roc_auc=float(np.mean([r.roc_auc for r in reports])),
        precision_at_k=float(np.mean([r.precision_at_k for r in reports])),
        recall_at_1pct_fpr=float(np.mean([r.recall_at_1pct_fpr for r in reports])),
        k=first.k,
        n=first.n,
        positives=first.positives,
    )


def ap_by_scenario(
    y_true: np.ndarray, scores: np.ndarray, scenarios: np.ndarray
) -> dict[str, float]:
    """Average precision per fraud scenario of simulated claims: for each scenario, the claims
    that show it (its frauds and its innocent look-alikes) and those that show none, so each
    figure says how well the scores pick that scenario's fraud out of ordinary claims.

    Args:
        y_true: fraud labels.
        scores: the scores to judge.
        scenarios: per claim, the scenario names it shows, ``+``-joined (``""`` for none), as
            :func:`fraud_core.simulate.simulate_claims` writes them.

    Returns:
        Scenario name to AP, for scenarios with at least one fraud among their claims.
    """
    y, s = _check(y_true, scores)
    shown = np.asarray(scenarios, dtype=object).ravel()
    if shown.shape != y.shape:
        raise ValueError("scenarios must align with labels")
    parts = [set(str(v).split("+")) - {""} for v in shown]
    plain = np.array([not p for p in parts])
    out = {}
    for name in sorted(set().union(*parts)):
        rows = plain | np.array([name in p for p in parts])
        if y[rows].any():
            out[name] = average_precision(y[rows], s[rows])
    return out
