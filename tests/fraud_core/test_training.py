"""Training: the tuned LightGBM baseline (a real search, chosen on validation, never on the
test), its out-of-fold teacher, and the network's training loop (moving average of the
weights, rate schedules, distillation)."""

import numpy as np
import pytest

from fraud_core.lakehouse import Lakehouse
from fraud_core.metrics import average_precision
from fraud_core.training import (
    lightgbm_baseline,
    load_labelled_features,
    out_of_fold_teacher,
    time_split,
)


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


def test_the_teacher_scores_each_training_row_out_of_fold(champion_lakehouse) -> None:
    """A LightGBM free to memorise its rows ranks them almost perfectly in sample; the
    teacher's probability of a row comes from a model that never saw it, so it does not."""
    import lightgbm as lgb

    from fraud_core.training import lightgbm_frame

    split = time_split(load_labelled_features(Lakehouse(str(champion_lakehouse))), 0.2, 0.2)
    y = split.train["is_fraud"].to_numpy(bool)
    params = {"num_boost_round": 1000, "early_stopping_rounds": 20, "min_data_in_leaf": 1}
    point = {"num_leaves": 63, "learning_rate": 0.3}
    teacher = out_of_fold_teacher(split.train, params, point, rounds=150)
    assert teacher.folds == 4 and teacher.probability.shape == (len(split.train),)
    assert ((teacher.probability >= 0) & (teacher.probability <= 1)).all()
    in_sample = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 1, **point},
        lgb.Dataset(lightgbm_frame(split.train), y.astype(int)),
        150,
    ).predict(lightgbm_frame(split.train))
    assert average_precision(y, in_sample) > 0.99  # memorised
    assert y.mean() * 2 < average_precision(y, teacher.probability) < 0.8  # learned, not echoed
    again = out_of_fold_teacher(split.train, params, point, rounds=150)
    assert np.array_equal(again.probability, teacher.probability)  # deterministic per seed
    # Looked up by claim: any order of the training rows, never another split's rows.
    shuffled = split.train.sample(frac=1.0, random_state=0)
    assert np.array_equal(
        teacher.for_rows(shuffled), teacher.probability[shuffled.index.to_numpy()]
    )
    with pytest.raises(ValueError, match="no teacher probability"):
        teacher.for_rows(split.val)


def test_distillation_trains_towards_the_teacher(champion_lakehouse) -> None:
    """The target is ``(1 - w) * label + w * teacher``: a teacher equal to the labels trains
    exactly the plain network, one that inverts them teaches it to rank frauds last."""
    import torch

    from fraud_core.model.train import TrainConfig, fit

    split = time_split(load_labelled_features(Lakehouse(str(champion_lakehouse))), 0.2, 0.2)
    labels = split.train["is_fraud"].to_numpy(np.float64)
    base = TrainConfig(max_epochs=2, patience=2, batch_size=256, piecewise_bins=8)
    plain = fit(split.train, split.val, base, threads=1)

    def distilled(weight: float, teacher: np.ndarray):  # type: ignore[no-untyped-def]
        config = TrainConfig(**{**base.as_dict(), "distill_weight": weight})
        return fit(split.train, split.val, config, threads=1, teacher=teacher)

    for weight in (0.5, 1.0):
        echo = distilled(weight, labels)
        assert all(
            torch.equal(a, b)
            for a, b in zip(echo.net.parameters(), plain.net.parameters(), strict=True)
        )
    inverted = distilled(1.0, 1.0 - labels)
    assert inverted.best_val_ap < plain.best_val_ap / 2
    with pytest.raises(ValueError, match="one teacher probability per training row"):
        fit(split.train, split.val, TrainConfig(**{**base.as_dict(), "distill_weight": 0.8}))
    with pytest.raises(ValueError, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
