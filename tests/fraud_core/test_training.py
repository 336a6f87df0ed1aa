"""Training: the tuned LightGBM baseline (a real search, chosen on validation, never on the
test), and the network's training loop (moving average of the weights, rate schedules)."""

import numpy as np
import pytest

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


def test_cosine_decays_from_the_rate_to_zero() -> None:
    from fraud_core.model.train import cosine_lr

    assert cosine_lr(0.004, 0.0) == 0.004
    assert cosine_lr(0.004, 0.5) == pytest.approx(0.002)
    assert cosine_lr(0.004, 1.0) == pytest.approx(0.0)
    assert cosine_lr(0.004, 1.5) == pytest.approx(0.0)  # held at the end
    assert cosine_lr(0.004, 0.25) > cosine_lr(0.004, 0.75)


def test_a_bad_schedule_is_refused() -> None:
    from fraud_core.model.train import TrainConfig

    with pytest.raises(ValueError, match="is not one of"):
        TrainConfig(lr_schedule="step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr_factor"):
        TrainConfig(lr_schedule="plateau", lr_factor=1.0)


def test_the_learning_rate_follows_its_schedule(champion_lakehouse) -> None:
    """The rate the optimizer used in each epoch's last step (``history``'s ``lr``): constant,
    a cosine reaching zero at ``max_epochs``, or cut by ``lr_factor`` after each epoch that is
    not a new best; and the schedule changes what is learned."""
    import torch

    from fraud_core.model.train import TrainConfig, cosine_lr, fit

    split = time_split(load_labelled_features(Lakehouse(str(champion_lakehouse))), 0.2, 0.2)
    base = TrainConfig(max_epochs=6, patience=6, batch_size=256, lr=0.02, piecewise_bins=8)

    constant = fit(split.train, split.val, base, threads=1)
    assert [h["lr"] for h in constant.history] == [0.02] * 6

    cosine = fit(split.train, split.val, TrainConfig(**{**base.as_dict(), "lr_schedule": "cosine"}))
    steps = -(-len(split.train) // 256)
    expected = [cosine_lr(0.02, (e * steps - 1) / (6 * steps)) for e in range(1, 7)]
    assert [h["lr"] for h in cosine.history] == pytest.approx(expected)
    assert cosine.history[-1]["lr"] < 0.02 / 1000
    assert not all(
        torch.equal(a, b)
        for a, b in zip(cosine.net.parameters(), constant.net.parameters(), strict=True)
    )

    plateau = fit(
        split.train,
        split.val,
        TrainConfig(**{**base.as_dict(), "lr_schedule": "plateau", "lr_factor": 0.5}),
    )
    rates, best, cuts = [h["lr"] for h in plateau.history], -1.0, 0
    for epoch, entry in enumerate(plateau.history[:-1]):
        improved = entry["val_ap"] > best
        best = max(best, entry["val_ap"])
        cuts += not improved
        assert rates[epoch + 1] == pytest.approx(rates[epoch] * (1.0 if improved else 0.5))
    assert rates[0] == 0.02 and cuts >= 1  # a plateau was met, and the rate was cut
