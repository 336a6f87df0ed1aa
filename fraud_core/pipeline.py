"""The pipeline's steps on one batch or the whole lakehouse, as plain functions.

Dagster assets call these (and nothing else does the work), so the benchmark can run the same
functions directly and measure what orchestration costs on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from fraud_core import drift, metrics
from fraud_core.claim_versions import SUPERSEDES, latest_versions
from fraud_core.features import DATE, HISTORY_COLUMNS, NUMERIC_FEATURES, build_features
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import BATCH_COLUMN, FEATURES, METRICS, RAW, SCORES
from fraud_core.schema import DECISION_COLUMN, ID_COLUMN, LABEL_COLUMN, Decision
from fraud_core.warehouse import METRICS_COLUMNS, METRICS_KEY
from fraud_core.window import LOOKBACK_DAYS, MAX_LOOKBACK_DAYS, window_rows, window_since

if TYPE_CHECKING:  # torch: imported by whoever loads a bundle
    from fraud_core.model.bundle import ModelBundle


def claims_history(
    lakehouse: Lakehouse,
    claims: pd.DataFrame,
    batch_id: str | None = None,
    columns: Sequence[str] = HISTORY_COLUMNS,
) -> pd.DataFrame | None:
    """The raw claims of other batches that the window features of ``claims`` can see: each
    claim's latest version once, none of ``claims``' own ids; ``columns`` only.

    Only what a window can reach is read (:func:`fraud_core.window.window_rows`: the window
    snapshot or the claims history's months, and raw's batches landed since they were
    written), and of those rows the ones within each key column's look-back whose key is one
    of ``claims``' (or that correct an earlier version, so the latest version still wins).
    The cost is flat in the lakehouse's age: the window, not the history, is read.

    Returns None when there is no other raw claim.
    """
    declared = lakehouse.table_columns(RAW)
    if claims.empty or not declared:
        return None
    dates = pd.to_datetime(claims[DATE])
    first, last = dates.min(), dates.max()
    start = first - pd.Timedelta(days=MAX_LOOKBACK_DAYS + 1)
    # a correction is kept whatever its key, so that it still replaces its earlier version
    reaches = [(start, pads.field(SUPERSEDES).is_valid())] if SUPERSEDES in declared else []
    for entity, days in LOOKBACK_DAYS.items():
        keys = pa.array(claims[entity].dropna().astype(str).unique(), pa.string())
        reaches.append((first - pd.Timedelta(days=days + 1), pads.field(entity).isin(keys)))
    other = None if batch_id is None else pads.field(BATCH_COLUMN) != batch_id
    history = window_rows(
        lakehouse, [ID_COLUMN, *columns], start, last, other, latest=True, any_of=reaches
    )
    if history.empty:
        return None
    history = history[~history[ID_COLUMN].isin(claims[ID_COLUMN]).to_numpy()]
    return history[list(dict.fromkeys([ID_COLUMN, *columns]))].reset_index(drop=True)


def window_history(
    lakehouse: Lakehouse, columns: Sequence[str] = HISTORY_COLUMNS, batches: bool = False
) -> pd.DataFrame:
    """The raw claims within the longest look-back before the lakehouse's latest claim date
    (each claim's latest version once; ``columns`` only, and ``batch_id`` when ``batches``):
    the history the scoring API holds.

    Only the window is read (:func:`fraud_core.window.window_rows`; the latest date comes from
    the Delta log's statistics), so this is flat in the lakehouse's age. An empty frame (with
    ``columns``) when there are no raw claims.
    """
    wanted = [*columns, BATCH_COLUMN] if batches else list(columns)
    latest = lakehouse.column_range(RAW, DATE)[1]  # (None: no raw table, or no claim yet)
    if latest is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in wanted})
    every = window_rows(lakehouse, [ID_COLUMN, *columns], window_since(latest), latest=True)
    return every[wanted].reset_index(drop=True)


def featurize_batch(lakehouse: Lakehouse, batch_id: str) -> pd.DataFrame:
    """Features of one raw batch, with the other raw batches' claims within the look-back
    window as history (:func:`claims_history`)."""
    claims = lakehouse.read_batch(RAW, batch_id)
    history = claims_history(lakehouse, claims, batch_id)
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
            DECISION_COLUMN: Decision.labels(bundle.decide(probability)),
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
) -> pd.DataFrame:
    """The model_metrics rows of one batch scored by one model version: one row per claim day.

    Volumes, alerts and label counts are per day, so they add up across days and batches (the
    BI views compute every rate from summed counts). Average precision, precision@k and drift
    need the whole batch to mean something (a day has a few hundred claims and a handful of
    frauds), so they are measured once on the batch and repeated on its days as ``batch_*``.

    Args:
        scores: the batch's scores by ``bundle`` (``claim_date``, ``fraud_score``,
            ``decision``, the label where known).
        features: the batch's features (for feature drift).
        bundle: the model that scored them (drift reference, training batches).
        batch_id: the landing batch.
        k: the investigation capacity for precision@k.

    Returns:
        A frame with the columns of ``METRICS_COLUMNS``, sorted by day.
    """
    if scores.empty:
        raise ValueError(f"batch {batch_id} has no scores for model {bundle.version}")
    if scores["claim_date"].isna().any():
        raise ValueError(f"scores of batch {batch_id} have claims without a claim_date")
    label = scores[LABEL_COLUMN].astype("boolean")
    labelled = label.notna().to_numpy()
    y = label.fillna(False).to_numpy(dtype=bool)
    s = scores["fraud_score"].to_numpy()
    alert = (scores[DECISION_COLUMN] == Decision.INVESTIGATE).to_numpy()
    has_both = y[labelled].any() and not y[labelled].all()
    psi = drift.psi_table(
        {c: bundle.reference_profile[c] for c in NUMERIC_FEATURES if c in bundle.reference_profile},
        features,
    )
    worst = max(psi, key=lambda c: psi[c]) if psi else None
    daily = (
        pd.DataFrame(
            {
                "metric_date": pd.to_datetime(scores["claim_date"]).dt.date.to_numpy(),
                "claims_scored": 1,
                "alerts": alert,
                "labelled_claims": labelled,
                "labelled_frauds": y,
                "labelled_alerts": alert & labelled,
                "true_positives": alert & y,
            }
        )
        .groupby("metric_date", sort=True)
        .sum()
        .astype("int64")
        .reset_index()
    )

    def ratio(numerator: str, denominator: str) -> pd.Series:
        den = daily[denominator]
        return (daily[numerator] / den.where(den > 0)).astype("float64")

    daily["alert_rate"] = ratio("alerts", "claims_scored")
    daily["fraud_rate"] = ratio("labelled_frauds", "labelled_claims")
    daily["alert_precision"] = ratio("true_positives", "labelled_alerts")
    daily["recall_at_threshold"] = ratio("true_positives", "labelled_frauds")
    batch = {
        "model_version": bundle.version,
        "batch_id": batch_id,
        "batch_average_precision": (
            metrics.average_precision(y[labelled], s[labelled]) if has_both else None
        ),
        "batch_precision_at_k": metrics.precision_at_k(y[labelled], s[labelled], k)
        if has_both
        else None,
        "batch_max_feature_psi": psi[worst] if worst else None,
        "batch_most_drifted_feature": worst,
        "batch_score_psi": (
            drift.psi(bundle.reference_profile["score"], s)
            if "score" in bundle.reference_profile
            else None
        ),
        "in_training_data": batch_id in set(bundle.lineage.get("training_batches", [])),
        "computed_at": pd.Timestamp(datetime.now(UTC)).tz_localize(None),
    }
    for name, value in batch.items():
        daily[name] = value
    for name, sql_type in METRICS_COLUMNS:
        if sql_type == "DOUBLE":
            daily[name] = daily[name].astype("float64")
    return daily[[name for name, _ in METRICS_COLUMNS]]


def aggregate_metrics(lakehouse: Lakehouse, bundles: dict[str, ModelBundle]) -> pd.DataFrame:
    """The model_metrics table: one row per (model version, batch, claim day) over all scored
    batches, with the columns of ``fraud_core.warehouse.METRICS_COLUMNS``.

    Args:
        lakehouse: where scores and features are.
        bundles: the bundle of each model version that appears in the scores (for its drift
            reference and training window).
    """
    parts = []
    batches = lakehouse.batches(SCORES)
    every = lakehouse.read_batches(SCORES, batches) if batches else pd.DataFrame()
    # Each claim counted once: in the batch of its latest version (a correction's).
    current = latest_versions(lakehouse, every)
    for batch_id, scores in current.groupby(BATCH_COLUMN, sort=True) if batches else ():
        features = lakehouse.read_batch(FEATURES, str(batch_id))
        scores = scores.drop(columns=BATCH_COLUMN)
        for version, part in scores.groupby("model_version", sort=True):
            if version not in bundles:
                raise KeyError(f"scores of batch {batch_id} name unknown model {version}")
            parts.append(batch_metrics(part, features, bundles[str(version)], str(batch_id)))
    if not parts:
        raise ValueError("no scored batches in the lakehouse: materialize claim_scores first")
    table = pd.concat(parts, ignore_index=True)[[name for name, _ in METRICS_COLUMNS]]
    table = table.sort_values(list(METRICS_KEY)).reset_index(drop=True)
    lakehouse.write_table(METRICS, table)
    return table


def versions_in_scores(lakehouse: Lakehouse) -> list[str]:
    """Model versions that scored any batch (to load their bundles for the metrics)."""
    if not lakehouse.batches(SCORES):
        return []
    scores = lakehouse.read_table(SCORES, ["model_version"])
    return sorted(set(scores["model_version"].dropna().astype(str)))


__all__ = [
    "BATCH_COLUMN",
    "aggregate_metrics",
    "batch_metrics",
    "featurize_batch",
    "score_batch",
    "score_frame",
    "versions_in_scores",
]
