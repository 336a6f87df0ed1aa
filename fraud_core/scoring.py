"""Online scoring: the champion bundle plus the claims history its history features look back on.

A :class:`ClaimScorer` is what the API holds in memory. It keeps only the raw-claim columns the
history features read, sorted by date, and indexes their row positions by policyholder and by
provider once. Scoring a request then hands :func:`~fraud_core.features.build_features` only the
history rows its windows can see: the same policyholder's claims of the last 365 days and the
same provider's of the last 90 days (usually a few hundred rows) instead of the whole history.
The window features partition by policyholder or provider and look back no further, so the
features are identical to those computed with the full history, as the pipeline does.

The API's fast path, :meth:`ClaimScorer.score_records` (:meth:`ClaimScorer.score_one` for one
claim), goes further: no pandas and no DuckDB per request. The same windows are read straight
from the index (binary searches per key, per-key running sums for the amounts and late
reports, in one compiled kernel), the claim's own columns are computed with plain floats, and
the network runs without torch, prepared once from the bundle
(:class:`~fraud_core.model.fast.NumpyForward`: vectorised numpy for batches, one compiled
kernel for a single claim), which also gives each claim's gradient x input attribution.
``tests/serving/test_fast_path.py`` proves the features equal
:func:`~fraud_core.features.build_features` (window edges, same-day claims, claims of one request
seeing each other, a claim already in the history) and the scores equal the bundle's.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numba
import numpy as np
import pandas as pd

# The history columns are defined next to the SQL that reads them: one list for both sides.
from fraud_core.features import (
    CATEGORICAL_FEATURES,
    HISTORY_COLUMNS,
    NUMERIC_FEATURES,
    POLICYHOLDER_LOOKBACK_DAYS,
    PROVIDER_LOOKBACK_DAYS,
    RECENT_DAYS,
    build_features,
)
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.model.bundle import ModelBundle, load_champion
from fraud_core.model.fast import NumpyForward
from fraud_core.schema import DECISION_COLUMN, ID_COLUMN, Decision

log = logging.getLogger(__name__)

_EMPTY = np.zeros(0, dtype=np.int64)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
LATE_REPORT_DAYS = 30  # the SQL's "report_delay_days > 30"
# The numeric features in the order score_records computes them: checked against the
# feature module at load, so a new feature fails loudly here instead of shifting columns.
FAST_NUMERIC_FEATURES: tuple[str, ...] = (
    "log_amount",
    "amount_to_limit",
    "deductible_to_amount",
    "days_since_policy_start",
    "report_delay_days",
    "police_report",
    "witnesses",
    "asset_age_years",
    "prior_claims",
    "ph_claims_30d",
    "ph_claims_365d",
    "ph_amount_30d_log",
    "prov_claims_90d",
    "prov_mean_log_amount_90d",
    "prov_late_report_rate_90d",
)
FEATURE_NAMES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
N_FAST_FEATURES = len(FAST_NUMERIC_FEATURES)


def _days(dates: pd.Series) -> np.ndarray:
    """Dates as int64 days since the epoch (NaT becomes the smallest int64)."""
    return dates.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").view(np.int64)


@dataclass(frozen=True)
class _PositionIndex:
    """History row positions per key, date-ordered within each key, stored CSR-style.

    One sort at load time and no per-key arrays: rows of key ``k`` (code ``c``) are
    ``order[offsets[c]:offsets[c + 1]]``, and ``days`` holds their dates in the same order
    (ascending, because the history is sorted by date), so a date window is two binary searches.
    """

    keys: pd.Index
    order: np.ndarray
    offsets: np.ndarray
    days: np.ndarray
    lookback_days: int
    # For the fast path: key -> code, the key code of every history row (history order), and
    # per-key running sums in index order (restarting at each key, so a window's sum is a
    # difference of two small numbers): ``cumulative[:, i]`` sums rows ``offsets[c]..i``.
    lookup: dict[str, int] = field(default_factory=dict)
    row_codes: np.ndarray = field(default_factory=lambda: _EMPTY)
    cumulative: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @classmethod
    def build(
        cls,
        values: pd.Series,
        days: np.ndarray,
        lookback_days: int,
        sums: Sequence[np.ndarray] = (),
    ) -> _PositionIndex:
        """Index ``values`` (one key per history row; the history must be sorted by date).

        ``sums`` are per-row values (history order) to keep per-key running sums of.
        """
        codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
        order = np.argsort(codes, kind="stable").astype(np.int64)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        skip = int((codes < 0).sum())  # nulls sort first; they never match a request
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64) + skip
        keys = pd.Index(uniques.astype(object))
        keys.get_indexer(keys[:1])  # build the hash table now, not in the first request
        lookup = {str(k): i for i, k in enumerate(keys)}
        sorted_codes = codes[order]
        cumulative = np.zeros((len(sums), len(order)), dtype=np.float64)
        for j, values_j in enumerate(sums):
            cumulative[j] = (
                pd.Series(np.asarray(values_j, dtype=np.float64)[order])
                .groupby(sorted_codes)
                .cumsum()
            )
        return cls(
            keys,
            order,
            offsets,
            days[order],
            lookback_days,
            lookup,
            np.asarray(codes, dtype=np.int64),
            cumulative,
        )

    def positions(self, keys: pd.Series, days: np.ndarray) -> np.ndarray:
        """Positions of the history rows with the same key dated within each claim's window."""
        codes = self.keys.get_indexer(keys.astype(object).to_numpy())
        parts = []
        for code, day in zip(codes, days, strict=True):
            if code < 0:
                continue
            lo, hi = self.offsets[code], self.offsets[code + 1]
            window = self.days[lo:hi]
            first = lo + np.searchsorted(window, day - self.lookback_days, side="left")
            last = lo + np.searchsorted(window, day, side="right")
            parts.append(self.order[first:last])
        return np.concatenate(parts) if parts else _EMPTY


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
        contributions: gradient x input per claim and feature (``FEATURE_NAMES`` order), in
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
            out.append(FeatureContribution(FEATURE_NAMES[j], value, float(row[j])))
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
    """A champion bundle and the raw-claims history needed to compute its features."""

    bundle: ModelBundle
    history: pd.DataFrame
    history_batches: list[str] = field(default_factory=list)
    _by_policyholder: _PositionIndex = field(init=False, repr=False)
    _by_provider: _PositionIndex = field(init=False, repr=False)
    _forward: NumpyForward = field(init=False, repr=False)
    _category_codes: tuple[dict[str, int], ...] = field(init=False, repr=False)
    _rows: dict[str, np.ndarray] = field(init=False, repr=False)
    _id_hashes: np.ndarray = field(init=False, repr=False)
    _id_hash_order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        missing = [c for c in HISTORY_COLUMNS if c not in self.history.columns]
        if missing:
            raise ValueError(f"claims history lacks column(s) {', '.join(missing)}")
        if NUMERIC_FEATURES != FAST_NUMERIC_FEATURES:
            raise ValueError(
                "fraud_core.features.NUMERIC_FEATURES changed: update ClaimScorer.score_records "
                "(FAST_NUMERIC_FEATURES) to compute the same features"
            )
        history = self.history[list(HISTORY_COLUMNS)]
        self.history = history.sort_values("claim_date", kind="stable").reset_index(drop=True)
        days = _days(self.history["claim_date"])
        amount = self.history["claimed_amount"].to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(amount).any():
            raise ValueError(
                f"claims history has {int(np.isnan(amount).sum())} row(s) without a "
                "claimed_amount: raw claims must be validated (required column)"
            )
        delay = self.history["report_delay_days"].to_numpy(dtype=np.float64, na_value=np.nan)
        late = (delay > LATE_REPORT_DAYS).astype(np.float64)
        log_amount = np.log1p(amount)
        self._by_policyholder = _PositionIndex.build(
            self.history["policyholder_id"], days, POLICYHOLDER_LOOKBACK_DAYS, sums=[amount]
        )
        self._by_provider = _PositionIndex.build(
            self.history["provider_id"], days, PROVIDER_LOOKBACK_DAYS, sums=[log_amount, late]
        )
        self._rows = {"day": days, "amount": amount, "log_amount": log_amount, "late": late}
        # Claim ids as 64-bit hashes (this process's str hash), sorted: a request's claim that
        # is already in the history is found with one binary search, then compared as text.
        hashes = np.fromiter(
            map(hash, self.history["claim_id"].astype(str).tolist()),
            dtype=np.int64,
            count=len(self.history),
        )
        self._id_hash_order = np.argsort(hashes, kind="stable")
        self._id_hashes = hashes[self._id_hash_order]
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
        """Load a bundle (the champion unless ``version`` is given) and all raw claims as history.

        Raises:
            BundleError: no champion, or the bundle is missing, corrupt or incompatible.
            LakehouseError: a raw batch cannot be read.
        """
        bundle = (
            load_champion(lakehouse) if version is None else ModelBundle.load(lakehouse, version)
        )
        batch_ids = lakehouse.batches(RAW)
        if batch_ids:
            frames = [lakehouse.read_batch(RAW, b)[list(HISTORY_COLUMNS)] for b in batch_ids]
            history = pd.concat(frames, ignore_index=True)
        else:
            log.warning("no raw claims in %s: history features start from zero", lakehouse.url(RAW))
            history = pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})
        log.info(
            "scorer for model %s: %d history claims from %d batch(es)",
            bundle.version,
            len(history),
            len(batch_ids),
        )
        return cls(bundle=bundle, history=history, history_batches=list(batch_ids))

    def history_for(self, claims: pd.DataFrame) -> pd.DataFrame:
        """History rows the features of ``claims`` can see: earlier claims of the same
        policyholder (365 days back) or provider (90 days back), the claim's own day included."""
        days = _days(claims["claim_date"])
        rows = np.concatenate(
            [
                self._by_policyholder.positions(claims["policyholder_id"], days),
                self._by_provider.positions(claims["provider_id"], days),
            ]
        )
        return self.history.iloc[np.unique(rows)]

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
        request's Python runs with cold caches, ~2x slower than in a loop), so it is two
        compiled calls: history windows + features, then the network, its attribution and
        the ranking of the contributions."""
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
                    FEATURE_NAMES[j],
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
    ) -> tuple[np.ndarray, list[int], list[str]]:
        """One claim scored alone: its numeric features (float64, ``FAST_NUMERIC_FEATURES``
        order), category codes and values. Windows and features in one compiled call, unless
        the claim's id is already in the history (then the general path drops that row)."""
        if self._in_history(str(record[ID_COLUMN])):
            values, codes, categories = self._record_features(
                record, self._history_stats([record])[0]
            )
            return values, codes, categories
        ph_index, prov_index = self._by_policyholder, self._by_provider
        ph_cum, prov_cum = ph_index.cumulative, prov_index.cumulative
        values = _one_claim_features(
            ph_index.offsets,
            ph_index.days,
            ph_cum[0],
            prov_index.offsets,
            prov_index.days,
            prov_cum[0],
            prov_cum[1],
            ph_index.lookup.get(record["policyholder_id"], -1),
            prov_index.lookup.get(record["provider_id"], -1),
            record["claim_date"].toordinal() - _EPOCH_ORDINAL,
            *_record_fields(record),
        )
        categories = [str(record[col]) for col in CATEGORICAL_FEATURES]
        codes = [
            lookup.get(v, 0) for lookup, v in zip(self._category_codes, categories, strict=True)
        ]
        return values, codes, categories

    def _in_history(self, claim_id: str) -> bool:
        """Whether a history row may carry this claim id (a hash match: confirmed later)."""
        return bool(len(self._id_hashes)) and _sorted_contains(self._id_hashes, hash(claim_id))

    def featurize_records(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """Model inputs of claim records: numeric features ``(n, f)`` float64 in
        ``NUMERIC_FEATURES`` order, category codes ``(n, c)`` and the category values.

        The history windows are the SQL's in :mod:`fraud_core.features`: per policyholder, the
        claims of the last 30 and 365 days; per provider, of the last 90 days; the claim's own
        day included, the claim itself not. History rows whose claim id is one of ``records``
        are ignored (the record replaces them), and the records see each other.
        """
        n = len(records)
        numeric = np.empty((n, len(FAST_NUMERIC_FEATURES)), dtype=np.float64)
        codes = np.empty((n, len(CATEGORICAL_FEATURES)), dtype=np.int64)
        categories: list[list[str]] = []
        for i, (record, row) in enumerate(zip(records, self._history_stats(records), strict=True)):
            numeric[i], codes[i], values = self._record_features(record, row, numeric[i])
            categories.append(values)
        return numeric, codes, categories

    def _history_stats(self, records: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """Per record: ``[ph code, prov code, ph 30d count, ph 365d count, ph 30d amount,
        prov 90d count, prov 90d sum of log1p(amount), prov 90d late reports]`` over the others
        (history and the other records)."""
        ph_index, prov_index = self._by_policyholder, self._by_provider
        days = [r["claim_date"].toordinal() - _EPOCH_ORDINAL for r in records]
        ph_cum, prov_cum = ph_index.cumulative, prov_index.cumulative
        stats: list[list[Any]] = []
        for record, day in zip(records, days, strict=True):
            ph = ph_index.lookup.get(record["policyholder_id"], -1)
            prov = prov_index.lookup.get(record["provider_id"], -1)
            stats.append(
                [
                    ph,
                    prov,
                    *_window_stats(
                        ph_index.offsets,
                        ph_index.days,
                        ph_cum[0],
                        prov_index.offsets,
                        prov_index.days,
                        prov_cum[0],
                        prov_cum[1],
                        ph,
                        prov,
                        day,
                    ),
                ]
            )
        self._drop_replaced_history(records, days, stats)
        if len(records) > 1:
            self._add_request_neighbours(records, days, stats)
        return stats

    def _record_features(
        self, record: Mapping[str, Any], row: list[Any], out: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[int], list[str]]:
        """One record's numeric features (``FAST_NUMERIC_FEATURES`` order, written to ``out``
        when given), category codes and category values, from its history statistics
        ``row``."""
        if out is None:
            out = np.empty(len(FAST_NUMERIC_FEATURES), dtype=np.float64)
        _claim_features(out, *map(float, row[2:8]), *_record_fields(record))
        categories = [str(record[col]) for col in CATEGORICAL_FEATURES]
        codes = [
            lookup.get(v, 0) for lookup, v in zip(self._category_codes, categories, strict=True)
        ]
        return out, codes, categories

    def _drop_replaced_history(
        self, records: Sequence[Mapping[str, Any]], days: list[int], stats: list[list[Any]]
    ) -> None:
        """Take out of the windows the history rows that share a claim id with a record."""
        if not len(self._id_hashes):
            return
        if len(records) == 1 and not self._in_history(str(records[0][ID_COLUMN])):
            return  # the common case, without array calls
        ids = [str(r[ID_COLUMN]) for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError("claim ids must be unique within the claims to featurize")
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        found = np.searchsorted(self._id_hashes, hashes)
        hits = np.flatnonzero(
            self._id_hashes[np.minimum(found, len(self._id_hashes) - 1)] == hashes
        )
        if not len(hits):
            return
        wanted = {ids[i] for i in hits.tolist()}
        replaced: list[int] = []
        for i in hits.tolist():
            k = int(found[i])
            while k < len(self._id_hashes) and self._id_hashes[k] == hashes[i]:
                position = int(self._id_hash_order[k])
                if str(self.history["claim_id"].iat[position]) in wanted:
                    replaced.append(position)
                k += 1
        rows = self._rows
        for position in replaced:
            day = int(rows["day"][position])
            ph = int(self._by_policyholder.row_codes[position])
            prov = int(self._by_provider.row_codes[position])
            for row, target_day in zip(stats, days, strict=True):
                age = target_day - day  # days from the replaced row to the record
                if ph >= 0 and row[0] == ph and 0 <= age <= POLICYHOLDER_LOOKBACK_DAYS:
                    row[3] -= 1
                    if age <= RECENT_DAYS:
                        row[2] -= 1
                        row[4] -= float(rows["amount"][position])
                if prov >= 0 and row[1] == prov and 0 <= age <= PROVIDER_LOOKBACK_DAYS:
                    row[5] -= 1
                    row[6] -= float(rows["log_amount"][position])
                    row[7] -= float(rows["late"][position])

    @staticmethod
    def _add_request_neighbours(
        records: Sequence[Mapping[str, Any]], days: list[int], stats: list[list[Any]]
    ) -> None:
        """Count the records of the same policyholder / provider inside each record's windows."""
        amounts = [float(r["claimed_amount"]) for r in records]
        for key in ("policyholder_id", "provider_id"):
            groups: dict[str, list[int]] = {}
            for i, record in enumerate(records):
                groups.setdefault(str(record[key]), []).append(i)
            for members in groups.values():
                if len(members) < 2:
                    continue
                day = np.array([days[i] for i in members], dtype=np.int64)
                amount = np.array([amounts[i] for i in members], dtype=np.float64)
                if key == "policyholder_id":
                    in30, amount30 = _neighbours(day, RECENT_DAYS, [amount])
                    in365, _ = _neighbours(day, POLICYHOLDER_LOOKBACK_DAYS, [])
                    for m, i in enumerate(members):
                        stats[i][2] += int(in30[m])
                        stats[i][3] += int(in365[m])
                        stats[i][4] += float(amount30[0][m])
                else:
                    delay = np.array([int(records[i]["report_delay_days"]) for i in members])
                    late = (delay > LATE_REPORT_DAYS).astype(np.float64)
                    in90, (logs, lates) = _neighbours(
                        day, PROVIDER_LOOKBACK_DAYS, [np.log1p(amount), late]
                    )
                    for m, i in enumerate(members):
                        stats[i][5] += int(in90[m])
                        stats[i][6] += float(logs[m])
                        stats[i][7] += float(lates[m])


def _window_stats_python(  # pragma: no cover - compiled; tested against build_features
    ph_offsets: np.ndarray,
    ph_days: np.ndarray,
    ph_amount: np.ndarray,
    prov_offsets: np.ndarray,
    prov_days: np.ndarray,
    prov_log_amount: np.ndarray,
    prov_late: np.ndarray,
    ph: int,
    prov: int,
    day: int,
) -> tuple[int, int, float, int, float, float]:
    """One claim's history windows from the two indexes (-1: key not in the history):
    ``(ph 30d count, ph 365d count, ph 30d amount, prov 90d count, prov 90d sum of
    log1p(amount), prov 90d late reports)``; sums from the per-key running sums."""
    n30 = n365 = n90 = 0
    amount30 = log90 = late90 = 0.0
    if ph >= 0:
        lo, hi = ph_offsets[ph], ph_offsets[ph + 1]
        segment = ph_days[lo:hi]
        stop = lo + np.searchsorted(segment, day + 1)
        start365 = lo + np.searchsorted(segment, day - POLICYHOLDER_LOOKBACK_DAYS)
        start30 = lo + np.searchsorted(segment, day - RECENT_DAYS)
        n30, n365 = stop - start30, stop - start365
        if stop > start30:
            amount30 = ph_amount[stop - 1] - (ph_amount[start30 - 1] if start30 > lo else 0.0)
    if prov >= 0:
        lo, hi = prov_offsets[prov], prov_offsets[prov + 1]
        segment = prov_days[lo:hi]
        stop = lo + np.searchsorted(segment, day + 1)
        start = lo + np.searchsorted(segment, day - PROVIDER_LOOKBACK_DAYS)
        n90 = stop - start
        if stop > start:
            log90 = prov_log_amount[stop - 1] - (prov_log_amount[start - 1] if start > lo else 0.0)
            late90 = prov_late[stop - 1] - (prov_late[start - 1] if start > lo else 0.0)
    return n30, n365, amount30, n90, log90, late90


# Compiled on first use (then cached by numba): a dozen numpy calls per claim otherwise.
_window_stats: Callable[..., tuple[int, int, float, int, float, float]] = numba.njit(
    cache=True, nogil=True
)(_window_stats_python)


def _record_fields(
    record: Mapping[str, Any],
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """The claim's own inputs to :func:`_claim_features`, as floats (one compiled signature)."""
    return (
        float(record["claimed_amount"]),
        float(record["coverage_limit"]),
        float(record["deductible"]),
        float(record["claim_date"].toordinal() - record["policy_start_date"].toordinal()),
        float(record["report_delay_days"]),
        float(record["police_report"]),
        float(record["witnesses"]),
        float(record["asset_age_years"]),
        float(record["prior_claims"]),
    )


def _claim_features_python(  # pragma: no cover - compiled; tested against build_features
    out: np.ndarray,
    n30: float,
    n365: float,
    amount30: float,
    n90: float,
    log90: float,
    late90: float,
    amount: float,
    coverage_limit: float,
    deductible: float,
    policy_days: float,
    delay: float,
    police_report: float,
    witnesses: float,
    asset_age_years: float,
    prior_claims: float,
) -> None:
    """Write one claim's ``FAST_NUMERIC_FEATURES`` to ``out``: its own columns, and its history
    windows ``(ph 30d count, ph 365d count, ph 30d amount, prov 90d count, prov 90d sum of
    log1p(amount), prov 90d late reports)`` over the other claims (the SQL's definitions in
    :mod:`fraud_core.features`; the provider windows include the claim itself)."""
    log_amount = math.log1p(amount)
    with_self = n90 + 1.0
    out[0] = log_amount
    out[1] = amount / coverage_limit
    out[2] = deductible / amount
    out[3] = policy_days
    out[4] = delay
    out[5] = police_report
    out[6] = witnesses
    out[7] = asset_age_years
    out[8] = prior_claims
    out[9] = n30
    out[10] = n365
    out[11] = math.log1p(max(amount30, 0.0))
    out[12] = n90
    out[13] = (log90 + log_amount) / with_self
    out[14] = (late90 + (1.0 if delay > LATE_REPORT_DAYS else 0.0)) / with_self


_claim_features: Callable[..., None] = numba.njit(cache=True, nogil=True)(_claim_features_python)


def _one_claim_features_python(  # pragma: no cover - compiled; tested against build_features
    ph_offsets: np.ndarray,
    ph_days: np.ndarray,
    ph_amount: np.ndarray,
    prov_offsets: np.ndarray,
    prov_days: np.ndarray,
    prov_log_amount: np.ndarray,
    prov_late: np.ndarray,
    ph: int,
    prov: int,
    day: int,
    amount: float,
    coverage_limit: float,
    deductible: float,
    policy_days: float,
    delay: float,
    police_report: float,
    witnesses: float,
    asset_age_years: float,
    prior_claims: float,
) -> np.ndarray:
    """:func:`_window_stats` then :func:`_claim_features` of a claim scored alone whose id is
    not in the history: its ``FAST_NUMERIC_FEATURES`` (float64)."""
    n30, n365, amount30, n90, log90, late90 = _window_stats(
        ph_offsets,
        ph_days,
        ph_amount,
        prov_offsets,
        prov_days,
        prov_log_amount,
        prov_late,
        ph,
        prov,
        day,
    )
    out = np.empty(N_FAST_FEATURES, np.float64)
    _claim_features(
        out,
        float(n30),
        float(n365),
        amount30,
        float(n90),
        log90,
        late90,
        amount,
        coverage_limit,
        deductible,
        policy_days,
        delay,
        police_report,
        witnesses,
        asset_age_years,
        prior_claims,
    )
    return out


# Same file as the kernels it calls: numba's cache is invalidated when this file changes.
_one_claim_features: Callable[..., np.ndarray] = numba.njit(cache=True, nogil=True)(
    _one_claim_features_python
)


@numba.njit(cache=True, nogil=True)
def _sorted_contains(values: np.ndarray, value: int) -> bool:  # pragma: no cover - compiled
    """Whether the sorted int64 array ``values`` holds ``value`` (one binary search)."""
    k = np.searchsorted(values, value)
    return k < values.shape[0] and values[k] == value


def _neighbours(
    days: np.ndarray, lookback: int, values: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """For each of a group's records: how many others fall in its ``[day - lookback, day]``
    window, and the sums of ``values`` over them (others only; 0 when there are none)."""
    order = np.argsort(days, kind="stable")
    sorted_days = days[order]
    first = np.searchsorted(sorted_days, days - lookback)
    last = np.searchsorted(sorted_days, days + 1)  # same-day records count
    count = last - first - 1
    sums = []
    for v in values:
        running = np.concatenate(([0.0], np.cumsum(v[order])))
        sums.append(np.where(count > 0, running[last] - running[first] - v, 0.0))
    return count, sums
