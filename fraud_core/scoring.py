"""Online scoring: the champion bundle plus the claims history its history features look back on.

A :class:`ClaimScorer` is what the API holds in memory. It keeps only the raw-claim columns the
history features read, and indexes their row positions by policyholder and by provider once, so
scoring a request hands :func:`~fraud_core.features.build_features` just the earlier claims of
the request's own policyholders and providers (a few rows) instead of the whole history. The
window features partition by policyholder or by provider, so those rows are all they can see:
the result is the same as with the full history, which is what the pipeline uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# The history columns are defined next to the SQL that reads them: one list for both sides.
from fraud_core.features import _HISTORY_COLUMNS, build_features
from fraud_core.lakehouse import RAW, Lakehouse
from fraud_core.model.bundle import ModelBundle, load_champion
from fraud_core.schema import ID_COLUMN

log = logging.getLogger(__name__)

HISTORY_COLUMNS: tuple[str, ...] = tuple(_HISTORY_COLUMNS)
INVESTIGATE = "investigate"
FAST_TRACK = "fast_track"
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class _PositionIndex:
    """Row positions of the history per key, stored CSR-style (one sort, no per-key arrays)."""

    keys: pd.Index
    order: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, values: pd.Series) -> _PositionIndex:
        codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
        order = np.argsort(codes, kind="stable").astype(np.int64)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        skip = int((codes < 0).sum())  # nulls sort first; they never match a request
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64) + skip
        keys = pd.Index(uniques.astype(object))
        keys.get_indexer(keys[:1])  # build the hash table now, not in the first request
        return cls(keys, order, offsets)

    def positions(self, keys: pd.Series) -> np.ndarray:
        """Row positions of every history row whose key is one of ``keys``."""
        codes = self.keys.get_indexer(keys.astype(object).to_numpy())
        parts = [self.order[self.offsets[c] : self.offsets[c + 1]] for c in codes if c >= 0]
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
        self.history = self.history[list(HISTORY_COLUMNS)].reset_index(drop=True)
        self._by_policyholder = _PositionIndex.build(self.history["policyholder_id"])
        self._by_provider = _PositionIndex.build(self.history["provider_id"])

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
        """Earlier claims sharing a policyholder or provider with ``claims`` (history rows only)."""
        rows = np.concatenate(
            [
                self._by_policyholder.positions(claims["policyholder_id"]),
                self._by_provider.positions(claims["provider_id"]),
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
