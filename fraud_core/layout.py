"""The lakehouse layout: every dataset and file the project keeps under ``LAKEHOUSE_URI``.

This module is the one place a path is named; everything else imports it. Under the root::

    landing/                          arriving files (unless a separate LANDING_URI is used)
    raw/claims/                       validated rows, a batch per landed file
    quarantine/claims/                its rows that failed the contract, with their reasons
    rejected/claims/batch=ID/version=V/  a whole file the contract refused: rejection.json
                                      (why, and what to fix) next to the file as it arrived
    features/claims/                  model features
    outputs/scores/                   fraud score and decision per claim, with the model version
    monitoring/feature_drift/         drift of a batch's features against the champion's
    monitoring/score_drift/           training reference (and of its scores)
    metrics/model_metrics/            the aggregated metrics table
    lineage/batches/                  a row per batch: when it was first ingested, from which
                                      file with which feed contract, its counts
    history/claims/                   raw claims' window columns by claim month (claim_month=M/),
                                      folded from raw by maintenance: what history reads read
    history/claims_window.arrow       the look-back window of the history as maintenance left
                                      it, sorted by claim date (Arrow IPC, memory-mapped)
    models/VERSION/                   a model bundle: weights, manifest.json, drift reference
    models/champion.json              the champion pointer: {"version": ...}, replaced atomically
    models/champion_history.json      every promotion and rollback, oldest first
    models/candidate.json             the last trained candidate, waiting for the model gate
    quality/data_docs/                Great Expectations Data Docs, a page per validation

Every dataset of :data:`TABLES` is a Delta table (:mod:`fraud_core.delta`): a folder with its
transaction log ``_delta_log/``. The batch datasets are partitioned by ``batch_id`` (folders
``batch_id=ID/``): rerunning a batch replaces its partition in one commit, never appends twice.
The claims history is partitioned by claim month instead, so a look-back window reads a file
a month (:mod:`fraud_core.window`).
``infra/databricks/tables.sql`` registers them in Unity Catalog, generated from :data:`TABLES`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# Until `fraud lakehouse migrate`, the metrics table of a Parquet lakehouse was this one file.
LEGACY_METRICS_FILE = f"{METRICS}/part-0.parquet"
BATCH_LINEAGE = "lineage/batches"
CLAIMS_HISTORY = "history/claims"
# The claims history's look-back window as one Arrow IPC file, written by maintenance.
CLAIMS_WINDOW = "history/claims_window.arrow"
MODELS = "models"
CHAMPION_POINTER = f"{MODELS}/champion.json"
CHAMPION_HISTORY = f"{MODELS}/champion_history.json"
CANDIDATE_POINTER = f"{MODELS}/candidate.json"
DATA_DOCS = "quality/data_docs"

# The column naming each row's batch when batches are read together.
BATCH_COLUMN = "batch_id"
# The claims history's partition column: a claim's month, "YYYY-MM".
MONTH_COLUMN = "claim_month"
# The column a claim's windows look back on, and the one the per-file statistics of the claim
# tables keep (what reads prune on).
CLAIM_DATE = "claim_date"


@dataclass(frozen=True)
class Table:
    """One Delta table of the lakehouse.

    Attributes:
        name: its name in a catalog (Unity Catalog, ``infra/databricks/tables.sql``).
        path: its folder under the lakehouse root.
        by_batch: written a batch at a time (its rows, :data:`BATCH_COLUMN`, replaced in one
            commit); otherwise the whole table is replaced at each write.
        partition_column: the column whose values are the table's folders (None: none). The
            batch tables are partitioned by :data:`BATCH_COLUMN` (a folder per batch); a small
            table written a batch at a time (a row per batch) is not, so reading it whole
            reads a few files (one after ``fraud lakehouse maintain``), not one per batch.
        open_columns: rows as received (quarantine): a batch may bring columns the table has
            not seen, which are added to it; otherwise the table's columns are fixed and a
            write that differs is refused.
        history: read back as the claims history of later batches (only the rows a
            look-back window can see: its files carry per-file statistics on ``claim_date``).
        folded: derived from raw by ``fraud lakehouse maintain`` (the claims history), never
            written by the pipeline; a reader checks its rows against raw's files.
        stats_columns: the columns whose per-file min/max the log keeps (Delta's
            ``delta.dataSkippingStatsColumns``, set when the table is created); None: the
            first 32 columns; empty: none. A table with a file per batch keeps only what
            reads prune on: every open of a table parses every file's statistics, so fewer
            columns make a years-old table open several times faster. A table that declares
            them is written, on a local lakehouse, by pyarrow and a Delta transaction
            (:mod:`fraud_core.delta`).
        description: what a row is (the table's comment in a catalog).
    """

    name: str
    path: str
    by_batch: bool
    description: str
    open_columns: bool = False
    history: bool = False
    partition_column: str | None = BATCH_COLUMN
    folded: bool = False
    stats_columns: tuple[str, ...] | None = None

    @property
    def partitioned(self) -> bool:
        """A folder per batch (partitioned by :data:`BATCH_COLUMN`)."""
        return self.partition_column == BATCH_COLUMN


TABLES: tuple[Table, ...] = (
    Table(
        "raw_claims",
        RAW,
        True,
        "Validated claims, one partition per landed file",
        history=True,
        stats_columns=(CLAIM_DATE,),
    ),
    Table(
        "quarantined_claims",
        QUARANTINE,
        True,
        "Rows that failed the claims contract, as received, with their reasons",
        open_columns=True,
        stats_columns=(),
    ),
    Table(
        "claim_features", FEATURES, True, "Model features per claim", stats_columns=(CLAIM_DATE,)
    ),
    Table(
        "claim_scores",
        SCORES,
        True,
        "Fraud score and decision per claim, with model version",
        stats_columns=(CLAIM_DATE,),
    ),
    Table(
        "feature_drift",
        FEATURE_DRIFT,
        True,
        "Drift of a batch's features vs the champion",
        stats_columns=(),
    ),
    Table(
        "score_drift",
        SCORE_DRIFT,
        True,
        "Drift of a batch's scores vs the champion",
        stats_columns=(),
    ),
    Table(
        "model_metrics",
        METRICS,
        False,
        "Metrics per model version, batch and claim day",
        partition_column=None,
    ),
    Table(
        "batch_lineage",
        BATCH_LINEAGE,
        True,
        "Where each batch came from, and when",
        partition_column=None,
        stats_columns=(BATCH_COLUMN,),
    ),
    Table(
        "claims_history",
        CLAIMS_HISTORY,
        False,
        "Raw claims' window-feature columns by claim month, folded from raw_claims",
        partition_column=MONTH_COLUMN,
        folded=True,
        stats_columns=(CLAIM_DATE,),
    ),
)
TABLES_BY_PATH: dict[str, Table] = {t.path: t for t in TABLES}


def table(path: str) -> Table:
    """The table whose folder is ``path`` (one of :data:`TABLES`)."""
    try:
        return TABLES_BY_PATH[path]
    except KeyError:
        raise KeyError(
            f"{path!r} is not a table of the lakehouse layout (fraud_core.layout)"
        ) from None
