"""The training loop: in-memory tensors sliced per batch, weighted loss, early stopping on AP.

Class imbalance is handled with a positive weight of ``sqrt(negatives / positives)`` in the
binary cross-entropy. The full ratio (~70 at a 1.4% fraud rate) makes the network chase every
positive and ranks worse on validation here; the square root keeps rare fraud visible in the
gradient while leaving the ranking stable. Scores are recalibrated afterwards (Platt), so the
weighting does not bias the probabilities the service returns.

Where the domain knows which way a feature moves the risk (:data:`fraud_core.features.
DIRECTIONS`: a claim reported later, or sooner after its policy started, is never less
suspicious), the loss adds a directional penalty (``direction_penalty``): each batch, its
highest-scored eighth and another eighth of its claims get one such feature pushed further in
its risky direction, and the network pays for every logit that drops. A flexible encoding (the
piecewise-linear bins) otherwise learns the sampling noise of the rare fraud cases as
wiggles, which the gate's directional tests rightly refuse; the penalty keeps the flexibility
where the data has it and forbids it where the domain says no.

The learning rate is constant by default. ``lr_schedule`` decays it: ``"cosine"`` lowers it
step by step along half a cosine, from ``lr`` to zero at the end of ``max_epochs``;
``"plateau"`` multiplies it by ``lr_factor`` after every epoch whose validation AP is not a
new best (early stopping still ends training after ``patience`` such epochs in a row). At a
constant rate the validation AP stops rising after a few epochs, the weights still moving by
the rate's step; a smaller rate lets them settle into the minimum they are circling.

``distill_weight`` (0, off, by default) trains on soft targets, ``(1 - w) * label + w *
teacher``, where the teacher is an out-of-fold LightGBM's probability of each training row
(:func:`fraud_core.training.out_of_fold_teacher`). The labels are very noisy (the
Bayes-optimal AP is about 0.30), so a few hundred fraud labels pull each network towards
their own sampling noise; the teacher's probabilities are a smoother estimate of the same
risk. Validation, early stopping, the piecewise bins and the class weight stay on the labels.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fraud_core.features import CATEGORICAL_FEATURES, DIRECTIONS, NUMERIC_FEATURES
from fraud_core.metrics import average_precision
from fraud_core.model.network import FraudNet, NetConfig, average_of
from fraud_core.model.preprocessing import Vocabulary
from fraud_core.schema import LABEL_COLUMN

LRSchedule = Literal["constant", "cosine", "plateau"]
LR_SCHEDULES: tuple[LRSchedule, ...] = ("constant", "cosine", "plateau")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (one point of the search grid)."""

    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    embedding_dim: int = 4
    piecewise_bins: int = 0  # bins of the piecewise-linear encoding (0: standardized only)
    lr: float = 2e-3
    weight_decay: float = 1e-5
    batch_size: int = 1024
    max_epochs: int = 20
    patience: int = 3
    seed: int = 0
    pos_weight: float | None = None  # None: sqrt(negatives / positives)
    direction_penalty: float = 0.0  # weight of direction_violation in the loss (0: off)
    ema_decay: float = 0.0  # per-step decay of an exponential moving average of the weights
    lr_schedule: LRSchedule = "constant"  # how the learning rate decays (module docstring)
    lr_factor: float = 0.3  # "plateau": the rate's factor after an epoch with no new best
    distill_weight: float = 0.0  # target = (1 - w) * label + w * teacher probability (0: off)

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"lr_factor must be in (0, 1), got {self.lr_factor}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class FitResult:
    """A trained network with what it learned and how training went."""

    net: FraudNet
    vocabulary: Vocabulary
    best_val_ap: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]


