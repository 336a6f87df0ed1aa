"""Online scoring: the champion bundle plus the claims history its window features look back on.

A :class:`ClaimScorer` is what the API holds in memory: the bundle and a
:class:`~fraud_core.online.history.HistoryIndex` of the raw claims (only the columns the window
features read, indexed by policyholder and by provider once). Scoring a claims frame
(:meth:`ClaimScorer.score`) hands :func:`~fraud_core.features.build_features` only the history
rows its windows can see (usually a few hundred) instead of the whole history: the windows
partition by key and look back no further, so the features are those of the full history, as
the pipeline computes them.

The API's fast path, :meth:`ClaimScorer.score_records` (:meth:`ClaimScorer.score_one` for one
claim), uses no pandas and no DuckDB per request: the same declaration of the features is read
by compiled kernels (:mod:`fraud_core.online`) over the index, and the network runs without
torch, prepared once from the bundle (:class:`~fraud_core.model.fast.NumpyForward`: vectorised
numpy for batches, one compiled kernel for a single claim), which also gives each claim's
gradient x input attribution. ``tests/serving/test_fast_path.py`` proves the features equal
:func:`~fraud_core.features.build_features` (window edges, same-day claims, claims of one request
seeing each other, a claim already in the history) and the scores equal the bundle's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from fraud_core.claim_versions import latest_versions
from fraud_core.features import (
    CATEGORICAL_FEATURES,
    DATE,
    FEATURES,
    HISTORY_COLUMNS,
    build_features,
)
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import BATCH_COLUMN, RAW
from fraud_core.model.bundle import ModelBundle, load_champion
from fraud_core.model.fast import NumpyForward
from fraud_core.online.history import HistoryIndex
from fraud_core.pipeline import window_history
from fraud_core.schema import DECISION_COLUMN, ID_COLUMN, Decision
from fraud_core.window import window_since

log = logging.getLogger(__name__)


def _raw_snapshot(lakehouse: Lakehouse) -> tuple[frozenset[str], int | None]:
    """Raw's data files (paths in its log) and its version (None: no raw table yet)."""
    raw = lakehouse.delta_table(RAW)
    if raw is None:
        return frozenset(), None
    return frozenset(raw.file_uris()), raw.version()


class FeatureContribution(NamedTuple):
    """One input's share of a claim's score (gradient x input, in logit units)."""

    feature: str
    value: float | str
    contribution: float


@dataclass(frozen=True)
class RecordScores:
    """Scores of claims given as records, in input order (see :meth:`ClaimScorer.score_records`).

    Attributes:
        claim_ids: the claims' ids.
        fraud_score: calibrated fraud probability per claim (float64).
        investigate: True where the score is at or above the model's threshold.
        numeric: the numeric features per claim, columns in ``NUMERIC_FEATURES`` order.
        categories: the category values per claim, in ``CATEGORICAL_FEATURES`` order.
        contributions: gradient x input per claim and feature (``FEATURES`` order), in
            logit units; None unless asked for.
    """

    claim_ids: list[str]
    fraud_score: np.ndarray
    investigate: np.ndarray
    numeric: np.ndarray
    categories: list[list[str]]
    contributions: np.ndarray | None = None

    def top_features(self, i: int, k: int) -> list[FeatureContribution]:
        """The ``k`` inputs that move claim ``i``'s logit most (by absolute contribution)."""
        if self.contributions is None:
            raise ValueError("scored without explain=True: no contributions to rank")
        row = self.contributions[i]
        n_numeric = self.numeric.shape[1]
        out = []
        for j in np.argsort(-np.abs(row), kind="stable")[:k].tolist():
            value: float | str = (
                float(self.numeric[i, j]) if j < n_numeric else self.categories[i][j - n_numeric]
            )
            out.append(FeatureContribution(FEATURES[j], value, float(row[j])))
        return out


@dataclass(frozen=True)
class ScoredClaim:
    """One claim's score (see :meth:`ClaimScorer.score_one`)."""

    claim_id: str
    fraud_score: float
    investigate: bool
    top_features: list[FeatureContribution]


