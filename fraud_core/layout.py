"""The lakehouse layout: every dataset and file the project keeps under ``LAKEHOUSE_URI``.

This module is the one place a path is named; everything else imports it. Under the root::

    landing/                          arriving files (unless a separate LANDING_URI is used)
    raw/claims/batch=ID/              validated rows of one landed file
    quarantine/claims/batch=ID/       its rows that failed the contract, with their reasons
    rejected/claims/batch=ID/version=V/  a whole file the contract refused: rejection.json
                                      (why, and what to fix) next to the file as it arrived
    features/claims/batch=ID/         model features
    outputs/scores/batch=ID/          fraud score and decision per claim, with the model version
    monitoring/feature_drift/batch=ID/  drift of a batch's features against the champion's
    monitoring/score_drift/batch=ID/    training reference (and of its scores)
    metrics/model_metrics/            the aggregated metrics table (one file)
    models/VERSION/                   a model bundle: weights, manifest.json, drift reference
    models/champion.json              the champion pointer: {"version": ...}, replaced atomically
    models/champion_history.json      every promotion and rollback, oldest first
    models/candidate.json             the last trained candidate, waiting for the model gate
    quality/data_docs/                Great Expectations Data Docs, a page per validation

A batch partition is one folder ``batch=ID`` holding one file, so rerunning a batch replaces
it and never appends twice.
"""

from __future__ import annotations

# The local default when LAKEHOUSE_URI is not set (relative to the working directory).
DEFAULT_LAKEHOUSE_DIR = ".lakehouse"

LANDING = "landing"
RAW = "raw/claims"
QUARANTINE = "quarantine/claims"
REJECTED = "rejected/claims"
FEATURES = "features/claims"
SCORES = "outputs/scores"
FEATURE_DRIFT = "monitoring/feature_drift"
SCORE_DRIFT = "monitoring/score_drift"
METRICS = "metrics/model_metrics"
METRICS_FILE = f"{METRICS}/part-0.parquet"
MODELS = "models"
CHAMPION_POINTER = f"{MODELS}/champion.json"
CHAMPION_HISTORY = f"{MODELS}/champion_history.json"
CANDIDATE_POINTER = f"{MODELS}/candidate.json"
DATA_DOCS = "quality/data_docs"

# The column naming each row's batch when batches are read together.
BATCH_COLUMN = "batch_id"
