"""Training data, time-based split, evaluation and the LightGBM baseline (used by the flow)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from fraud_core import metrics
from fraud_core.claim_versions import latest_versions
from fraud_core.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import FEATURES
from fraud_core.schema import COLUMNS_BY_NAME, LABEL_COLUMN, ORACLE_COLUMN


@dataclass(frozen=True)
class Split:
    """Rows for fitting, early stopping/calibration, and the held-out test (in time order)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def describe(self) -> dict[str, Any]:
        def part(frame: pd.DataFrame) -> dict[str, Any]:
            return {
                "rows": len(frame),
                "frauds": int(frame[LABEL_COLUMN].sum()),
                "from": str(frame["claim_date"].min().date()),
                "to": str(frame["claim_date"].max().date()),
            }

        return {"train": part(self.train), "val": part(self.val), "test": part(self.test)}


def load_labelled_features(lakehouse: Lakehouse, batches: list[str] | None = None) -> pd.DataFrame:
    """Feature rows with a known investigation outcome, oldest first; each claim once, in
    its latest version (fraud_core.claim_versions)."""
    frame = latest_versions(lakehouse, lakehouse.read_batches(FEATURES, batches))
    frame = frame[frame[LABEL_COLUMN].notna()]
    if frame.empty:
        raise ValueError("no labelled claims in the feature batches: nothing to train on")
    frame = frame.astype({LABEL_COLUMN: bool})
    return frame.sort_values(["claim_date", "claim_id"], kind="mergesort").reset_index(drop=True)


def time_split(frame: pd.DataFrame, val_fraction: float, test_fraction: float) -> Split:
    """Split by claim date: the oldest claims train, the next validate, the newest test.

    Cuts fall on day boundaries so that no day is in two parts (features look back in time,
    and a model must be judged on claims later than any it learned from).
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum below 1")
    dates = frame["claim_date"].to_numpy()
    n = len(frame)
    val_start = dates[int(n * (1 - val_fraction - test_fraction))]
    test_start = dates[int(n * (1 - test_fraction))]
    train = frame[dates < val_start]
    val = frame[(dates >= val_start) & (dates < test_start)]
    test = frame[dates >= test_start]
    for name, part in (("train", train), ("val", val), ("test", test)):
        if part.empty or not part[LABEL_COLUMN].any():
            raise ValueError(
                f"the {name} split has no fraud labels ({len(part)} rows): "
                "land more claims or change the split fractions"
            )
    return Split(
        train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True)
    )


def lightgbm_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(NUMERIC_FEATURES)].astype("float64")
    for col in CATEGORICAL_FEATURES:
        out[col] = pd.Categorical(
            frame[col].astype(str), categories=list(COLUMNS_BY_NAME[col].allowed or ())
        )
    return out


@dataclass(frozen=True)
class Baseline:
    """The tuned LightGBM baseline: its held-out scores and how it was chosen."""

    test_scores: np.ndarray
    params: dict[str, Any]  # the chosen grid point
    val_ap: float
    rounds: int  # boosting rounds kept by early stopping
    candidates: list[dict[str, Any]]  # every grid point with its validation AP

    def describe(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "val_ap": self.val_ap,
            "rounds": self.rounds,
            "candidates": self.candidates,
        }


def lightgbm_baseline(
    split: Split,
    params: dict[str, Any],
    search: dict[str, list[Any]] | None = None,
    threads: int = 1,
) -> Baseline:
    """A tuned LightGBM on the same features and split as the network: every combination of
    ``search``'s values over the fixed ``params``, each with early stopping on validation AP;
    the best by validation AP scores the held-out claims (the network is chosen the same way).
    """
    import lightgbm as lgb

    y_train = split.train[LABEL_COLUMN].to_numpy(dtype=int)
    y_val = split.val[LABEL_COLUMN].to_numpy(dtype=int)
    train_set = lgb.Dataset(lightgbm_frame(split.train), y_train, free_raw_data=False)
    val_frame = lightgbm_frame(split.val)
    val_set = lgb.Dataset(val_frame, y_val, reference=train_set)
    fixed = {"objective": "binary", "metric": "average_precision", "verbose": -1, **params}
    fixed["num_threads"], fixed["seed"] = threads, fixed.get("seed", 0)
    rounds = int(fixed.pop("num_boost_round", 1000))
    patience = int(fixed.pop("early_stopping_rounds", 50))
    names = list(search or {})
    grid = [dict(zip(names, combo, strict=True)) for combo in product(*(search or {}).values())]
    best: tuple[float, dict[str, Any], Any] | None = None
    candidates = []
    for point in grid:
        booster = lgb.train(
            {**fixed, **point},
            train_set,
            rounds,
            valid_sets=[val_set],
            callbacks=[lgb.early_stopping(patience, verbose=False)],
        )
        val_ap = metrics.average_precision(
            y_val, np.asarray(booster.predict(val_frame, num_iteration=booster.best_iteration))
        )
        candidates.append({**point, "val_ap": val_ap, "rounds": booster.best_iteration})
        if best is None or val_ap > best[0]:
            best = (val_ap, point, booster)
    assert best is not None  # product() of no lists is one empty point
    val_ap, point, booster = best
    scores = booster.predict(lightgbm_frame(split.test), num_iteration=booster.best_iteration)
    return Baseline(np.asarray(scores), point, val_ap, booster.best_iteration, candidates)


@dataclass(frozen=True)
class Teacher:
    """Out-of-fold LightGBM probabilities of the training rows, the soft targets the network
    is distilled towards (``training.distill_weight``; fraud_core.model.train.fit)."""

    claim_id: np.ndarray
    probability: np.ndarray
    folds: int

    def for_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The teacher's probability of each of ``frame``'s claims, in ``frame``'s order;
        raises when a claim was not scored (the teacher was fitted on other rows)."""
        ids = frame["claim_id"].to_numpy()
        if len(ids) == len(self.claim_id) and (ids == self.claim_id).all():
            return self.probability
        position = pd.Series(np.arange(len(self.claim_id)), index=self.claim_id)
        found = position.reindex(ids)
        if found.isna().any():
            raise ValueError(
                f"{int(found.isna().sum())} training claims have no teacher probability: "
                "the teacher was fitted on other rows"
            )
        return self.probability[found.to_numpy(dtype=np.int64)]


