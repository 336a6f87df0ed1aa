"""The feature declaration (:data:`fraud_core.features.NUMERIC`) as the online path reads it.

:data:`PLAN` lists, in the order the kernels use them, the claim columns the features read, the
claim values computed from them, the windows and the sums over them; its
:meth:`~Plan.arrays` are the :class:`~fraud_core.online.kernels.FeatureArrays` of a history
index. Everything here follows from the declaration: nothing to edit for a new feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


class Window(NamedTuple):
    """A window feature as the index reads it."""

    feature: int  # its column
    entity: int  # the position of its key column in Plan.entities
    days: int  # how far back it looks
    register: int  # the register it sums (-1: a count)
    cumulative: int  # the row of the index's running sums of that register (-1: a count)


@dataclass(frozen=True)
class Plan:
    """The online path's reading of the feature declaration.

    Attributes:
        features: the declaration, in column order.
        inputs: the claim columns the features read, first in the registers (dates as day
            ordinals), the claim date first.
        dates: whether each input is a date.
        values: every claim value (the features' and those summed in windows), dependencies
            first; value ``k`` is register ``len(inputs) + k``.
        entities: the key columns windows group by; position ``e`` is row ``e`` of the index.
        cumulative: ``(entity position, register)`` per running sum the index keeps.
        windows: the window features.
        history: the columns of earlier claims the window features read.
    """

    features: tuple[ClaimValue | WindowFeature, ...]
    inputs: tuple[str, ...]
    dates: tuple[bool, ...]
    values: tuple[ClaimValue, ...]
    entities: tuple[str, ...]
    cumulative: tuple[tuple[int, int], ...]
    windows: tuple[Window, ...]
    history: tuple[str, ...]
    _readers: tuple[tuple[str, bool], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_readers", tuple(zip(self.inputs, self.dates, strict=True)))

    @classmethod
    def of(cls, features: tuple[ClaimValue | WindowFeature, ...]) -> Plan:
        """Read a feature declaration."""
        windowed = [(j, f) for j, f in enumerate(features) if isinstance(f, WindowFeature)]
        summed = [f.of for _, f in windowed if f.of is not None]
        values = _dependencies_first([f for f in features if isinstance(f, ClaimValue)] + summed)
        # The claim date first: the kernels' windows look back from register 0.
        inputs = tuple(dict.fromkeys([DATE, *(c for v in values for c in v.columns())]))
        names = [v.name for v in values]
        entities = tuple(dict.fromkeys(f.entity for _, f in windowed))
        cumulative: dict[tuple[int, int], int] = {}  # (entity, register) -> its row
        windows = []
        for j, f in windowed:
            entity = entities.index(f.entity)
            register = row = -1
            if f.of is not None:
                register = len(inputs) + names.index(f.of.name)
                row = cumulative.setdefault((entity, register), len(cumulative))
            windows.append(Window(j, entity, f.days, register, row))
        return cls(
            features=features,
            inputs=inputs,
            dates=tuple(COLUMNS_BY_NAME[c].kind == "date" for c in inputs),
            values=tuple(values),
            entities=entities,
            cumulative=tuple(cumulative),
            windows=tuple(windows),
            history=history_columns(tuple(f for _, f in windowed)),
        )

    def register(self, arg: str | ClaimValue) -> int:
        """The register of a claim column or a claim value."""
        if isinstance(arg, str):
            return self.inputs.index(arg)
        return len(self.inputs) + [v.name for v in self.values].index(arg.name)

    def summed(self) -> tuple[ClaimValue, ...]:
        """The value each running sum of :attr:`cumulative` sums."""
        return tuple(self.values[r - len(self.inputs)] for _, r in self.cumulative)

    def windows_of(self, entity: int) -> dict[int, list[Window]]:
        """The window features of key column ``entity`` (a position), by how far back they
        look."""
        out: dict[int, list[Window]] = {}
        for w in self.windows:
            if w.entity == entity:
                out.setdefault(w.days, []).append(w)
        return out

    def lookback(self, entity: int) -> int:
        """How far back the windows of key column ``entity`` (a position) look at most."""
        return max(w.days for w in self.windows if w.entity == entity)

    def arrays(
        self, offsets: np.ndarray, days: np.ndarray, cumulative: np.ndarray, id_hashes: np.ndarray
    ) -> kernels.FeatureArrays:
        """The kernels' arrays for a history index (see :class:`kernels.FeatureArrays`)."""
        values = [
            (_OP_CODES[v.op], self.register(v.args[0]), self.register(v.args[-1]), v.threshold)
            for v in self.values
        ]
        features = {
            j: (kernels.VALUE, self.register(f), -1, 0, -1, False)
            for j, f in enumerate(self.features)
            if isinstance(f, ClaimValue)
        }
        for w in self.windows:
            f = self.features[w.feature]
            assert isinstance(f, WindowFeature)
            features[w.feature] = (
                _STAT_KINDS[f.stat],
                w.register,
                w.entity,
                w.days,
                w.cumulative,
                f.log,
            )
        return kernels.FeatureArrays(
            values=np.array(values, kernels.VALUES),
            features=np.array([features[j] for j in range(len(features))], kernels.FEATURES),
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
