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


def ks_binned(reference: dict[str, Any], values: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance on the reference's bins: the largest gap between the
    reference's and the batch's cumulative shares at the bin edges (the reference keeps bins,
    not raw values, so this is the binned KS statistic)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("cannot compute KS without finite values")
    inner = np.asarray(reference["bins"], dtype=np.float64)
    expected = np.cumsum(np.asarray(reference["weights"], dtype=np.float64))
    counts = np.bincount(np.searchsorted(inner, v, side="right"), minlength=expected.size)
    actual = np.cumsum(counts / counts.sum())
    return float(np.max(np.abs(actual - expected)))


def drift_table(
    reference_profile: dict[str, Any],
    frame: pd.DataFrame,
    columns: list[str] | tuple[str, ...],
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.15,
) -> pd.DataFrame:
    """PSI and binned KS per column of ``frame`` against the reference; ``drifting`` when either
    passes its threshold. Columns missing from the reference are skipped."""
    rows = []
    for col in columns:
        if col not in reference_profile or col not in frame.columns:
            continue
        ref = reference_profile[col]
        values = frame[col].to_numpy(dtype=np.float64)
        p, k = psi(ref, values), ks_binned(ref, values)
        rows.append(
            {"column": col, "psi": p, "ks": k, "drifting": p > psi_threshold or k > ks_threshold}
        )
    if not rows:
        raise ValueError("no column of the batch has a reference profile to compare with")
    return pd.DataFrame(rows)


# Inputs watched for drift: the claim's own attributes. Left out on purpose:
# - history counts (ph_/prov_ features) grow while a lakehouse's history fills up, so against an
#   early training window they drift by construction;
# - days_since_policy_start, which grows as a book of policies ages.
# Shifts they would show reach the model's output, and the score itself is watched too.
MONITORED_FEATURES: tuple[str, ...] = (
    "log_amount",
    "amount_to_limit",
    "deductible_to_amount",
    "report_delay_days",
    "police_report",
    "witnesses",
    "asset_age_years",
    "prior_claims",
)
