"""Drift statistics of a batch against a reference profile (bins and weights per column)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_EPS = 1e-4


def profile(
    frame: pd.DataFrame, columns: list[str] | tuple[str, ...], bins: int = 10
) -> dict[str, Any]:
    """Quantile bin edges and the share of rows per bin, per numeric column (JSON-ready)."""
    out: dict[str, Any] = {}
    for col in columns:
        values = frame[col].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"cannot profile {col!r}: no finite values")
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
        inner = edges[1:-1]
        counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
        out[col] = {"bins": inner.tolist(), "weights": (counts / counts.sum()).tolist()}
    return out


def psi(reference: dict[str, Any], values: np.ndarray) -> float:
    """Population stability index of ``values`` against one column's reference bins.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("cannot compute PSI without finite values")
    inner = np.asarray(reference["bins"], dtype=np.float64)
    expected = np.asarray(reference["weights"], dtype=np.float64)
    counts = np.bincount(np.searchsorted(inner, v, side="right"), minlength=expected.size)
    actual = counts / counts.sum()
    e, a = np.clip(expected, _EPS, None), np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_table(reference_profile: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI per profiled column present in ``frame``."""
    return {
        col: psi(ref, frame[col].to_numpy())
        for col, ref in reference_profile.items()
        if col in frame.columns
    }
