"""Compiled kernels of the online features: the feature declaration run over claim records and
the history index, without pandas.

The kernels know no feature by name: they read the declaration as two small tables
(:class:`FeatureArrays`, built by :mod:`fraud_core.online.plan`), so a new feature changes the
tables, never this code. A claim's numbers live in *registers*: first the claim columns the
features read (dates as day ordinals; register 0 is the claim date, which windows look back
from), then every :class:`~fraud_core.features.ClaimValue` in declaration order, each computed
from earlier registers by its operation. A window feature counts, and sums a register over,
the history rows of the claim's key dated in its window.

Numba compiles each kernel on first use and caches it next to this module. The cache is
invalidated only when this file changes, so every kernel that calls another lives here, and
nothing here reads a constant from another module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np

# Operations of the claim values (fraud_core.features.Op), in VALUES["op"].
COLUMN, LOG1P, RATIO, DAYS_BETWEEN, ABOVE = range(5)
# What a feature is (a claim value, or fraud_core.features.Stat), in FEATURES["kind"].
VALUE, COUNT, SUM, MEAN = range(4)

# One row per claim value; value k is register n_inputs + k. x, y: the registers it reads.
VALUES = np.dtype([("op", np.int64), ("x", np.int64), ("y", np.int64), ("threshold", np.float64)])
# One row per feature, in column order: its kind; the register of a VALUE, or the register a
# SUM or MEAN sums (-1 for others); for a window feature, the position of its key column, how
# far back it looks, and the row of ``cumulative`` with the running sums of its register (-1
# for a count); whether the feature is log1p of the statistic.
FEATURES = np.dtype(
    [
        ("kind", np.int64),
        ("register", np.int64),
        ("entity", np.int64),
        ("days", np.int64),
        ("cumulative", np.int64),
        ("log", np.bool_),
    ]
)


class FeatureArrays(NamedTuple):
    """Everything the kernels read: the declaration's tables, then the history index.

    Kernels take these as trailing positional arguments (``*arrays``: numba unboxes positional
    arrays fastest) and name them again with ``FeatureArrays(*arrays)``.

    Attributes:
        values: :data:`VALUES` rows.
        features: :data:`FEATURES` rows.
        offsets: the history's key groups, every key column's after the previous one's: group
            ``g`` holds positions ``offsets[g]:offsets[g + 1]`` of its key column's row order.
        days: per key column, the history rows' dates (day ordinals) in that row order,
            ascending within each group ``(E, n)``.
        cumulative: running sums of a register over a key column's row order, restarting at
            each group ``(C, n)``.
        id_hashes: the history's claim ids hashed (Python's ``hash``), sorted.
    """

    values: np.ndarray
    features: np.ndarray
    offsets: np.ndarray
    days: np.ndarray
    cumulative: np.ndarray
    id_hashes: np.ndarray


def _jit(fn: Callable[..., Any]) -> Any:
    """Compiled on first use, then cached by numba; releases the GIL."""
    return numba.njit(cache=True, nogil=True)(fn)


@_jit
def _registers(a: FeatureArrays, inputs: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Fill one claim's registers ``out`` from its ``inputs``."""
    n_inputs = inputs.shape[0]
    for i in range(n_inputs):  # a loop: numba compiles a slice assignment far more slowly
        out[i] = inputs[i]
    for k in range(a.values.shape[0]):
        value = a.values[k]
        x = out[value.x]
        y = out[value.y]
        if value.op == COLUMN:
            result = x
        elif value.op == LOG1P:
            result = math.log1p(x)
        elif value.op == RATIO:
            result = x / y
        elif value.op == DAYS_BETWEEN:
            result = x - y
        else:  # ABOVE
            result = 1.0 if x > value.threshold else 0.0
        out[n_inputs + k] = result


@_jit
def _first_after(days: np.ndarray, lo: int, hi: int, day: int) -> int:  # pragma: no cover
    """The first position in ``days[lo:hi]`` (ascending) dated after ``day``, or ``hi``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if days[mid] <= day:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _windows(  # pragma: no cover - compiled; tested against build_features
    a: FeatureArrays,
    groups: np.ndarray,
    registers: np.ndarray,
    count: np.ndarray,
    total: np.ndarray,
) -> None:
    """One claim's windows over the history, per feature: the rows in its window ``count``,
    and its register summed over them ``total`` (0 for the claim values). ``groups`` holds the
    claim's group per key column (-1: not in the history)."""
    day = int(registers[0])
    for j in range(a.features.shape[0]):
        feature = a.features[j]
        count[j] = 0.0
        total[j] = 0.0
        if feature.kind == VALUE or groups[feature.entity] < 0:
            continue
        group = groups[feature.entity]
        lo, hi = a.offsets[group], a.offsets[group + 1]
        days = a.days[feature.entity]
        stop = _first_after(days, lo, hi, day)  # same-day claims count
        start = _first_after(days, lo, stop, day - feature.days - 1)
        count[j] = stop - start
        if feature.cumulative >= 0 and stop > start:
            running = a.cumulative[feature.cumulative]
            total[j] = running[stop - 1] - (running[start - 1] if start > lo else 0.0)


@_jit
def _combine(  # pragma: no cover - compiled; tested against build_features
    a: FeatureArrays, registers: np.ndarray, count: np.ndarray, total: np.ndarray, out: np.ndarray
) -> None:
    """One claim's features ``out`` from its registers and its windows over the other claims
    (a mean counts the claim itself too)."""
    for j in range(a.features.shape[0]):
        feature = a.features[j]
        if feature.kind == VALUE:
            v = registers[feature.register]
        elif feature.kind == COUNT:
            v = count[j]
        elif feature.kind == SUM:
            v = total[j]
        else:  # MEAN
            v = (total[j] + registers[feature.register]) / (count[j] + 1.0)
        if feature.log:
            v = math.log1p(max(v, 0.0))
        out[j] = v


