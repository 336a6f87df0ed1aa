"""The feature declaration (:data:`fraud_core.features.NUMERIC`) as the online path reads it.

:data:`PLAN` lists, in the order the kernels use them, the claim columns the features read, the
claim values computed from them, the windows and the sums over them; its
:meth:`~Plan.arrays` are the :class:`~fraud_core.online.kernels.FeatureArrays` of a history
index. Everything here follows from the declaration: nothing to edit for a new feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraud_core.features import (
    DATE,
    NUMERIC,
    ClaimValue,
    Op,
    Stat,
    WindowFeature,
    history_columns,
)
from fraud_core.online import kernels
from fraud_core.schema import COLUMNS_BY_NAME

_OP_CODES = {
    Op.COLUMN: kernels.COLUMN,
    Op.LOG1P: kernels.LOG1P,
    Op.RATIO: kernels.RATIO,
    Op.DAYS_BETWEEN: kernels.DAYS_BETWEEN,
    Op.ABOVE: kernels.ABOVE,
}
_STAT_KINDS = {Stat.COUNT: kernels.COUNT, Stat.SUM: kernels.SUM, Stat.MEAN: kernels.MEAN}


def _dependencies_first(values: list[ClaimValue]) -> list[ClaimValue]:
    """``values`` and the values they read, each after the values it reads, no name twice."""
    out: dict[str, ClaimValue] = {}

    def add(value: ClaimValue) -> None:
        for arg in value.args:
            if isinstance(arg, ClaimValue):
                add(arg)
        if out.setdefault(value.name, value) != value:
            raise ValueError(f"two different claim values are named {value.name!r}")

    for value in values:
        add(value)
    return list(out.values())


@dataclass(frozen=True)
class Plan:
    """The online path's reading of the feature declaration.

    Attributes:
        inputs: the claim columns the features read, first in the registers (dates as day
            ordinals), the claim date first.
        dates: whether each input is a date.
        values: every claim value (the features' and those summed in windows), dependencies
            first; value ``k`` is register ``len(inputs) + k``.
        entities: the key columns windows group by; position ``e`` is row ``e`` of the index.
        windows: ``(entity position, days)`` per distinct window.
        totals: ``(window, register)`` per distinct value summed over a window.
        cumulative: ``(entity position, register)`` per running sum the index keeps.
        features: the declaration, in column order.
        history: the columns of earlier claims the window features read.
    """

    inputs: tuple[str, ...]
    dates: tuple[bool, ...]
    values: tuple[ClaimValue, ...]
    entities: tuple[str, ...]
    windows: tuple[tuple[int, int], ...]
    totals: tuple[tuple[int, int], ...]
    cumulative: tuple[tuple[int, int], ...]
    features: tuple[ClaimValue | WindowFeature, ...]
    history: tuple[str, ...]
    _readers: tuple[tuple[str, bool], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_readers", tuple(zip(self.inputs, self.dates, strict=True)))

    @classmethod
    def of(cls, features: tuple[ClaimValue | WindowFeature, ...]) -> Plan:
        """Read a feature declaration."""
        windowed = [f for f in features if isinstance(f, WindowFeature)]
        summed = [f.of for f in windowed if f.of is not None]
        values = _dependencies_first([f for f in features if isinstance(f, ClaimValue)] + summed)
        # The claim date first: the kernels' windows look back from register 0.
        inputs = tuple(dict.fromkeys([DATE, *(c for v in values for c in v.columns())]))
        register = {v.name: len(inputs) + k for k, v in enumerate(values)}
        entities = tuple(dict.fromkeys(f.entity for f in windowed))
        windows = tuple(dict.fromkeys((entities.index(f.entity), f.days) for f in windowed))
        totals: dict[tuple[int, int], None] = {}
        cumulative: dict[tuple[int, int], None] = {}
        for f in windowed:
            if f.of is not None:
                window = windows.index((entities.index(f.entity), f.days))
                totals[window, register[f.of.name]] = None
                cumulative[entities.index(f.entity), register[f.of.name]] = None
        return cls(
            inputs,
            tuple(COLUMNS_BY_NAME[c].kind == "date" for c in inputs),
            tuple(values),
            entities,
            windows,
            tuple(totals),
            tuple(cumulative),
            features,
            history_columns(tuple(windowed)),
        )

    def register(self, arg: str | ClaimValue) -> int:
        """The register of a claim column or a claim value."""
        if isinstance(arg, str):
            return self.inputs.index(arg)
        return len(self.inputs) + [v.name for v in self.values].index(arg.name)

    def summed(self) -> tuple[ClaimValue, ...]:
        """The value each of :attr:`totals` sums."""
        return tuple(self.values[r - len(self.inputs)] for _, r in self.totals)

    def total(self, feature: WindowFeature) -> int:
        """The position in :attr:`totals` of a sum or mean feature."""
        assert feature.of is not None
        window = self.window(feature)
        return self.totals.index((window, self.register(feature.of)))

    def lookback(self, entity: int) -> int:
        """How far back the windows of key column ``entity`` (a position) look at most."""
        return max(days for e, days in self.windows if e == entity)

    def window(self, feature: WindowFeature) -> int:
        """The position in :attr:`windows` of a window feature."""
        return self.windows.index((self.entities.index(feature.entity), feature.days))

    def arrays(
        self, offsets: np.ndarray, days: np.ndarray, cumulative: np.ndarray, id_hashes: np.ndarray
    ) -> kernels.FeatureArrays:
        """The kernels' arrays for a history index (see :class:`kernels.FeatureArrays`)."""
        values = [
            (_OP_CODES[v.op], self.register(v.args[0]), self.register(v.args[-1]), v.threshold)
            for v in self.values
        ]
        features = []
        for f in self.features:
            if isinstance(f, ClaimValue):
                features.append((kernels.VALUE, self.register(f), -1, False))
            else:
                source = self.window(f) if f.stat == Stat.COUNT else self.total(f)
                mean_of = self.window(f) if f.stat == Stat.MEAN else -1
                features.append((_STAT_KINDS[f.stat], source, mean_of, f.log))
        totals = [(w, self.cumulative.index((self.windows[w][0], r)), r) for w, r in self.totals]
        return kernels.FeatureArrays(
            values=np.array(values, kernels.VALUES),
            windows=np.array(list(self.windows), kernels.WINDOWS),
            totals=np.array(totals, kernels.TOTALS),
            features=np.array(features, kernels.FEATURES),
            offsets=offsets,
            days=days,
            cumulative=cumulative,
            id_hashes=id_hashes,
        )

    def record_inputs(self, record: Mapping[str, Any]) -> tuple[float, ...]:
        """A claim record's :attr:`inputs` as floats (dates as their day ordinal)."""
        return tuple(
            [
                float(record[c].toordinal()) if date else float(record[c])
                for c, date in self._readers
            ]
        )


PLAN = Plan.of(NUMERIC)