def out_of_fold_teacher(
    train: pd.DataFrame,
    params: dict[str, Any],
    point: dict[str, Any],
    rounds: int,
    folds: int = 4,
    threads: int = 1,
    seed: int = 0,
) -> Teacher:
    """LightGBM probabilities of the training rows, each from a model that never saw it.

    The rows are dealt at random into ``folds`` folds; each fold is scored by a LightGBM
    fitted on the other folds with the tuned baseline's parameters (``params`` plus its chosen
    ``point``) for its early-stopped ``rounds``. Never the validation or held-out rows: an
    in-sample teacher would only echo the labels, and validation stays the true labels'.
    """
    import lightgbm as lgb

    if folds < 2:
        raise ValueError(f"an out-of-fold teacher needs at least 2 folds, got {folds}")
    x = lightgbm_frame(train)
    y = train[LABEL_COLUMN].to_numpy(dtype=int)
    search_only = ("num_boost_round", "early_stopping_rounds")
    fixed = {k: v for k, v in params.items() if k not in search_only}
    settings = {"objective": "binary", "verbose": -1, **fixed, **point}
    settings["num_threads"], settings["seed"] = threads, seed
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    probability = np.full(len(y), np.nan)
    for k in range(folds):
        fitted, scored = fold != k, fold == k
        booster = lgb.train(settings, lgb.Dataset(x[fitted], y[fitted]), max(1, rounds))
        probability[scored] = booster.predict(x[scored])
    return Teacher(train["claim_id"].to_numpy(), probability, folds)


def compare_on_test(test: pd.DataFrame, scores: dict[str, np.ndarray], k: int) -> dict[str, Any]:
    """Headline metrics for each named score on the same held-out claims.

    When the oracle column is present (simulated data) the Bayes-optimal score is added as
    ``bayes_optimal``: the ranking by the true fraud probability, with its many ties broken at
    random (averaged over draws; see :func:`fraud_core.metrics.break_ties`).
    """
    y = test[LABEL_COLUMN].to_numpy(dtype=bool)
    report = {name: metrics.ranking_report(y, s, k).as_dict() for name, s in scores.items()}
    oracle = oracle_scores(test)
    if oracle is not None:
        report["bayes_optimal"] = metrics.ranking_report_random_ties(y, oracle, k).as_dict()
    return report


def oracle_scores(frame: pd.DataFrame) -> np.ndarray | None:
    """The true fraud probability of simulated claims, or None for real data."""
    if ORACLE_COLUMN in frame.columns and frame[ORACLE_COLUMN].notna().all():
        return frame[ORACLE_COLUMN].to_numpy(dtype=np.float64)
    return None


def holdout_of(lakehouse: Lakehouse, lineage: dict[str, Any]) -> pd.DataFrame:
    """The labelled held-out claims a bundle was tested on, rebuilt from its lineage."""
    batches = lineage.get("training_batches")
    test = lineage.get("split", {}).get("test")
    if not batches or not test:
        raise ValueError("the bundle's lineage names no training batches or test period")
    frame = load_labelled_features(lakehouse, list(batches))
    dates = frame["claim_date"]
    in_test = (dates >= pd.Timestamp(test["from"])) & (dates <= pd.Timestamp(test["to"]))
    return frame[in_test].reset_index(drop=True)