@dataclass
class ClaimScorer:
    """A champion bundle and the raw-claims history needed to compute its features.

    Attributes:
        bundle: the model.
        history: raw claims (at least :data:`~fraud_core.features.HISTORY_COLUMNS`, and
            ``batch_id`` for :meth:`updated`); kept as those columns, sorted by date.
        history_batches: the raw batches ``history`` was read from.
        history_files: raw's data files then (paths in its log): what :meth:`updated`
            compares with.
    """

    bundle: ModelBundle
    history: pd.DataFrame
    history_batches: list[str] = field(default_factory=list)
    history_files: frozenset[str] = frozenset()
    _row_batches: pd.Categorical | None = field(init=False, repr=False)
    _index: HistoryIndex = field(init=False, repr=False)
    _forward: NumpyForward = field(init=False, repr=False)
    _category_codes: tuple[dict[str, int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._row_batches = None
        if BATCH_COLUMN in self.history:  # the index sorts by date (stably): so do the batches
            self.history = self.history.sort_values(DATE, kind="stable").reset_index(drop=True)
            # codes: a text per row would cost ~60 bytes each (734,000 rows in a full window)
            self._row_batches = pd.Categorical(self.history[BATCH_COLUMN])
        self._index = HistoryIndex.build(self.history)
        self.history = self._index.frame
        if tuple(self.bundle.vocabulary.values) != CATEGORICAL_FEATURES:
            raise ValueError(
                f"bundle {self.bundle.version} encodes categories "
                f"{list(self.bundle.vocabulary.values)}, not {list(CATEGORICAL_FEATURES)}"
            )
        self._forward = NumpyForward.from_bundle(self.bundle)
        self._category_codes = tuple(
            {value: code + 1 for code, value in enumerate(self.bundle.vocabulary.values[col])}
            for col in CATEGORICAL_FEATURES
        )

    @property
    def version(self) -> str:
        """Version of the model bundle this scorer uses."""
        return self.bundle.version

    @classmethod
    def from_lakehouse(cls, lakehouse: Lakehouse, version: str | None = None) -> ClaimScorer:
        """Load a bundle (the champion unless ``version`` is given) and, as history, the raw
        claims within the look-back window before the latest claim (each claim's latest
        version once; only the raw table's files whose ``claim_date`` statistics reach the
        window are read, so the history held is flat in the lakehouse's age).

        Raises:
            BundleError: no champion, or the bundle is missing, corrupt or incompatible.
            LakehouseError: the raw table cannot be read.
        """
        bundle = (
            load_champion(lakehouse) if version is None else ModelBundle.load(lakehouse, version)
        )
        files, raw_version = _raw_snapshot(lakehouse)
        if raw_version is not None:  # the files and the rows of one version of raw
            lakehouse = lakehouse.pinned({**lakehouse.as_of, RAW: raw_version})
        batch_ids = lakehouse.batches(RAW)
        # Each claim once, in its latest version (fraud_core.claim_versions).
        history = window_history(lakehouse, HISTORY_COLUMNS, batches=True)
        if history.empty:
            log.warning("no raw claims in %s: history features start from zero", lakehouse.url(RAW))
        log.info(
            "scorer for model %s: %d history claims (the look-back window) of %d batch(es)",
            bundle.version,
            len(history),
            len(batch_ids),
        )
        return cls(bundle, history, list(batch_ids), files)

    def updated(self, lakehouse: Lakehouse) -> ClaimScorer | None:
        """This scorer for raw as it is now: itself when raw has not changed; a new scorer
        with the same model when batches were only added (their rows read and added, each
        claim's latest version kept, and the rows the window no longer reaches dropped: the
        history a fresh :meth:`from_lakehouse` would hold, without reading it again); None
        when a batch was replaced or removed (load anew).

        Raises:
            LakehouseError: the raw table cannot be read.
        """
        files, raw_version = _raw_snapshot(lakehouse)
        if files == self.history_files:
            return self
        if self._row_batches is None or not files >= self.history_files or raw_version is None:
            return None
        pinned = lakehouse.pinned({**lakehouse.as_of, RAW: raw_version})
        batch_ids = pinned.batches(RAW)
        new = sorted(set(batch_ids) - set(self.history_batches))
        if not new or set(self.history_batches) - set(batch_ids):
            return None  # files added to batches held already: a batch changed
        held = self.history.assign(**{BATCH_COLUMN: self._row_batches.astype(object)})
        added = pinned.read_batches(RAW, new, list(HISTORY_COLUMNS))[held.columns]
        every = pd.concat([held, added], ignore_index=True) if len(added) else held
        if every.empty:
            return ClaimScorer(self.bundle, every, batch_ids, files)
        # each claim's latest version first: a correction dated before the window still
        # replaces the version it corrects
        every = latest_versions(lakehouse, every)
        since = window_since(every[DATE].max())
        history = every[(every[DATE] >= since).to_numpy()].reset_index(drop=True)
        log.info(
            "scorer for model %s: %d batch(es) added to the history (%d rows read, %d held)",
            self.bundle.version,
            len(new),
            len(added),
            len(history),
        )
        return ClaimScorer(self.bundle, history, batch_ids, files)

    def history_for(self, claims: pd.DataFrame) -> pd.DataFrame:
        """History rows the features of ``claims`` can see: earlier claims of the same key within
        that key's longest window, the claim's own day included."""
        return self.history.iloc[self._index.rows_within(claims)]

    def score(self, claims: pd.DataFrame) -> pd.DataFrame:
        """Fraud score and decision per claim, in input order.

        Args:
            claims: validated claims with the dtypes of ``coerce_claims(...).frame``; claim ids
                must be unique.

        Returns:
            Columns ``claim_id``, ``fraud_score`` (calibrated probability), ``decision``
            (``"investigate"`` or ``"fast_track"``) and ``model_version``.
        """
        features = build_features(claims, self.history_for(claims))
        probability = self.bundle.predict_proba(features)
        return pd.DataFrame(
            {
                ID_COLUMN: features[ID_COLUMN].to_numpy(dtype=object),
                "fraud_score": probability.astype(np.float64),
                DECISION_COLUMN: Decision.labels(self.bundle.decide(probability)),
                "model_version": self.bundle.version,
            }
        )

    # --- the fast path: records in, no pandas ----------------------------------------------
    def score_records(
        self, records: Sequence[Mapping[str, Any]], explain: bool = False
    ) -> RecordScores:
        """Score validated claim records without pandas or DuckDB (the API's path).

        Same features and scores as :meth:`score` (to float rounding): the records of one call
        count as each other's history, like the claims of one pipeline batch.

        Args:
            records: claims with python values as the API's request model gives them (dates as
                ``datetime.date``, amounts as numbers, ``police_report`` as bool); claim ids
                must be unique.
            explain: also compute each claim's gradient x input contributions.
        """
        forward = self._forward
        if len(records) == 1:  # one claim: the compiled kernels, no array arithmetic in Python
            record = records[0]
            values, codes, categories = self._one_record_features(record)
            contributions = None
            if explain:
                logit, row = forward.explain_one(values, codes)
                contributions = row[None, :]
            else:
                logit = forward.logit_one(values, codes)
            p = forward.probability(logit)
            return RecordScores(
                claim_ids=[str(record[ID_COLUMN])],
                fraud_score=np.array([p]),
                investigate=np.array([p >= self.bundle.threshold]),
                numeric=values[None, :],
                categories=[categories],
                contributions=contributions,
            )
        numeric, code_array, category_lists = self.featurize_records(records)
        if explain:
            logits, contributions = forward.explain(numeric, code_array)
        else:
            logits, contributions = forward.logits(numeric, code_array), None
        probability = forward.probabilities(logits)
        return RecordScores(
            claim_ids=[str(r[ID_COLUMN]) for r in records],
            fraud_score=probability,
            investigate=probability >= self.bundle.threshold,
            numeric=numeric,
            categories=category_lists,
            contributions=contributions,
        )

    def score_one(self, record: Mapping[str, Any], top_k: int = 0) -> ScoredClaim:
        """:meth:`score_records` of one claim as Python values, with its ``top_k`` features:
        the API's per-request path. Every Python-level step costs here (inside the server a
        request's Python runs with cold caches), so it is two compiled calls: history windows
        and features, then the network, its attribution and the ranking of the
        contributions."""
        values, codes, categories = self._one_record_features(record)
        forward = self._forward
        top: list[FeatureContribution] = []
        if top_k:
            logit, contributions, ranked = forward.explain_top(values, codes, top_k)
            numbers = values.tolist()
            sizes = contributions.tolist()
            n_numeric = len(numbers)
            top = [
                FeatureContribution(
                    FEATURES[j],
                    numbers[j] if j < n_numeric else categories[j - n_numeric],
                    sizes[j],
                )
                for j in ranked.tolist()
            ]
        else:
            logit = forward.logit_one(values, codes)
        p = forward.probability(logit)
        return ScoredClaim(str(record[ID_COLUMN]), p, p >= self.bundle.threshold, top)

    def _one_record_features(
        self, record: Mapping[str, Any]
    ) -> tuple[np.ndarray, tuple[int, ...], list[str]]:
        """One claim scored alone: its numeric features (float64, ``NUMERIC_FEATURES`` order),
        category codes and values. Windows and features in one compiled call, unless the
        claim's id may be in the history (then the general path drops that row)."""
        values = self._index.one_claim(record)
        if not len(values):
            numeric, code_rows, category_rows = self.featurize_records([record])
            return numeric[0], tuple(code_rows[0].tolist()), category_rows[0]
        categories, codes = self._categories(record)
        return values, codes, categories

    def _categories(self, record: Mapping[str, Any]) -> tuple[list[str], tuple[int, ...]]:
        """A record's category values and their codes (0: unknown to the model)."""
        categories = [str(record[col]) for col in CATEGORICAL_FEATURES]
        codes = tuple(
            [lookup.get(v, 0) for lookup, v in zip(self._category_codes, categories, strict=True)]
        )
        return categories, codes

    def featurize_records(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """Model inputs of claim records: numeric features ``(n, f)`` float64 in
        ``NUMERIC_FEATURES`` order, category codes ``(n, c)`` and the category values.

        The windows are those of :func:`~fraud_core.features.build_features`: history rows
        whose claim id is one of ``records`` are ignored (the record replaces them), and the
        records see each other.
        """
        numeric = self._index.features(records)
        codes = np.empty((len(records), len(CATEGORICAL_FEATURES)), dtype=np.int64)
        categories: list[list[str]] = []
        for i, record in enumerate(records):
            values, codes[i] = self._categories(record)
            categories.append(values)
        return numeric, codes, categories
