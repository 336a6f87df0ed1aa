"""Reusable preprocessing layers. They travel inside the model bundle (as buffers and JSON), so
the transformation fitted on training data is exactly the one applied when serving."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn


class Standardize(nn.Module):
    """``log1p`` on heavy-tailed columns, then ``(x - mean) / std``, NaN to 0, clipped to +-8."""

    mean: torch.Tensor
    std: torch.Tensor
    log_mask: torch.Tensor

    def __init__(self, n_features: int, log_columns: list[bool] | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        mask = torch.tensor(log_columns or [False] * n_features, dtype=torch.bool)
        self.register_buffer("log_mask", mask)

    def _log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.log_mask, torch.log1p(x.clamp(min=0.0)), x)

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Standardize:
        """Learn mean and standard deviation from training rows (NaNs ignored)."""
        z = self._log(x)
        self.mean.copy_(torch.nanmean(z, dim=0).nan_to_num(0.0))
        var = torch.nanmean((z - self.mean) ** 2, dim=0).nan_to_num(1.0)
        self.std.copy_(var.sqrt().clamp(min=1e-6))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self._log(x) - self.mean) / self.std
        return z.nan_to_num(0.0).clamp(-8.0, 8.0)


class PiecewiseLinear(nn.Module):
    """Piecewise-linear encoding of numeric inputs over bins learned from the labels.

    Each feature gets ``bins`` bins; a value's encoding is, per bin, how far through that bin
    it is (0 before it, 1 after it, the fraction inside it), so the network sees a feature as a
    ramp of bins and can turn sharply where fraud turns, which a plain MLP on one standardized
    number does smoothly (Gorishniy et al., "On Embeddings for Numerical Features in Tabular
    Deep Learning", 2022: PLE with target-aware bins). Bin edges are the thresholds of a small
    decision tree fitted on each feature against the label; NaN encodes as all zeros. The
    edges are buffers: they travel in the bundle with the weights.
    """

    low: torch.Tensor
    width: torch.Tensor

    def __init__(self, n_features: int, bins: int) -> None:
        super().__init__()
        self.bins = bins
        self.register_buffer("low", torch.zeros(n_features, bins))
        self.register_buffer("width", torch.ones(n_features, bins))
        self.out_features = n_features * bins

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: np.ndarray, min_leaf: int = 50) -> PiecewiseLinear:
        """Bin edges per feature: a decision tree's thresholds on that feature alone.

        ``min_leaf``: claims a bin must hold. Small enough that a rare but telling range gets
        its own edge: claims filed in a policy's first 30 days are about 1% of claims, 195
        of the training rows at 20,000 claims, with 33 frauds among them; at 200 the tree
        could not cut there and the network never learned the scenario (the gate's
        minimum-functionality test refused it). 50 found it at every scale measured.
        """
        from sklearn.tree import DecisionTreeClassifier

        values = x.numpy().astype(np.float64)
        lows, widths = [], []
        for j in range(values.shape[1]):
            column = values[:, j]
            known = ~np.isnan(column)
            edges = np.array([0.0, 1.0])
            if known.sum() > 2 * min_leaf and len(np.unique(y[known])) == 2:
                tree = DecisionTreeClassifier(
                    max_leaf_nodes=self.bins, min_samples_leaf=min_leaf, random_state=0
                ).fit(column[known, None], y[known])
                thresholds = np.sort(tree.tree_.threshold[tree.tree_.feature >= 0])
                edges = np.r_[column[known].min(), thresholds, column[known].max()]
            # Fewer splits than bins: the spare bins sit past the top edge (always 0).
            edges = np.r_[edges, np.full(self.bins + 1 - len(edges), edges[-1])]
            lows.append(edges[:-1])
            widths.append(np.diff(edges))
        self.low.copy_(torch.tensor(np.array(lows), dtype=torch.float32))
        spare = torch.tensor(np.array(widths), dtype=torch.float32) <= 0
        width = torch.tensor(np.array(widths), dtype=torch.float32).clamp(min=1e-6)
        self.width.copy_(width.masked_fill(spare, float("inf")))
        return self

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The lowest and the highest edge per feature: the range seen in training."""
        tops = torch.where(torch.isfinite(self.width), self.low + self.width, self.low)
        return self.low[:, 0], tops.max(dim=1).values

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` held to the range seen in training (NaN stays NaN)."""
        low, high = self.edges()
        return torch.minimum(torch.maximum(x, low), high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = ((x.unsqueeze(2) - self.low) / self.width).clamp(0.0, 1.0)
        return ramp.nan_to_num(0.0).flatten(1)


class CategoryEmbeddings(nn.Module):
    """One embedding table per categorical column; index 0 is 'unknown / not seen in training'."""

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(card + 1, dim) for card in cardinalities)
        self.out_features = dim * len(cardinalities)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if not len(self.tables):
            return codes.new_zeros((codes.shape[0], 0), dtype=torch.float32)
        return torch.cat([t(codes[:, i]) for i, t in enumerate(self.tables)], dim=1)


@dataclass(frozen=True)
class Vocabulary:
    """Category values seen in training, per column (JSON-serialisable state of the encoder)."""

    values: dict[str, list[str]]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> Vocabulary:
        return cls({c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in columns})

    def to_json(self) -> list[dict[str, object]]:
        """Ordered list form: column order matters (it is the embedding tables' order)."""
        return [{"column": c, "values": v} for c, v in self.values.items()]

    @classmethod
    def from_json(cls, items: list[dict[str, object]]) -> Vocabulary:
        return cls({str(i["column"]): list(i["values"]) for i in items})  # type: ignore[call-overload]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Codes 1..n for known values, 0 for unknown or missing; shape (rows, columns)."""
        out = np.zeros((len(frame), len(self.values)), dtype=np.int64)
        for j, (col, vals) in enumerate(self.values.items()):
            index = pd.Index(vals)
            codes = index.get_indexer(frame[col].astype("string").fillna("").to_numpy())
            out[:, j] = codes + 1  # -1 (unknown) becomes 0
        return out
