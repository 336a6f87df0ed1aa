"""Model features: each declared once in :data:`NUMERIC`, computed for a batch with DuckDB.

A feature is one of two kinds:

* a :class:`ClaimValue`, computed from the claim's own columns (``log1p(claimed_amount)``,
  ``claimed_amount / coverage_limit``);
* a :class:`WindowFeature`, a statistic over the claims of the same policyholder or provider
  dated within a number of days before the claim (same-day claims count: they are known when
  the claim is scored; the claim itself counts only in a mean).

Everything else is derived from the declaration: the column lists, the history columns, the
DuckDB window query of the batch path (:func:`build_features`, the same function for a
pipeline batch and a single claim, so training and serving cannot disagree) and the arrays the
API's compiled fast path reads (:mod:`fraud_core.online`). A new feature is one entry in
:data:`NUMERIC`: a count, sum or mean over a new window, or a value from the claim's columns.
``tests/serving/test_fast_path.py`` holds the two paths to the same numbers.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import duckdb
import numpy as np
import pandas as pd

from fraud_core.layout import CLAIM_DATE
from fraud_core.schema import COLUMNS_BY_NAME, ID_COLUMN, LABEL_COLUMN, ORACLE_COLUMN

DATE = CLAIM_DATE  # windows look back from this date (fraud_core.layout names it)
POLICYHOLDER = "policyholder_id"
PROVIDER = "provider_id"


class Op(StrEnum):
    """How a :class:`ClaimValue` is computed from its arguments."""

    COLUMN = "column"  # the column's value as a float
    LOG1P = "log1p"  # log(1 + x)
    RATIO = "ratio"  # x / y
    DAYS_BETWEEN = "days_between"  # days from the date column y to the date column x
    ABOVE = "above"  # 1.0 where x > threshold, else 0.0


def _check_direction(name: str, direction: int) -> None:
    if direction not in (-1, 0, 1):
        raise ValueError(f"{name}: direction is +1 (risk rises), -1 (falls) or 0, not {direction}")


@dataclass(frozen=True)
class ClaimValue:
    """A number computed from one claim's own columns.

    Attributes:
        name: the feature's (or the helper value's) column name.
        op: how it is computed.
        args: claim columns (by name) or other claim values the operation reads.
        threshold: the cut of :attr:`Op.ABOVE`.
        direction: the sign of the fraud risk as the value grows, where the domain knows it
            (+1 rises, -1 falls, 0 unknown or not monotonic); see :data:`DIRECTIONS`.
    """

    name: str
    op: Op
    args: tuple[str | ClaimValue, ...]
    threshold: float = 0.0
    direction: int = 0

    def __post_init__(self) -> None:
        arity = {Op.COLUMN: 1, Op.LOG1P: 1, Op.ABOVE: 1, Op.RATIO: 2, Op.DAYS_BETWEEN: 2}
        if len(self.args) != arity[self.op]:
            raise ValueError(f"{self.name}: {self.op} takes {arity[self.op]} argument(s)")
        _check_direction(self.name, self.direction)
        for arg in self.args:
            if isinstance(arg, str) and arg not in COLUMNS_BY_NAME:
                raise ValueError(f"{self.name}: {arg!r} is not a claim column")
            dates = isinstance(arg, str) and COLUMNS_BY_NAME[arg].kind == "date"
            if dates != (self.op == Op.DAYS_BETWEEN):
                raise ValueError(
                    f"{self.name}: {self.op} of {arg!r}: only days_between reads dates"
                )

    def columns(self) -> Iterator[str]:
        """The claim columns this value reads (directly or through other values)."""
        for arg in self.args:
            yield from (arg,) if isinstance(arg, str) else arg.columns()

    def sql(self) -> str:
        """This value as a DuckDB expression over the claim columns."""
        x, y = [a if isinstance(a, str) else f"({a.sql()})" for a in self.args] + [""] * (
            2 - len(self.args)
        )
        match self.op:
            case Op.COLUMN:
                return x
            case Op.LOG1P:
                return f"ln(1 + {x})"
            case Op.RATIO:
                return f"{x} / {y}"
            case Op.DAYS_BETWEEN:
                return f"date_diff('day', {y}, {x})"
            case Op.ABOVE:
                return f"CASE WHEN {x} > {self.threshold:g} THEN 1.0 ELSE 0.0 END"


def column(name: str, direction: int = 0) -> ClaimValue:
    """A claim column as a feature, under its own name."""
    return ClaimValue(name, Op.COLUMN, (name,), direction=direction)


class Stat(StrEnum):
    """What a :class:`WindowFeature` computes over the claims in its window."""

    COUNT = "count"  # how many other claims
    SUM = "sum"  # the sum of a value over the other claims (0 when there are none)
    MEAN = "mean"  # the mean of a value over the window, the claim itself included


@dataclass(frozen=True)
class WindowFeature:
    """A statistic over the claims with the same ``entity`` key dated ``days`` before the claim.

    The window is ``[claim date - days, claim date]``: same-day claims are in it.

    Attributes:
        name: the feature's column name.
        entity: the column the window groups claims by (an id, such as the policyholder, or a
            category).
        days: how far back the window looks.
        stat: the statistic.
        of: the claim value summed or averaged (None for a count).
        log: the feature is ``log1p`` of the statistic (a negative sum, from float rounding,
            as 0).
        direction: as :attr:`ClaimValue.direction`.
    """

    name: str
    entity: str
    days: int
    stat: Stat
    of: ClaimValue | None = None
    log: bool = False
    direction: int = 0

    def __post_init__(self) -> None:
        _check_direction(self.name, self.direction)
        if (self.of is None) != (self.stat == Stat.COUNT):
            raise ValueError(f"{self.name}: a count takes no value, a sum or mean one")
        if COLUMNS_BY_NAME[self.entity].kind not in ("id", "category"):
            raise ValueError(f"{self.name}: windows group claims by an id or category column")


AMOUNT = column("claimed_amount")
LOG_AMOUNT = ClaimValue("log_amount", Op.LOG1P, ("claimed_amount",))
LATE_REPORT = ClaimValue("late_report", Op.ABOVE, ("report_delay_days",), threshold=30)

# The model's numeric inputs, in column order.
NUMERIC: tuple[ClaimValue | WindowFeature, ...] = (
    LOG_AMOUNT,
    ClaimValue("amount_to_limit", Op.RATIO, ("claimed_amount", "coverage_limit")),
    ClaimValue("deductible_to_amount", Op.RATIO, ("deductible", "claimed_amount")),
    ClaimValue(
        "days_since_policy_start", Op.DAYS_BETWEEN, (DATE, "policy_start_date"), direction=-1
    ),
    column("report_delay_days", direction=+1),
    column("police_report"),
    column("witnesses"),
    column("asset_age_years"),
    column("prior_claims"),
    WindowFeature("ph_claims_30d", POLICYHOLDER, 30, Stat.COUNT, direction=+1),
    WindowFeature("ph_claims_365d", POLICYHOLDER, 365, Stat.COUNT, direction=+1),
    WindowFeature("ph_amount_30d_log", POLICYHOLDER, 30, Stat.SUM, of=AMOUNT, log=True),
    WindowFeature("prov_claims_90d", PROVIDER, 90, Stat.COUNT),
    WindowFeature("prov_mean_log_amount_90d", PROVIDER, 90, Stat.MEAN, of=LOG_AMOUNT),
    WindowFeature("prov_late_report_rate_90d", PROVIDER, 90, Stat.MEAN, of=LATE_REPORT),
)
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in NUMERIC)
# Features whose risk only ever rises (+1) or falls (-1) as they grow: a claim filed sooner
# after its policy starts, reported later, or by a policyholder with more recent claims is
# never less suspicious. Training penalises a network that contradicts them
# (fraud_core.model.train.direction_violation); the gate's directional tests check them.
DIRECTIONS: dict[str, int] = {f.name: f.direction for f in NUMERIC if f.direction}
CATEGORICAL_FEATURES: tuple[str, ...] = ("incident_type", "region", "channel")
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# Carried next to the features for training, evaluation and cost; never model inputs.
PASSTHROUGH: tuple[str, ...] = (ID_COLUMN, DATE, "claimed_amount", LABEL_COLUMN, ORACLE_COLUMN)

LOCAL: tuple[ClaimValue, ...] = tuple(f for f in NUMERIC if isinstance(f, ClaimValue))
WINDOWED: tuple[WindowFeature, ...] = tuple(f for f in NUMERIC if isinstance(f, WindowFeature))
if len(set(NUMERIC_FEATURES)) != len(NUMERIC_FEATURES):
    raise ValueError("fraud_core.features.NUMERIC declares a feature name twice")


def lookback_days(windowed: tuple[WindowFeature, ...]) -> dict[str, int]:
    """The columns windows group by, each with how far back its windows look at most."""
    return {
        entity: max(f.days for f in windowed if f.entity == entity)
        for entity in dict.fromkeys(f.entity for f in windowed)
    }


def history_columns(windowed: tuple[WindowFeature, ...]) -> tuple[str, ...]:
    """The columns of earlier claims that window features read."""
    summed = [c for f in windowed if f.of is not None for c in f.of.columns()]
    return tuple(dict.fromkeys([ID_COLUMN, *lookback_days(windowed), DATE, *summed]))


HISTORY_COLUMNS: tuple[str, ...] = history_columns(WINDOWED)


@functools.cache
def window_sql(windowed: tuple[WindowFeature, ...]) -> str:
    """The batch path's query: every feature of ``windowed``, per claim of the table
    ``claims`` (in its ``row_number`` order), over ``claims`` and the table ``history``."""
    cols = history_columns(windowed)
    windows = {(f.entity, f.days): f"{f.entity}_{f.days}d" for f in windowed}
    selects = []
    for f in windowed:
        over = f"OVER {windows[f.entity, f.days]}"
        value = f.of.sql() if f.of is not None else ""
        selects.append(
            {
                Stat.COUNT: f"count(*) {over} - 1",
                Stat.SUM: f"coalesce(sum({value}) {over}, 0) - {value}",
                Stat.MEAN: f"avg({value}) {over}",
            }[f.stat]
            + f" AS {f.name}"
        )
    frames = [
        f"{name} AS (PARTITION BY {entity} ORDER BY {DATE}\n"
        f"        RANGE BETWEEN INTERVAL {days} DAYS PRECEDING AND CURRENT ROW)"
        for (entity, days), name in windows.items()
    ]
    select = ",\n        ".join(selects)
    window = ",\n    ".join(frames)
    return f"""
