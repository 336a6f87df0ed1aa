"""The claims history indexed by key, for the window features of claims given as records.

:class:`HistoryIndex` keeps only the columns the window features read
(:data:`~fraud_core.features.HISTORY_COLUMNS`), sorted by date, and indexes their rows by each
key column (policyholder, provider) once: per key, its rows in date order, stored CSR-style,
with running sums of the values summed in windows. A window is then two binary searches and a
sum a difference of two running sums (:mod:`fraud_core.online.kernels`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_core.features import DATE, claim_values
from fraud_core.online import kernels
from fraud_core.online.plan import PLAN, Plan
from fraud_core.schema import ID_COLUMN

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


class WindowTotals(NamedTuple):
    """Claims' windows over the other claims, per feature column: ``counts[i, j]`` claims in
    the window of feature ``j`` of claim ``i``, ``sums[i, j]`` the value it sums over them
    (both 0 for a claim value)."""

    counts: np.ndarray
    sums: np.ndarray


def _ordinals(dates: pd.Series) -> np.ndarray:
    """Dates as int64 day ordinals, as ``datetime.date.toordinal`` (NaT: before any date)."""
    days = dates.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").view(np.int64)
    return days + _EPOCH_ORDINAL


def _summed_values(frame: pd.DataFrame, plan: Plan) -> np.ndarray:
    """The value each running sum of ``plan.cumulative`` sums, in every row ``(C, n)``."""
    values = claim_values(frame, plan.summed())
    out = np.zeros((len(plan.cumulative), len(frame)), np.float64)
    for c, value in enumerate(plan.summed()):
        out[c] = values[value.name].to_numpy(np.float64)
        gaps = int(np.isnan(out[c]).sum())
        if gaps:
            raise ValueError(
                f"claims history has {gaps} row(s) without a {value.name}: raw claims must be "
                "validated (required column)"
            )
    return out


def _id_hashes(ids: pd.Series, chunk: int = 1 << 16) -> np.ndarray:
    """Python's ``hash`` of each claim id as text (what a request's id is looked up by), a
    chunk at a time: the ids as Python strings at once would cost ~75 bytes each at peak."""
    out = np.empty(len(ids), np.int64)
    for first in range(0, len(ids), chunk):
        texts = ids.iloc[first : first + chunk].astype(str).tolist()
        out[first : first + len(texts)] = np.fromiter(map(hash, texts), np.int64, len(texts))
    return out


def _stack(rows: list[np.ndarray], n: int, dtype: type) -> np.ndarray:
    """``rows`` of length ``n`` as one C-contiguous ``(len(rows), n)`` array."""
    return np.array(rows, dtype).reshape(len(rows), n)


class _Groups(NamedTuple):
    """The history rows of one key column, grouped by key (see :class:`HistoryIndex`)."""

    order: np.ndarray  # rows by group, then date; null keys first
    offsets: np.ndarray  # group base + k holds order[offsets[k]:offsets[k + 1]]
    row_groups: np.ndarray  # every row's group (-1: null key)
    lookup: dict[str, int]  # key -> group

    @classmethod
    def of(cls, keys: pd.Series, base: int) -> _Groups:
        """Group rows by ``keys`` (rows in date order); groups are numbered from ``base``."""
        # Arrow's dictionary encoding: half the time of pandas' factorize on Arrow strings
        column = pa.Table.from_pandas(keys.to_frame(), preserve_index=False).column(0)
        # one chunk (the window snapshot's, mapped) is encoded in place, not copied first
        chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        encoded = chunk.dictionary_encode()
        pa.default_memory_pool().release_unused()  # the encoder's hash table, ~40 B a row
        codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
        uniques = encoded.dictionary.to_pylist()
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        skip = int((codes < 0).sum())  # nulls sort first; they never match a request
        return cls(
            order=kernels.group_order(codes, len(uniques)),
            offsets=(np.r_[0, np.cumsum(counts)] + skip).astype(np.int64),
            row_groups=np.where(codes >= 0, codes + base, -1).astype(np.int64),
            # built from a list at once: iterating an Arrow-backed array costs ~3x as much
            lookup=dict(zip(map(str, uniques), range(base, base + len(uniques)), strict=True)),
        )


@dataclass(frozen=True)
class HistoryIndex:
    """Earlier claims, indexed for the windows of a plan, and the features of claim records.

    Attributes:
        plan: the features (:data:`~fraud_core.online.plan.PLAN`: the model's).
        frame: the history's columns the window features read, sorted by date.
        lookup: per key column (``plan.entities`` order), its name and key -> group (the groups
            of all key columns are numbered on, one column after the other).
        order: per key column, the history rows (``frame`` positions) by group, then date
            ``(E, n)``; rows with a null key first, in no group.
        row_groups: per key column, the group of every row of ``frame`` (-1: null key).
        row_days: the date of every row of ``frame`` (day ordinal).
        row_values: per running sum (``plan.cumulative``), its value in every row of ``frame``.
        arrays: what the kernels read: the plan's arrays, the offsets, dates and running sums.
        id_hash_order: the ``frame`` row of each of ``arrays.id_hashes``.
        claim_ids: ``frame``'s claim ids.
    """

    plan: Plan
    frame: pd.DataFrame
    lookup: tuple[tuple[str, dict[str, int]], ...]
    order: np.ndarray
    row_groups: np.ndarray
    row_days: np.ndarray
    row_values: np.ndarray
    arrays: kernels.FeatureArrays
    id_hash_order: np.ndarray
    claim_ids: pd.Series

    @classmethod
    def build(cls, history: pd.DataFrame, plan: Plan = PLAN) -> HistoryIndex:
        """Index ``history`` (raw claims with at least the columns of ``plan.history``).

        Raises:
            ValueError: a column is missing, or a value summed in a window is (the claims
                were not validated).
        """
        missing = [c for c in plan.history if c not in history.columns]
        if missing:
            raise ValueError(f"claims history lacks column(s) {', '.join(missing)}")
        frame = history[list(plan.history)]
        if frame[DATE].is_monotonic_increasing:  # as the window snapshot and the scorer hold it
            frame = frame.reset_index(drop=True)
        else:
            frame = frame.sort_values(DATE, kind="stable").reset_index(drop=True)
        days = _ordinals(frame[DATE])
        summed = _summed_values(frame, plan)
        groups: list[_Groups] = []
        for entity in plan.entities:
            groups.append(_Groups.of(frame[entity], base=sum(len(g.offsets) for g in groups)))
        cumulative = []  # running sums per group, in the key column's row order
        for c, (e, _) in enumerate(plan.cumulative):
            order = groups[e].order
            by_group = pd.Series(summed[c][order]).groupby(groups[e].row_groups[order])
            cumulative.append(by_group.cumsum().to_numpy(np.float64))
        hashes = _id_hashes(frame[ID_COLUMN])
        id_hash_order = np.argsort(hashes)  # equal hashes are all compared (_replaced)
        n = len(frame)
        return cls(
            plan=plan,
            frame=frame,
            lookup=tuple((e, g.lookup) for e, g in zip(plan.entities, groups, strict=True)),
            order=_stack([g.order for g in groups], n, np.int64),
            row_groups=_stack([g.row_groups for g in groups], n, np.int64),
            row_days=days,
            row_values=summed,
            arrays=plan.arrays(
                np.concatenate([np.zeros(0, np.int64), *(g.offsets for g in groups)]),
                _stack([days[g.order] for g in groups], n, np.int64),
                _stack(cumulative, n, np.float64),
                hashes[id_hash_order],
            ),
            id_hash_order=id_hash_order,
            claim_ids=frame[ID_COLUMN],
        )

    def rows_within(self, claims: pd.DataFrame) -> np.ndarray:
        """Positions in :attr:`frame` of the rows some window of ``claims`` can see: the same
        key's rows within its longest window, the claim's own day included (sorted)."""
        days = _ordinals(claims[DATE])
        offsets, sorted_days = self.arrays.offsets, self.arrays.days
        parts = []
        for e, entity in enumerate(self.plan.entities):
            lookback = self.plan.lookback(e)
            _, lookup = self.lookup[e]
            for key, day in zip(claims[entity].tolist(), days, strict=True):
                group = lookup.get(key, -1)
                if group < 0:
                    continue
                lo, hi = offsets[group], offsets[group + 1]
                window = sorted_days[e, lo:hi]
                first = lo + np.searchsorted(window, day - lookback, side="left")
                last = lo + np.searchsorted(window, day, side="right")
                parts.append(self.order[e, first:last])
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def groups(self, record: Mapping[str, Any]) -> tuple[int, ...]:
        """A record's group per key column (-1: the key is not in the history)."""
        return tuple([lookup.get(record[entity], -1) for entity, lookup in self.lookup])

    def may_hold(self, claim_id: str) -> bool:
        """Whether a history row may carry this claim id (a hash match: confirm by text)."""
        return bool(kernels.sorted_contains(self.arrays.id_hashes, hash(claim_id)))

    def one_claim(self, record: Mapping[str, Any]) -> np.ndarray:
        """The numeric features of one claim scored alone (float64 ``(F,)``, in the plan's
        order) in one compiled call; empty when a history row may carry its id (then
        :meth:`features` leaves that row out)."""
        return kernels.one_claim_features(
            hash(str(record[ID_COLUMN])),
            self.plan.record_inputs(record),
            self.groups(record),
            *self.arrays,
        )

    def features(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The numeric features ``(n, F)`` of claim records (float64, in the plan's order).

        The windows are those of :func:`~fraud_core.features.build_features`: history rows
        whose claim id is one of ``records`` are left out (the record replaces them), and the
        records see each other, like the claims of one batch.

        Raises:
            ValueError: two records share a claim id.
        """
        inputs = np.array([self.plan.record_inputs(r) for r in records], np.float64)
        inputs = inputs.reshape(len(records), len(self.plan.inputs))
        registers = kernels.claim_registers(inputs, *self.arrays)
        totals = self.window_totals(records, registers)
        return kernels.claim_features(registers, *totals, *self.arrays)

    def window_totals(
        self, records: Sequence[Mapping[str, Any]], registers: np.ndarray
    ) -> WindowTotals:
        """The windows of ``records`` over the history and each other.

        History rows whose claim id is one of ``records`` are left out (the record replaces
        them), and the records count in each other's windows, like the claims of one batch.

        Args:
            records: validated claims; ids must be unique.
            registers: their registers ``(n, R)`` (:func:`kernels.claim_registers`).
        """
        groups = np.array([self.groups(r) for r in records], np.int64)
        groups = groups.reshape(len(records), len(self.plan.entities))
        totals = WindowTotals(*kernels.windows(groups, registers, *self.arrays))
        replaced = self._replaced(records)
        if len(replaced):
            kernels.drop_rows(
                replaced,
                groups,
                registers,
                *totals,
                self.row_groups,
                self.row_days,
                self.row_values,
                *self.arrays,
            )
        if len(records) > 1:
            _add_each_other(self.plan, records, registers, totals)
        return totals

    def _replaced(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The history rows that share a claim id with a record (the record replaces them)."""
        id_hashes = self.arrays.id_hashes
        if not len(id_hashes) or (
            len(records) == 1 and not self.may_hold(str(records[0][ID_COLUMN]))
        ):
            return np.zeros(0, np.int64)  # the common cases, without array calls
        ids = [str(r[ID_COLUMN]) for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError("claim ids must be unique within the claims to featurize")
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        found = np.searchsorted(id_hashes, hashes)
        hits = np.flatnonzero(id_hashes[np.minimum(found, len(id_hashes) - 1)] == hashes)
        wanted = {ids[i] for i in hits.tolist()}
        rows = []
        for i in hits.tolist():
            k = int(found[i])
            while k < len(id_hashes) and id_hashes[k] == hashes[i]:
                row = int(self.id_hash_order[k])
                if str(self.claim_ids.iat[row]) in wanted:
                    rows.append(row)
                k += 1
        return np.array(rows, np.int64)


def _add_each_other(
    plan: Plan, records: Sequence[Mapping[str, Any]], registers: np.ndarray, totals: WindowTotals
) -> None:
    """Count the records of the same key inside each record's windows (others only)."""
    days = registers[:, 0].astype(np.int64)
    for e, entity in enumerate(plan.entities):
        by_days = plan.windows_of(e)
        members: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            members.setdefault(str(record[entity]), []).append(i)
        for group in members.values():
            if len(group) < 2:
                continue
            rows = np.array(group)
            for days_back, windows in by_days.items():
                summing = [w for w in windows if w.register >= 0]
                values = [registers[rows, w.register] for w in summing]
                count, sums = _neighbours(days[rows], days_back, values)
                for w in windows:
                    totals.counts[rows, w.feature] += count
                for w, added in zip(summing, sums, strict=True):
                    totals.sums[rows, w.feature] += added


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
