"""Online scoring: the champion bundle plus the claims history its history features look back on.

A :class:`ClaimScorer` is what the API holds in memory. It keeps only the raw-claim columns the
history features read, sorted by date, and indexes their row positions by policyholder and by
provider once. Scoring a request then hands :func:`~fraud_core.features.build_features` only the
history rows its windows can see: the same policyholder's claims of the last 365 days and the
same provider's of the last 90 days (usually a few hundred rows) instead of the whole history.
The window features partition by policyholder or provider and look back no further, so the
features are identical to those computed with the full history, as the pipeline does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# The history columns are defined next to the SQL that reads them: one list for both sides.
from fraud_core.features import (
    HISTORY_COLUMNS,
    POLICYHOLDER_LOOKBACK_DAYS,
    PROVIDER_LOOKBACK_DAYS,
    build_features,
)
from fraud_core.lakehouse import RAW, Lakehouse
from fraud_core.model.bundle import ModelBundle, load_champion
from fraud_core.schema import ID_COLUMN

log = logging.getLogger(__name__)

INVESTIGATE = "investigate"
FAST_TRACK = "fast_track"
_EMPTY = np.zeros(0, dtype=np.int64)


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

    @classmethod
    def build(cls, values: pd.Series, days: np.ndarray, lookback_days: int) -> _PositionIndex:
        """Index ``values`` (one key per history row; the history must be sorted by date)."""
        codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
        order = np.argsort(codes, kind="stable").astype(np.int64)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        skip = int((codes < 0).sum())  # nulls sort first; they never match a request
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64) + skip
        keys = pd.Index(uniques.astype(object))
        keys.get_indexer(keys[:1])  # build the hash table now, not in the first request
        return cls(keys, order, offsets, days[order], lookback_days)

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


@dataclass
class ClaimScorer:
    """A champion bundle and the raw-claims history needed to compute its features."""

    bundle: ModelBundle
    history: pd.DataFrame
    _by_policyholder: _PositionIndex = field(init=False, repr=False)
    _by_provider: _PositionIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        missing = [c for c in HISTORY_COLUMNS if c not in self.history.columns]
        if missing:
            raise ValueError(f"claims history lacks column(s) {', '.join(missing)}")
        history = self.history[list(HISTORY_COLUMNS)]
        self.history = history.sort_values("claim_date", kind="stable").reset_index(drop=True)
        days = _days(self.history["claim_date"])
        self._by_policyholder = _PositionIndex.build(
            self.history["policyholder_id"], days, POLICYHOLDER_LOOKBACK_DAYS
        )
        self._by_provider = _PositionIndex.build(
            self.history["provider_id"], days, PROVIDER_LOOKBACK_DAYS
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
        return cls(bundle=bundle, history=history)

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
                "decision": np.where(self.bundle.decide(probability), INVESTIGATE, FAST_TRACK),
                "model_version": self.bundle.version,
            }
        )
