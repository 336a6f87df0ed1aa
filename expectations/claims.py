"""Great Expectations suite for claims, derived from :mod:`fraud_core.schema`, and row quarantine.

Every expectation is generated from ``CLAIM_COLUMNS`` / ``PAIR_RULES``: no column name, range or
category list is typed here. :func:`validate_claims` types a raw batch, runs the suite once with
per-row failure indices and splits the batch into valid rows and quarantined rows, each
quarantined row carrying every reason it failed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from fraud_core.schema import (
    CLAIM_COLUMNS,
    COLUMNS_BY_NAME,
    ID_COLUMN,
    PAIR_RULES,
    Column,
    PairRule,
    coerce_claims,
    split_valid,
)

SUITE_NAME = "claims"
COERCION_KEY = "coercion"
# COMPLETE gives the index of every failing row; the typed frame has a RangeIndex, so index
# labels are positions. Values are read back from the typed frame, so GX need not copy them,
# and the index query string is useless here and huge on bad batches.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}

# (typed frame, raw frame, failing row positions) -> (rows kept, one reason per kept row)
Describe = Callable[[pd.DataFrame, pd.DataFrame, np.ndarray], tuple[np.ndarray, list[str]]]


@dataclass
class ClaimsValidation:
    """Outcome of validating one batch of claims."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures_by_expectation: dict[str, int]
    rows_in: int
    ignored_columns: list[str]

    @property
    def failure_rate(self) -> float:
        """Fraction of incoming rows that were quarantined (0.0 for an empty batch)."""
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0


@dataclass(frozen=True)
class _Check:
    """One expectation plus how to turn its failing rows into readable reasons."""

    key: str  # key in failures_by_expectation, also stored in the expectation's meta
    expectation: gxe.Expectation
    describe: Describe


def _fmt(value: object) -> str:
    """Show a typed value the way a claims handler would write it."""
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return str(value)


def _meta(key: str, intent: str) -> dict[str, str]:
    """Expectation meta: what it protects against, and its key in failures_by_expectation."""
    return {"intent": intent, "check": key}


def _values(typed: pd.DataFrame, column: str, rows: np.ndarray) -> list[Any]:
    return typed[column].iloc[rows].tolist()


def _not_null(col: Column) -> _Check:
    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        # A value that arrived but could not be cast is already reported by coercion.
        kept = rows[raw[col.name].iloc[rows].isna().to_numpy()]
        return kept, [f"{col.name}: missing"] * len(kept)

    key = f"{col.name}: not_null"
    intent = f"{col.description} Required: a claim without it cannot be scored or traced."
    return _Check(
        key, gxe.ExpectColumnValuesToNotBeNull(column=col.name, meta=_meta(key, intent)), describe
    )


def _between(col: Column) -> _Check:
    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        reasons = [
            f"{col.name}: {_fmt(v)} is below the minimum {col.minimum}"
            if col.minimum is not None and v < col.minimum
            else f"{col.name}: {_fmt(v)} is above the maximum {col.maximum}"
            for v in _values(typed, col.name, rows)
        ]
        return rows, reasons

    key = f"{col.name}: between"
    intent = (
        f"{col.description} Values outside [{col.minimum}, {col.maximum}] are entry, unit "
        "or extraction errors."
    )
    return _Check(
        key,
        gxe.ExpectColumnValuesToBeBetween(
            column=col.name,
            min_value=col.minimum,
            max_value=col.maximum,
            meta=_meta(key, intent),
        ),
        describe,
    )


def _in_set(col: Column) -> _Check:
    allowed = tuple(col.allowed or ())
    shown = ", ".join(allowed)

    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        values = _values(typed, col.name, rows)
        return rows, [f"{col.name}: {v!r} is not one of {shown}" for v in values]

    key = f"{col.name}: in_set"
    intent = f"{col.description} An unknown category would reach the model as an unseen level."
    return _Check(
        key,
        gxe.ExpectColumnValuesToBeInSet(
            column=col.name, value_set=list(allowed), meta=_meta(key, intent)
        ),
        describe,
    )


def _unique(col: Column) -> _Check:
    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        # GX flags every copy; the first occurrence stays valid.
        later = typed[col.name].duplicated(keep="first").to_numpy()
        kept = rows[later[rows]]
        return kept, [f"{col.name}: duplicate of an earlier row"] * len(kept)

    key = f"{col.name}: unique"
    intent = f"{col.description} A resent claim would be scored, paid and counted twice."
    return _Check(
        key, gxe.ExpectColumnValuesToBeUnique(column=col.name, meta=_meta(key, intent)), describe
    )