WITH unioned AS (
    SELECT {", ".join(cols)}, row_number AS target_row FROM claims
    UNION ALL
    SELECT {", ".join(f"h.{c}" for c in cols)}, NULL AS target_row
    FROM history AS h ANTI JOIN claims AS c ON h.{ID_COLUMN} = c.{ID_COLUMN}
    WHERE h.{DATE} <= (SELECT max({DATE}) FROM claims)
      AND h.{DATE} >= (SELECT min({DATE}) FROM claims)
          - INTERVAL {max(lookback_days(windowed).values()) + 1} DAYS
),
windowed AS (
    SELECT target_row,
        {select}
    FROM unioned
    WINDOW
    {window}
)
SELECT {", ".join(f.name for f in windowed)}
FROM windowed WHERE target_row IS NOT NULL
ORDER BY target_row
"""


_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per thread (opening one per API request would cost more than the
    query)."""
    if not hasattr(_local, "con"):
        _local.con = duckdb.connect()
    return _local.con


def claim_values(claims: pd.DataFrame, values: tuple[ClaimValue, ...]) -> pd.DataFrame:
    """``values`` computed for every row of ``claims`` (vectorised; float64, NaN where a column
    is missing)."""
    done: dict[str, np.ndarray] = {}

    def compute(value: ClaimValue) -> np.ndarray:
        if value.name in done:
            return done[value.name]
        if value.op == Op.DAYS_BETWEEN:
            later, earlier = (claims[a] for a in value.args if isinstance(a, str))
            days = (later - earlier).dt.days
            done[value.name] = days.to_numpy(np.float64, na_value=np.nan)
            return done[value.name]
        x, *rest = [
            claims[a].to_numpy(np.float64, na_value=np.nan) if isinstance(a, str) else compute(a)
            for a in value.args
        ]
        match value.op:
            case Op.COLUMN:
                done[value.name] = x
            case Op.LOG1P:
                done[value.name] = np.log1p(x)
            case Op.RATIO:
                done[value.name] = x / rest[0]
            case Op.ABOVE:
                done[value.name] = (x > value.threshold).astype(np.float64)
        return done[value.name]

    return pd.DataFrame({v.name: compute(v) for v in values}, index=claims.index)


