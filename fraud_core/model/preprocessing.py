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
