"""The tuned LightGBM baseline: a real search, chosen on validation, never on the test."""

import numpy as np

from fraud_core.lakehouse import Lakehouse
from fraud_core.metrics import average_precision
from fraud_core.training import lightgbm_baseline, load_labelled_features, time_split


def test_the_baseline_is_the_best_grid_point_by_validation_ap(champion_lakehouse) -> None:
    split = time_split(load_labelled_features(Lakehouse(str(champion_lakehouse))), 0.2, 0.2)
    params = {"num_boost_round": 40, "early_stopping_rounds": 10, "min_data_in_leaf": 20}
    search = {"num_leaves": [3, 31], "learning_rate": [0.02, 0.2]}
    tuned = lightgbm_baseline(split, params, search)
    assert [(c["num_leaves"], c["learning_rate"]) for c in tuned.candidates] == [
        (3, 0.02),
        (3, 0.2),
        (31, 0.02),
        (31, 0.2),
    ]
    assert len({c["val_ap"] for c in tuned.candidates}) > 1  # the points differ
    assert tuned.val_ap == max(c["val_ap"] for c in tuned.candidates)
    best = next(c for c in tuned.candidates if c["val_ap"] == tuned.val_ap)
    assert tuned.params == {k: best[k] for k in ("num_leaves", "learning_rate")}
    assert 1 <= tuned.rounds <= 40
    assert tuned.test_scores.shape == (len(split.test),)
    y_test = split.test["is_fraud"].to_numpy(bool)
    assert average_precision(y_test, tuned.test_scores) > y_test.mean() * 3  # it learned
    # No search: the fixed parameters, one candidate.
    single = lightgbm_baseline(split, {**params, "num_leaves": 7})
    assert len(single.candidates) == 1 and single.params == {}
    assert np.isfinite(single.test_scores).all()