def _pair(rule: PairRule) -> _Check:
    # GX checks A > B (or A >= B): "left <= right" is "right >= left".
    a, b = (rule.right, rule.left) if rule.op == "<=" else (rule.left, rule.right)
    broken = ">" if rule.op == "<=" else "<"

    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        pairs = zip(_values(typed, rule.left, rows), _values(typed, rule.right, rows), strict=True)
        return rows, [
            f"{rule.name}: {rule.left} {_fmt(lv)} {broken} {rule.right} {_fmt(rv)}"
            for lv, rv in pairs
        ]

    return _Check(
        rule.name,
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=a,
            column_B=b,
            or_equal=True,
            # Nulls are the not-null expectations' business (or coercion's).
            ignore_row_if="either_value_is_missing",
            meta=_meta(rule.name, rule.description),
        ),
        describe,
    )


def _checks() -> tuple[_Check, ...]:
    """All checks, in the order their reasons are listed for a row."""
    checks: list[_Check] = []
    for col in CLAIM_COLUMNS:
        if col.required:
            checks.append(_not_null(col))
        if col.minimum is not None or col.maximum is not None:
            checks.append(_between(col))
        if col.allowed:
            checks.append(_in_set(col))
    checks.append(_unique(COLUMNS_BY_NAME[ID_COLUMN]))
    checks.extend(_pair(rule) for rule in PAIR_RULES)
    return tuple(checks)


def build_claims_suite() -> gx.ExpectationSuite:
    """A fresh (unsaved) expectation suite named ``claims``, derived from the schema."""
    return gx.ExpectationSuite(
        name=SUITE_NAME, expectations=[check.expectation for check in _checks()]
    )


@dataclass(frozen=True)
class _Runner:
    definition: gx.ValidationDefinition
    checks: tuple[_Check, ...]
    lock: threading.Lock


@functools.lru_cache(maxsize=1)
def _runner() -> _Runner:
    """Ephemeral GX context, datasource and validation definition, built once per process."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(SUITE_NAME)
        .add_dataframe_asset(SUITE_NAME)
        .add_batch_definition_whole_dataframe("whole_batch")
    )
    checks = _checks()
    suite = context.suites.add(
        gx.ExpectationSuite(name=SUITE_NAME, expectations=[c.expectation for c in checks])
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=SUITE_NAME)
    )
    return _Runner(definition, checks, threading.Lock())


def _for_gx(typed: pd.DataFrame) -> pd.DataFrame:
    """The typed frame with nullable ints widened to float64 (NaN for NA), same rows and index.

    GX's between check is vectorised only for numpy int/float/datetime dtypes; on pandas'
    nullable ``Int64`` it maps a Python function over every value (~0.6 s per 1M-row column).
    Reasons are still built from ``typed``, so integers are shown as integers.
    """
    ints = [name for name, dtype in typed.dtypes.items() if isinstance(dtype, pd.Int64Dtype)]
    if not ints:
        return typed
    return typed.assign(**{name: typed[name].astype("float64") for name in ints})


def _check_key(config: ExpectationConfiguration | None) -> str:
    """The ``check`` key our meta gave an expectation (GX results come back unordered)."""
    if config is None or not config.meta or "check" not in config.meta:
        raise RuntimeError(f"validation result without a claims check key: {config}")
    return str(config.meta["check"])


def _raised(info: Mapping[str, Any] | None) -> str | None:
    """The exception message of a result that errored (GX nests it per metric), else None."""
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [v for v in info.values() if isinstance(v, Mapping) and v.get("raised_exception")]
    return str(nested[0].get("exception_message")) if nested else None


def validate_claims(raw: pd.DataFrame) -> ClaimsValidation:
    """Type a raw batch of claims, run the claims suite and quarantine every failing row.

    Args:
        raw: the frame as read from a landing file (any dtypes).

    Returns:
        Valid typed rows, quarantined raw rows with all their reasons, and failure counts.

    Raises:
        fraud_core.schema.SchemaError: a required column is missing.
        RuntimeError: an expectation could not be evaluated (a suite/schema bug, not bad data).
    """
    coerced = coerce_claims(raw)
    typed, problems = coerced.frame, coerced.problems
    failures: dict[str, int] = {COERCION_KEY: int(coerced.bad_mask.sum())}
    if len(typed):
        runner = _runner()
        with runner.lock:
            result = runner.definition.run(
                batch_parameters={"dataframe": _for_gx(typed)}, result_format=_RESULT_FORMAT
            )
        by_key = {_check_key(r.expectation_config): r for r in result.results}
        for check in runner.checks:  # suite order, so a row's reasons read in a stable order
            outcome = by_key[check.key]
            error = _raised(outcome.exception_info)
            if error is not None:
                raise RuntimeError(f"expectation {check.key!r} could not be evaluated: {error}")
            if outcome.success:
                continue
            rows = np.asarray(outcome.result["unexpected_index_list"], dtype=np.int64)
            kept, reasons = check.describe(typed, raw, rows)
            failures[check.key] = len(kept)
            for row, reason in zip(kept.tolist(), reasons, strict=True):
                problems[row].append(reason)
    valid, quarantined = split_valid(raw, typed, problems)
    return ClaimsValidation(
        valid=valid,
        quarantined=quarantined,
        failures_by_expectation={key: n for key, n in failures.items() if n},
        rows_in=len(typed),
        ignored_columns=coerced.ignored_columns,
    )
