"""Drift of a batch against a reference profile (bins and weights per column): the statistics,
and the drift records each checked batch leaves in the lakehouse (``monitoring/*_drift``), from
which a persistent drift is told apart from a passing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import FEATURE_DRIFT

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


def with_divergence(table: pd.DataFrame, kl: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """``table`` (from :func:`drift_table`) with each column's KL divergence added.

    Args:
        table: PSI and KS per column, with ``drifting``.
        kl: per column, ``{"kl": observed KL or None, "passed": whether KL is under its
            threshold}`` (columns without an entry pass).

    Returns:
        A copy with ``kl`` and ``kl_passed``; a column whose KL fails is ``drifting`` too.
    """
    out = table.copy()
    out["kl"] = out["column"].map(lambda c: kl.get(c, {}).get("kl"))
    out["kl_passed"] = out["column"].map(lambda c: kl.get(c, {}).get("passed", True))
    out["drifting"] = out["drifting"] | ~out["kl_passed"].astype(bool)
    return out


def record_drift(
    lakehouse: Lakehouse,
    dataset: str,
    batch_id: str,
    table: pd.DataFrame,
    model_version: str,
    claim_dates: pd.Series,
) -> str:
    """Store a batch's drift table (one row per column) as its partition of ``dataset``.

    Each row is stamped with the batch, the model version it was compared with, the batch's
    first claim date (the order in which batches are read back) and the time of the check.
    Returns the partition's URI.
    """
    return lakehouse.write_batch(
        dataset,
        batch_id,
        table.assign(
            batch_id=batch_id,
            model_version=model_version,
            first_claim_date=claim_dates.min(),
            computed_at=pd.Timestamp(datetime.now(UTC)).tz_localize(None),
        ),
    )


def drifting_streak(lakehouse: Lakehouse, version: str) -> list[str]:
    """Batches whose features drift from model ``version``, newest last, up to the first calm
    one counting back from the newest batch (the current run of consecutive drifting batches).
    """
    if not lakehouse.batches(FEATURE_DRIFT):
        return []
    records = lakehouse.read_batches(FEATURE_DRIFT)
    records = records[records["model_version"] == version]
    per_batch = (
        records.groupby("batch_id")
        .agg(drifting=("drifting", "any"), first=("first_claim_date", "min"))
        .sort_values(["first", "batch_id"])
    )
    streak: list[str] = []
    for batch_id, row in per_batch[::-1].iterrows():
        if not row["drifting"]:
            break
        streak.insert(0, str(batch_id))
    return streak