def encode(frame: pd.DataFrame, vocabulary: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs of a feature frame: float32 numerics and int64 category codes."""
    numeric = torch.from_numpy(
        frame[list(NUMERIC_FEATURES)].to_numpy(np.float32, na_value=np.nan, copy=True)
    )
    codes = torch.from_numpy(vocabulary.encode(frame))
    return numeric, codes


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """Boolean labels; raises when a row has no known outcome (filter those out first)."""
    label = frame[LABEL_COLUMN]
    if label.isna().any():
        raise ValueError(f"{int(label.isna().sum())} rows have no {LABEL_COLUMN} label")
    return label.to_numpy(dtype=bool)


@torch.no_grad()
def predict_logits(net: FraudNet, numeric: torch.Tensor, codes: torch.Tensor) -> np.ndarray:
    net.eval()
    out = [net(numeric[i : i + 65536], codes[i : i + 65536]) for i in range(0, len(numeric), 65536)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


_DIRECTED = torch.tensor([NUMERIC_FEATURES.index(name) for name in DIRECTIONS])
_SIGNS = torch.tensor([float(sign) for sign in DIRECTIONS.values()])


def direction_violation(
    net: FraudNet,
    numeric: torch.Tensor,
    codes: torch.Tensor,
    logits: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """How far the network's logits fall when a directed feature is pushed the risky way.

    The rows pushed are the batch's top eighth by ``logits`` (the suspicious claims the gate
    tests) and its first eighth (the batch is in random order: a random sample). Each gets one
    feature of :data:`~fraud_core.features.DIRECTIONS`, chosen at random, moved by its
    distance to another random row's value, in the feature's risky direction (held to the
    batch's range of that feature). Both sides are
    scored without dropout, so a drop is the network's, not the noise's.

    Returns:
        The mean of ``relu(logit before - logit after)``: zero when no pushed claim scores
        lower, differentiable in the network's weights.
    """
    n = len(numeric)
    share = max(1, n // 8)
    rows = torch.cat([torch.topk(logits.detach(), share).indices, torch.arange(share)])
    pick = torch.randint(len(_DIRECTED), (len(rows),), generator=generator)
    col, sign = _DIRECTED[pick], _SIGNS[pick]
    other = torch.randint(n, (len(rows),), generator=generator)
    own = numeric[rows, col]
    step = (numeric[other, col] - own).abs().nan_to_num(0.0)
    # Held to the values the batch holds (a duration pushed down stays >= its smallest).
    directed = numeric[:, _DIRECTED]
    low = torch.where(directed.isnan(), torch.inf, directed).amin(0)[pick]
    high = torch.where(directed.isnan(), -torch.inf, directed).amax(0)[pick]
    pushed = numeric[rows].clone()
    pushed[torch.arange(len(rows)), col] = torch.clamp(own + sign * step, low, high)
    training = net.training
    net.eval()
    both = net(torch.cat([numeric[rows], pushed]), codes[rows].repeat(2, 1))
    net.train(training)
    return torch.relu(both[: len(rows)] - both[len(rows) :]).mean()


def cosine_lr(lr: float, progress: float) -> float:
    """The rate at ``progress`` (0 at the first step, 1 after the last of ``max_epochs``) of a
    half-cosine decay from ``lr`` to zero."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def fit(
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: TrainConfig,
    threads: int | None = None,
    progress: bool = False,
    teacher: np.ndarray | None = None,
) -> FitResult:
    """Train a :class:`FraudNet` on labelled feature rows, keeping the best epoch by val AP.

    Args:
        train: labelled feature rows to learn from.
        val: labelled feature rows for early stopping (later in time than ``train``).
        config: hyperparameters.
        threads: torch intra-op threads (set so parallel branches don't oversubscribe cores).
        progress: show a progress bar over epochs.
        teacher: with ``config.distill_weight``, a probability per training row (in
            ``train``'s order) that the targets are mixed with; never computed from the row's
            own label (out of fold).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    y_train, y_val = labels_of(train), labels_of(val)
    if not y_train.any() or not y_val.any():
        raise ValueError("training and validation sets each need at least one fraud label")
    vocabulary = Vocabulary.fit(train, CATEGORICAL_FEATURES)
    x_num, x_cat = encode(train, vocabulary)
    v_num, v_cat = encode(val, vocabulary)
    target = torch.from_numpy(y_train.astype(np.float32))
    if config.distill_weight:
        if teacher is None or len(teacher) != len(y_train):
            raise ValueError("distill_weight needs one teacher probability per training row")
        soft = torch.from_numpy(np.asarray(teacher, dtype=np.float32))
        target = (1.0 - config.distill_weight) * target + config.distill_weight * soft

    net = FraudNet(
        NetConfig(
            numeric=list(NUMERIC_FEATURES),
            cardinalities=[len(v) for v in vocabulary.values.values()],
            hidden=list(config.hidden),
            dropout=config.dropout,
            embedding_dim=config.embedding_dim,
            piecewise_bins=config.piecewise_bins,
        )
    )
    net.standardize.fit(x_num)
    if net.piecewise is not None:
        net.piecewise.fit(x_num, y_train)
    positives = float(y_train.sum())
    weight = config.pos_weight or math.sqrt((len(y_train) - positives) / positives)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    ema = (
        torch.optim.swa_utils.AveragedModel(
            net,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay),
            use_buffers=False,  # the preprocessing buffers are fixed (and hold inf)
        )
        if config.ema_decay
        else None
    )
    judged = net if ema is None else cast(FraudNet, ema.module)
    best_ap, best_epoch, best_state = -1.0, 0, copy.deepcopy(net.state_dict())
    history: list[dict[str, float]] = []
    generator = torch.Generator().manual_seed(config.seed)
    epochs = tqdm(range(1, config.max_epochs + 1), desc="epochs", disable=not progress, leave=False)
    steps_per_epoch = math.ceil(len(target) / config.batch_size)
    total_steps = steps_per_epoch * config.max_epochs
    lr = config.lr
    epoch = 0
    for epoch in epochs:
        net.train()
        epoch_started = time.perf_counter()
        order = torch.randperm(len(target), generator=generator)
        total = 0.0
        for step, start in enumerate(range(0, len(order), config.batch_size)):
            idx = order[start : start + config.batch_size]
            if config.lr_schedule == "cosine":
                lr = cosine_lr(config.lr, ((epoch - 1) * steps_per_epoch + step) / total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            logits = net(x_num[idx], x_cat[idx])
            loss = loss_fn(logits, target[idx])
            if config.direction_penalty:
                violation = direction_violation(net, x_num[idx], x_cat[idx], logits, generator)
                loss = loss + config.direction_penalty * violation
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(net)
            total += loss.item() * len(idx)
        train_seconds = time.perf_counter() - epoch_started
        val_ap = average_precision(y_val, predict_logits(judged, v_num, v_cat))
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / len(order),
                "val_ap": val_ap,
                "lr": optimizer.param_groups[0]["lr"],  # the rate of the epoch's last step
                "train_seconds": train_seconds,
                "val_seconds": time.perf_counter() - epoch_started - train_seconds,
            }
        )
        epochs.set_postfix(val_ap=f"{val_ap:.4f}")
        if val_ap > best_ap:
            best_ap, best_epoch, best_state = val_ap, epoch, copy.deepcopy(judged.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
        elif config.lr_schedule == "plateau":
            lr *= config.lr_factor
    net.load_state_dict(best_state)
    net.eval()
    return FitResult(net, vocabulary, best_ap, best_epoch, epoch, history)


def ensemble_of(
    nets: list[FraudNet], val_aps: list[float], size: int
) -> tuple[FraudNet, list[int]]:
    """The search's best network by validation AP, averaged with the next best of the same
    architecture, ``size`` members at most (:func:`fraud_core.model.network.average_of`).

    Seeds of one architecture differ in what a few hundred fraud labels let each learn by
    chance; their mean logit keeps what they agree on. On held-out claims it ranked better
    than the network a noisy validation set picks, on every dataset measured (docs/model.md).

    Returns:
        The network (the best itself when it is alone) and the members' indices, best first.
    """
    if size < 1 or not nets or len(nets) != len(val_aps):
        raise ValueError("an ensemble needs size >= 1 and one validation AP per network")
    ranked = sorted(range(len(nets)), key=lambda i: -val_aps[i])
    best = nets[ranked[0]].config
    members = [i for i in ranked if nets[i].config == best][:size]
    if len(members) == 1:
        return nets[members[0]], members
    return average_of([nets[i] for i in members]), members