@_jit
def group_order(codes: np.ndarray, n_groups: int) -> np.ndarray:  # pragma: no cover - compiled
    """Row positions by group (``codes`` in ``0..n_groups - 1``; -1, no group, first), in
    their order within a group: a counting sort, stable."""
    starts = np.zeros(n_groups + 2, np.int64)
    for i in range(codes.shape[0]):
        starts[codes[i] + 2] += 1
    for slot in range(1, n_groups + 2):
        starts[slot] += starts[slot - 1]
    order = np.empty(codes.shape[0], np.int64)
    for i in range(codes.shape[0]):
        slot = codes[i] + 1
        order[starts[slot]] = i
        starts[slot] += 1
    return order


@_jit
def sorted_contains(values: np.ndarray, value: int) -> bool:  # pragma: no cover - compiled
    """Whether the sorted int64 array ``values`` holds ``value`` (one binary search)."""
    k = np.searchsorted(values, value)
    return k < values.shape[0] and values[k] == value


@_jit
def one_claim_features(  # pragma: no cover - compiled; tested against build_features
    claim_hash: int, inputs: Any, groups: Any, *arrays: Any
) -> np.ndarray:
    """The features of one claim scored alone (float64 ``(F,)``): registers, windows and
    features in one call. ``inputs`` and ``groups`` are tuples (see :func:`claim_registers`,
    :func:`windows`). Empty when a history row may carry the claim's id (its ``claim_hash``):
    that row must be left out, which :func:`drop_rows` does."""
    a = FeatureArrays(*arrays)
    if sorted_contains(a.id_hashes, claim_hash):
        return np.empty(0, np.float64)
    n_features = a.features.shape[0]
    n_inputs = len(inputs)
    # One allocation for the features, the registers and the windows: the n-claim kernels'
    # rows, so the same compiled helpers serve both.
    buffer = np.empty(n_inputs + a.values.shape[0] + 3 * n_features, np.float64)
    out = buffer[:n_features]
    count = buffer[n_features : 2 * n_features]
    total = buffer[2 * n_features : 3 * n_features]
    registers = buffer[3 * n_features :]
    row = np.empty(n_inputs, np.float64)
    for i in range(n_inputs):
        row[i] = inputs[i]
    keys = np.empty(len(groups), np.int64)
    for e in range(len(groups)):
        keys[e] = groups[e]
    _registers(a, row, registers)
    _windows(a, keys, registers, count, total)
    _combine(a, registers, count, total, out)
    return out


@_jit
def claim_registers(inputs: np.ndarray, *arrays: Any) -> np.ndarray:  # pragma: no cover
    """The registers ``(n, R)`` of ``n`` claims from their inputs ``(n, I)``."""
    a = FeatureArrays(*arrays)
    out = np.empty((inputs.shape[0], inputs.shape[1] + a.values.shape[0]), np.float64)
    for i in range(inputs.shape[0]):
        _registers(a, inputs[i], out[i])
    return out


@_jit
def windows(  # pragma: no cover - compiled; tested against build_features
    groups: np.ndarray, registers: np.ndarray, *arrays: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Window counts and sums ``(n, F)`` (float64) of ``n`` claims over the history, from
    their groups per key column ``(n, E)`` and their registers ``(n, R)``."""
    a = FeatureArrays(*arrays)
    n = registers.shape[0]
    count = np.zeros((n, a.features.shape[0]), np.float64)
    total = np.zeros((n, a.features.shape[0]), np.float64)
    for i in range(n):
        _windows(a, groups[i], registers[i], count[i], total[i])
    return count, total


@_jit
def claim_features(  # pragma: no cover - compiled; tested against build_features
    registers: np.ndarray, count: np.ndarray, total: np.ndarray, *arrays: Any
) -> np.ndarray:
    """The features ``(n, F)`` of ``n`` claims from their registers and windows."""
    a = FeatureArrays(*arrays)
    out = np.empty((registers.shape[0], a.features.shape[0]), np.float64)
    for i in range(registers.shape[0]):
        _combine(a, registers[i], count[i], total[i], out[i])
    return out


@_jit
def drop_rows(  # pragma: no cover - compiled; tested against build_features
    rows: np.ndarray,
    groups: np.ndarray,
    registers: np.ndarray,
    count: np.ndarray,
    total: np.ndarray,
    row_groups: np.ndarray,
    row_days: np.ndarray,
    row_values: np.ndarray,
    *arrays: Any,
) -> None:
    """Take history ``rows`` out of the windows of ``n`` claims (:func:`windows`) that hold
    them. Per history row: its group per key column ``row_groups (E, N)``, its day ordinal
    ``row_days (N,)`` and the value each row of ``cumulative`` sums ``row_values (C, N)``."""
    a = FeatureArrays(*arrays)
    for row in rows:
        for i in range(registers.shape[0]):
            age = int(registers[i, 0]) - row_days[row]  # days from the row to the claim
            for j in range(a.features.shape[0]):
                feature = a.features[j]
                if feature.kind == VALUE or not 0 <= age <= feature.days:
                    continue
                group = row_groups[feature.entity, row]
                if group < 0 or groups[i, feature.entity] != group:
                    continue
                count[i, j] -= 1
                if feature.cumulative >= 0:
                    total[i, j] -= row_values[feature.cumulative, row]
