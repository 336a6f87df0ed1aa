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
