"""The pipeline's steps on one batch or the whole lakehouse, as plain functions.

Dagster assets call these (and nothing else does the work), so the benchmark can run the same
functions directly and measure what orchestration costs on top.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from fraud_core import drift, metrics
from fraud_core.features import NUMERIC_FEATURES, build_features
from fraud_core.lakehouse import BATCH_COLUMN, FEATURES, METRICS, RAW, SCORES, Lakehouse
from fraud_core.model.bundle import ModelBundle
from fraud_core.schema import ID_COLUMN, LABEL_COLUMN
from fraud_core.warehouse import METRICS_COLUMNS, METRICS_KEY

METRICS_FILE = f"{METRICS}/part-0.parquet"


def featurize_batch(lakehouse: Lakehouse, batch_id: str) -> pd.DataFrame:
    """Features of one raw batch, with every other raw batch as history."""
    claims = lakehouse.read_batch(RAW, batch_id)
    others = [b for b in lakehouse.batches(RAW) if b != batch_id]
    history = lakehouse.read_batches(RAW, others) if others else None
    features = build_features(claims, history)
    lakehouse.write_batch(FEATURES, batch_id, features)
    return features


def score_frame(bundle: ModelBundle, features: pd.DataFrame) -> pd.DataFrame:
    """Fraud probability and decision per claim, stamped with the model version."""
    probability = bundle.predict_proba(features)
    return pd.DataFrame(
        {
            ID_COLUMN: features[ID_COLUMN].to_numpy(),
            "claim_date": features["claim_date"].to_numpy(),
            "claimed_amount": features["claimed_amount"].to_numpy(),
            "fraud_score": probability,
            "decision": np.where(bundle.decide(probability), "investigate", "fast_track"),
            "model_version": bundle.version,
            LABEL_COLUMN: features[LABEL_COLUMN].to_numpy() if LABEL_COLUMN in features else pd.NA,
            "scored_at": pd.Timestamp(datetime.now(UTC)).tz_localize(None),
        }
    )


def score_batch(lakehouse: Lakehouse, batch_id: str, bundle: ModelBundle) -> pd.DataFrame:
    scores = score_frame(bundle, lakehouse.read_batch(FEATURES, batch_id))
    lakehouse.write_batch(SCORES, batch_id, scores)
    return scores


def batch_metrics(
    scores: pd.DataFrame,
    features: pd.DataFrame,
    bundle: ModelBundle,
    batch_id: str,
    k: int = 100,
) -> dict[str, Any]:
    """One row of model_metrics: volumes, alert rate, quality where labels are known, drift."""
    labelled = scores[scores[LABEL_COLUMN].notna()]
    y = labelled[LABEL_COLUMN].to_numpy(dtype=bool)
    has_both = y.any() and not y.all()
    s = labelled["fraud_score"].to_numpy()
    psi = drift.psi_table(
        {c: bundle.reference_profile[c] for c in NUMERIC_FEATURES if c in bundle.reference_profile},
        features,
    )
    score_psi = (
        drift.psi(bundle.reference_profile["score"], scores["fraud_score"].to_numpy())
        if "score" in bundle.reference_profile
        else None
    )
    worst = max(psi, key=lambda c: psi[c]) if psi else None
    training_batches = set(bundle.lineage.get("training_batches", []))
    alerts = int((scores["decision"] == "investigate").sum())
    return {
        "model_version": bundle.version,
        "batch_id": batch_id,
        "first_claim_date": scores["claim_date"].min(),
        "last_claim_date": scores["claim_date"].max(),
        "claims_scored": len(scores),
        "alerts": alerts,
        "alert_rate": alerts / len(scores) if len(scores) else None,
        "labelled_claims": len(labelled),
        "fraud_rate": float(y.mean()) if len(y) else None,
        "average_precision": metrics.average_precision(y, s) if has_both else None,
        "precision_at_k": metrics.precision_at_k(y, s, k) if has_both else None,
        "recall_at_threshold": float((labelled.loc[y, "decision"] == "investigate").mean())
        if y.any()
        else None,
        "max_feature_psi": psi[worst] if worst else None,
        "most_drifted_feature": worst,
        "score_psi": score_psi,
        "in_training_data": batch_id in training_batches,
        "computed_at": pd.Timestamp(datetime.now(UTC)).tz_localize(None),
    }


def aggregate_metrics(lakehouse: Lakehouse, bundles: dict[str, ModelBundle]) -> pd.DataFrame:
    """The model_metrics table: one row per (model version, batch) over all scored batches.

    Args:
        lakehouse: where scores and features are.
        bundles: the bundle of each model version that appears in the scores (for its drift
            reference and training window).
    """
    rows = []
    for batch_id in lakehouse.batches(SCORES):
        scores = lakehouse.read_batch(SCORES, batch_id)
        features = lakehouse.read_batch(FEATURES, batch_id)
        for version, part in scores.groupby("model_version", sort=True):
            if version not in bundles:
                raise KeyError(f"scores of batch {batch_id} name unknown model {version}")
            rows.append(batch_metrics(part, features, bundles[str(version)], batch_id))
    if not rows:
        raise ValueError("no scored batches in the lakehouse: materialize claim_scores first")
    table = pd.DataFrame(rows)[[name for name, _ in METRICS_COLUMNS]]
    table = table.sort_values(list(METRICS_KEY)).reset_index(drop=True)
    lakehouse.write_parquet(METRICS_FILE, table)
    return table


def versions_in_scores(lakehouse: Lakehouse) -> list[str]:
    """Model versions that scored any batch (to load their bundles for the metrics)."""
    versions: set[str] = set()
    for batch_id in lakehouse.batches(SCORES):
        versions.update(lakehouse.read_batch(SCORES, batch_id)["model_version"].astype(str))
    return sorted(versions)


__all__ = [
    "BATCH_COLUMN",
    "aggregate_metrics",
    "batch_metrics",
    "featurize_batch",
    "score_batch",
    "score_frame",
    "versions_in_scores",
]
