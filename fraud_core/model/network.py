"""The fraud network: preprocessing layers followed by a small MLP that outputs a logit.

Inputs to the MLP, in this order (:meth:`FraudNet.mlp_inputs`): the standardized numerics,
the category embeddings, and (when ``piecewise_bins`` > 0) the piecewise-linear encoding of
the numerics. With the encoding, numerics are first held to the range seen in training, so
the network is flat beyond it. Without that, the standardized input extrapolated linearly, and
the gate's directional test caught claims pushed past the training range scoring lower.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from fraud_core.model.preprocessing import CategoryEmbeddings, PiecewiseLinear, Standardize

# Counts and durations are heavy-tailed: log1p before standardising.
LOG_FEATURES = frozenset(
    {
        "days_since_policy_start",
        "report_delay_days",
        "witnesses",
        "asset_age_years",
        "prior_claims",
        "ph_claims_30d",
        "ph_claims_365d",
        "prov_claims_90d",
    }
)


@dataclass(frozen=True)
class NetConfig:
    """Architecture of :class:`FraudNet` (stored in the bundle's manifest)."""

    numeric: list[str]
    cardinalities: list[int]
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    embedding_dim: int = 4
    piecewise_bins: int = 0  # 0: no piecewise-linear encoding (bundles from before it existed)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class FraudNet(nn.Module):
    """Standardize numeric inputs, embed categories, MLP to one fraud logit per claim."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.standardize = Standardize(
            len(config.numeric), [name in LOG_FEATURES for name in config.numeric]
        )
        self.embeddings = CategoryEmbeddings(config.cardinalities, config.embedding_dim)
        layers: list[nn.Module] = []
        self.piecewise = (
            PiecewiseLinear(len(config.numeric), config.piecewise_bins)
            if config.piecewise_bins
            else None
        )
        width = len(config.numeric) + self.embeddings.out_features
        if self.piecewise is not None:
            width += self.piecewise.out_features
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def mlp_inputs(self, numeric: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the MLP sees, by name, in column order: ``standardized``, ``embeddings`` and
        (with the encoding) ``piecewise``."""
        if self.piecewise is None:
            return {"standardized": self.standardize(numeric), "embeddings": self.embeddings(codes)}
        return {
            "standardized": self.standardize(self.piecewise.clamp(numeric)),
            "embeddings": self.embeddings(codes),
            "piecewise": self.piecewise(numeric),
        }

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = list(self.mlp_inputs(numeric, codes).values())
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)


@torch.no_grad()
def average_of(nets: list[FraudNet]) -> FraudNet:
    """One :class:`FraudNet` whose logit is the mean logit of ``nets``, exactly.

    The members must share an architecture and preprocessing state (networks of one search
    point trained on the same rows with different seeds: the preprocessing is fitted on the
    rows alone). The result is an ordinary, wider FraudNet: each member's hidden units side by
    side, each layer block-diagonal (a member's units read only its own), the category
    embeddings side by side, the output layer averaging. So the bundle, the fast path and the
    attribution serve an ensemble with no new code.
    """
    first = nets[0]
    cfg, k = first.config, len(nets)
    for net in nets[1:]:
        if net.config != cfg:
            raise ValueError("only networks of one architecture can be averaged")
        fitted = ((first.standardize, net.standardize), (first.piecewise, net.piecewise))
        for ours, theirs in fitted:
            state = ours.state_dict() if ours is not None else {}
            other = theirs.state_dict() if theirs is not None else {}
            if any(not torch.equal(state[key], other[key]) for key in state):
                raise ValueError("networks fitted on different rows cannot be averaged")
    merged = FraudNet(
        NetConfig(
            numeric=list(cfg.numeric),
            cardinalities=list(cfg.cardinalities),
            hidden=[k * size for size in cfg.hidden],
            dropout=cfg.dropout,
            embedding_dim=k * cfg.embedding_dim,
            piecewise_bins=cfg.piecewise_bins,
        )
    )
    merged.standardize.load_state_dict(first.standardize.state_dict())
    if first.piecewise is not None and merged.piecewise is not None:
        merged.piecewise.load_state_dict(first.piecewise.state_dict())
    merged.embeddings.load_state_dict(
        {
            f"tables.{c}.weight": torch.cat(
                [net.state_dict()[f"embeddings.tables.{c}.weight"] for net in nets], dim=1
            )
            for c in range(len(cfg.cardinalities))
        }
    )
    # Where member i's MLP inputs sit among the merged network's.
    n_num, dim = len(cfg.numeric), cfg.embedding_dim
    n_cat, n_pw = len(cfg.cardinalities), (first.piecewise.out_features if first.piecewise else 0)

    def columns(i: int) -> torch.Tensor:
        embedded = [n_num + c * k * dim + i * dim + j for c in range(n_cat) for j in range(dim)]
        tail = n_num + n_cat * k * dim
        return torch.tensor([*range(n_num), *embedded, *range(tail, tail + n_pw)])

    linears = [m for m in merged.mlp if isinstance(m, nn.Linear)]
    members = [[m for m in net.mlp if isinstance(m, nn.Linear)] for net in nets]
    for layer in linears:
        layer.weight.zero_()
    for i, own in enumerate(members):
        for depth, (layer, mine) in enumerate(zip(linears, own, strict=True)):
            rows = slice(i * mine.out_features, (i + 1) * mine.out_features)
            if depth == len(linears) - 1:  # the output: the mean of the members' logits
                cols = slice(i * mine.in_features, (i + 1) * mine.in_features)
                layer.weight[:, cols] = mine.weight / k
                continue
            if depth == 0:
                layer.weight[rows, columns(i)] = mine.weight
            else:
                cols = slice(i * mine.in_features, (i + 1) * mine.in_features)
                layer.weight[rows, cols] = mine.weight
            layer.bias[rows] = mine.bias
    linears[-1].bias.copy_(torch.stack([own[-1].bias for own in members]).mean(dim=0))
    return merged.eval()
