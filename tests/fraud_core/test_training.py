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


def test_the_moving_average_of_the_weights_is_what_is_validated_and_kept(
    champion_lakehouse,
) -> None:
    """With ``ema_decay``, each epoch judges the moving average of the weights, and the best
    epoch's average is the network returned: its validation AP is the one recorded."""
    import torch

    from fraud_core.model.train import TrainConfig, encode, fit, predict_logits

    split = time_split(load_labelled_features(Lakehouse(str(champion_lakehouse))), 0.2, 0.2)
    y_val = split.val["is_fraud"].to_numpy(bool)
    plain_config = TrainConfig(max_epochs=3, batch_size=256, patience=3, piecewise_bins=8)
    plain = fit(split.train, split.val, plain_config, threads=1)
    averaged = fit(
        split.train, split.val, TrainConfig(**{**plain_config.as_dict(), "ema_decay": 0.9})
    )
    v_num, v_cat = encode(split.val, averaged.vocabulary)
    kept = average_precision(y_val, predict_logits(averaged.net, v_num, v_cat))
    assert kept == averaged.best_val_ap
    weights = list(averaged.net.parameters())
    others = list(plain.net.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(weights, others, strict=True))
    # the preprocessing is fitted on the rows, never averaged (its spare bins hold inf)
    assert torch.equal(averaged.net.piecewise.width, plain.net.piecewise.width)
    assert torch.isinf(averaged.net.piecewise.width).any()
