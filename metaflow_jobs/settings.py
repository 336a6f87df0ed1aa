"""The training configuration file, validated by pydantic (parsed by Metaflow's ``Config``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from itertools import product
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # torch is imported by the steps that train, not by every step
    from fraud_core.model.train import TrainConfig

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "config", "training.json")

# Fault injection, for proving retries and resume (read when a step runs, never at import):
# FRAUD_FLOW_FAIL_FIRST_ATTEMPT=train  -> each train branch fails once, then its retry succeeds
# FRAUD_FLOW_FAIL=register             -> the register step always fails (then `resume`)
# On Step Functions the tasks see them only if the deployment forwards them (it does when they
# are set at `make deploy-training`: StepFunctionsTraining.deployer).
FAIL_FIRST_ATTEMPT = "FRAUD_FLOW_FAIL_FIRST_ATTEMPT"
FAIL_ALWAYS = "FRAUD_FLOW_FAIL"
FAULT_INJECTION = (FAIL_FIRST_ATTEMPT, FAIL_ALWAYS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GridPoint(_Strict):
    """One candidate of the hyperparameter search."""

    hidden: list[int] = Field(min_length=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    lr: float = Field(gt=0.0, lt=1.0)
    batch_size: int = Field(ge=64, le=65536)
    seed: int = Field(default=0, ge=0, description="added to the flow's seed")


class SearchSpace(_Strict):
    """Values to try per hyperparameter; the grid is every combination of them.

    ``seed`` searches over initialisations too: with few fraud labels, which random start a
    network gets moves its validation AP as much as its width does, and the best of a few
    seeds (chosen on validation, like every other knob) is a cheap, honest gain.
    """

    hidden: list[list[int]] = Field(min_length=1)
    dropout: list[float] = Field(min_length=1)
    lr: list[float] = Field(min_length=1)
    batch_size: list[int] = Field(min_length=1)
    seed: list[int] = Field(default=[0], min_length=1)

    def points(self) -> list[GridPoint]:
        names = list(SearchSpace.model_fields)
        values = [getattr(self, name) for name in names]
        return [GridPoint(**dict(zip(names, combo, strict=True))) for combo in product(*values)]


class TrainingKnobs(_Strict):
    max_epochs: int = Field(ge=1, le=500)
    patience: int = Field(ge=1, le=100)
    weight_decay: float = Field(ge=0.0)
    embedding_dim: int = Field(ge=1, le=64)
    piecewise_bins: int = Field(
        default=0, ge=0, le=64, description="piecewise-linear encoding bins (0: off)"
    )
    ensemble: int = Field(
        default=1,
        ge=1,
        le=16,
        description="average the best N candidates of the best one's architecture (1: off)",
    )
    direction_penalty: float = Field(
        default=0.0,
        ge=0.0,
        description="weight of the directional penalty in the loss (0: off; see "
        "fraud_core.model.train.direction_violation)",
    )
    ema_decay: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="per-step decay of the moving average of the weights that is validated "
        "and kept (0: off, the raw weights)",
    )
    # The same names as fraud_core.model.train.LR_SCHEDULES (torch is not imported here).
    lr_schedule: Literal["constant", "cosine", "plateau"] = Field(
        default="constant",
        description="constant; cosine: from lr to zero over max_epochs, step by step; "
        "plateau: times lr_factor after each epoch with no new best validation AP",
    )
    lr_factor: float = Field(
        default=0.3, gt=0.0, lt=1.0, description="plateau: the rate's factor per epoch"
    )
    distill_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="train on (1 - w) * label + w * an out-of-fold LightGBM's probability "
        "(0: off, the labels; fraud_core.training.out_of_fold_teacher)",
    )
    teacher_folds: int = Field(
        default=4,
        ge=2,
        le=32,
        description="with distill_weight: the folds of the out-of-fold teacher (each scored "
        "by a LightGBM fitted on the others)",
    )


class SplitSettings(_Strict):
    val_fraction: float = Field(gt=0.0, lt=0.5)
    test_fraction: float = Field(gt=0.0, lt=0.5)


class DecisionSettings(_Strict):
    investigation_cost: float = Field(gt=0.0, description="cost of one investigation")
    precision_k: int = Field(ge=1, description="investigators' capacity for precision@k")


class LightGBMSettings(_Strict):
    """The baseline the network must beat, tuned with a budget like the network's: every
    combination of ``search``'s values over ``params``, early stopping on the same validation
    split, the best by validation AP (fraud_core.training.lightgbm_baseline)."""

    params: dict[str, Any] = Field(description="LightGBM parameters every candidate shares")
    search: dict[str, list[Any]] = Field(
        default_factory=dict, description="values to try per parameter (a grid)"
    )

    @model_validator(mode="after")
    def _no_empty_or_overlapping_search(self) -> LightGBMSettings:
        empty = [name for name, values in self.search.items() if not values]
        if empty:
            raise ValueError(f"lightgbm.search lists no values for {empty}")
        both = sorted(set(self.search) & set(self.params))
        if both:
            raise ValueError(f"{both} are both fixed in lightgbm.params and searched")
        return self


class TrainingSettings(_Strict):
    """Everything the flow needs besides its run-time parameters."""

    search: SearchSpace
    training: TrainingKnobs
    split: SplitSettings
    decision: DecisionSettings
    max_workers: int = Field(ge=1, le=256, description="parallel branches of the search")
    lightgbm: LightGBMSettings

    @model_validator(mode="after")
    def _split_leaves_training_rows(self) -> TrainingSettings:
        if self.split.val_fraction + self.split.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction must leave at least 20% for training")
        return self


def parse_settings(text: str) -> dict[str, Any]:
    """Metaflow ``Config`` parser: JSON text in, validated plain dict out (with the expanded
    ``grid``: one point per combination of the search space's values)."""
    settings = TrainingSettings.model_validate(json.loads(text))
    return {**settings.model_dump(), "grid": [p.model_dump() for p in settings.search.points()]}


def train_config(
    knobs: Mapping[str, Any], point: Mapping[str, Any], seed: int, max_epochs: int = 0
) -> TrainConfig:
    """One candidate's :class:`TrainConfig`: a grid point plus the shared training knobs.

    Args:
        knobs: the config's ``training`` section (validated).
        point: one point of the ``grid``.
        seed: the flow's random seed (the point's own ``seed`` is added to it).
        max_epochs: overrides the knobs' ``max_epochs`` when positive.
    """
    from fraud_core.model.train import TrainConfig

    return TrainConfig(
        hidden=list(point["hidden"]),
        dropout=point["dropout"],
        lr=point["lr"],
        batch_size=point["batch_size"],
        embedding_dim=knobs["embedding_dim"],
        piecewise_bins=knobs["piecewise_bins"],
        direction_penalty=knobs.get("direction_penalty", 0.0),
        ema_decay=knobs.get("ema_decay", 0.0),
        lr_schedule=knobs.get("lr_schedule", "constant"),
        lr_factor=knobs.get("lr_factor", 0.3),
        distill_weight=knobs.get("distill_weight", 0.0),
        weight_decay=knobs["weight_decay"],
        max_epochs=max_epochs or knobs["max_epochs"],
        patience=knobs["patience"],
        seed=seed + int(point.get("seed", 0)),
    )