def history_features(
    claims: pd.DataFrame,
    history: pd.DataFrame | None = None,
    windowed: tuple[WindowFeature, ...] = WINDOWED,
) -> pd.DataFrame:
    """The window features of ``claims``, over the claims of the same key.

    Args:
        claims: the claims to compute features for (validated, schema dtypes).
        history: earlier claims (any superset is fine: rows outside the look-back window and
            rows with a claim id that is in ``claims`` are ignored).
        windowed: the features (all of the model's unless given).

    Returns:
        One row per claim, in the order of ``claims``.
    """
    cols = list(history_columns(windowed))
    # Rows come back in the order of ``claims`` (by row number): no join on claim ids.
    target = claims[cols].assign(row_number=np.arange(len(claims)))
    past = history[cols] if history is not None and len(history) else target.iloc[:0]
    con = _connection().cursor()  # a cursor per call: safe across threads, cheap to open
    try:
        con.register("claims", target)
        con.register("history", past)
        out = con.execute(window_sql(windowed)).fetchdf()
    finally:
        con.close()
    for f in windowed:
        if f.log:
            out[f.name] = np.log1p(out[f.name].clip(lower=0.0))
    return out.set_index(claims.index).astype("float64")


def build_features(claims: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The feature table for ``claims``: passthrough columns, numeric and categorical features."""
    local = claim_values(claims, LOCAL)
    hist = history_features(claims, history)
    out = pd.DataFrame(index=claims.index)
    for col in PASSTHROUGH:
        if col in claims.columns:
            out[col] = claims[col]
    for col in NUMERIC_FEATURES:
        out[col] = local[col] if col in local.columns else hist[col]
    for col in CATEGORICAL_FEATURES:
        out[col] = claims[col].astype("string")
    return out.reset_index(drop=True)
