"""The score distribution collector: what Prometheus scrapes equals a histogram of the scores."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.core.metrics import SCORE_BUCKETS, Metrics, ScoreDistribution


def _scraped(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.startswith(("fraud_api_scores", "fraud_api_decisions")):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_scraped_histogram_and_decisions_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ScoreDistribution, "FOLD_EVERY", 64)  # folds while claims arrive too
    rng = np.random.default_rng(7)
    singles = rng.beta(0.5, 8.0, 1000)
    singles[:5] = [0.0, 0.005, 0.01, 1.0, 0.3]  # on the bounds: counted in their own bucket
    batch = rng.beta(0.5, 8.0, 777)
    metrics = Metrics()
    for score in singles.tolist():
        metrics.observe_score("v1", score, score >= 0.1)
    metrics.observe_scores("v1", batch, batch >= 0.1)
    metrics.observe_score("v2", 0.5, True)
    every = np.concatenate([singles, batch])
    got = _scraped(metrics)
    for bound in SCORE_BUCKETS:
        key = ("fraud_api_scores_bucket", (("le", repr(bound)), ("model_version", "v1")))
        assert got[key] == np.count_nonzero(every <= bound), bound
    assert got[("fraud_api_scores_count", (("model_version", "v1"),))] == len(every)
    assert got[("fraud_api_scores_sum", (("model_version", "v1"),))] == pytest.approx(every.sum())
    flagged = int(np.count_nonzero(every >= 0.1))
    decisions = "fraud_api_decisions_total"
    assert got[(decisions, (("decision", "investigate"), ("model_version", "v1")))] == flagged
    assert got[(decisions, (("decision", "fast_track"), ("model_version", "v1")))] == (
        len(every) - flagged
    )
    assert got[("fraud_api_scores_count", (("model_version", "v2"),))] == 1
    # A second scrape counts nothing twice.
    assert _scraped(metrics) == got


def test_no_score_lost_across_threads() -> None:
    metrics = Metrics()

    def score_many() -> None:
        for _ in range(5000):
            metrics.observe_score("v", 0.2, False)

    threads = [threading.Thread(target=score_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    scrapes = [_scraped(metrics) for _ in range(20)]  # scraping while they write
    for thread in threads:
        thread.join()
    counts = [s.get(("fraud_api_scores_count", (("model_version", "v"),)), 0) for s in scrapes]
    assert counts == sorted(counts)
    assert _scraped(metrics)[("fraud_api_scores_count", (("model_version", "v"),))] == 20000
