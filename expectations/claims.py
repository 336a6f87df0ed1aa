"""Great Expectations suite for claims, derived from :mod:`fraud_core.schema`, and row quarantine.

Every expectation is generated from ``CLAIM_COLUMNS`` / ``PAIR_RULES``: no column name, range or
category list is typed here. :func:`validate_claims` types a raw batch, evaluates the suite and
splits the batch into valid rows and quarantined rows, each quarantined row carrying every
reason it failed.

Who evaluates what (each expectation's meta says it too, under ``evaluated_by``):

* Row-level expectations (required fields, ranges, allowed values, unique claim ids, column
  pairs) are GX expectation objects evaluated with vectorised numpy/pandas, which gives every
  failing row at a fraction of GX's cost per expectation (bench/gx.py measures the suite). A
  test runs GX itself on a crafted batch and requires the same failing rows.
* Batch-level expectations (each column's plausible share of nulls) are run by GX on the whole
  typed batch.

Both kinds are reported in one GX validation result (``ClaimsValidation.report``), from which
the Data Docs page of the batch is built (:mod:`expectations.data_docs`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.execution_engine import pandas_execution_engine
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from expectations.runner import FrameValidation
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
EVALUATED_BY_GX = "great_expectations"
EVALUATED_BY_NUMPY = "numpy (expectations/claims.py, same semantics as the GX expectation)"
_EXAMPLES = 20  # unexpected values shown per expectation in Data Docs, as GX's SUMMARY does

# (typed frame, raw frame, failing row positions) -> (rows kept, one reason per kept row)
Describe = Callable[[pd.DataFrame, pd.DataFrame, np.ndarray], tuple[np.ndarray, list[str]]]
# typed frame -> boolean mask of the rows that fail, exactly as GX's expectation would flag them
Failing = Callable[[pd.DataFrame], np.ndarray]


@dataclass
class ClaimsValidation:
    """Outcome of validating one batch of claims.

    ``failures_by_expectation`` counts quarantined rows per row-level expectation (and
    coercion); ``batch_failures`` names the batch-level expectations that failed (a column's
    share of nulls), with what was observed. ``report`` is the whole suite's validation result
    in GX's form, for Data Docs (None for an empty batch).
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures_by_expectation: dict[str, int]
    rows_in: int
    ignored_columns: list[str]
    batch_failures: dict[str, str] = field(default_factory=dict)
    report: ExpectationSuiteValidationResult | None = None

    @property
    def failure_rate(self) -> float:
        """Fraction of incoming rows that were quarantined (0.0 for an empty batch)."""
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0


@dataclass(frozen=True)
class _Check:
    """A row-level expectation, evaluated with numpy, plus how to explain its failing rows.

    ``expectation`` is the GX definition (in the suite and in Data Docs); ``failing`` gives the
    rows GX would flag for it, vectorised (tests compare the two on crafted batches).
    """

    key: str  # key in failures_by_expectation, also stored in the expectation's meta
    expectation: gxe.Expectation
    failing: Failing
    describe: Describe


def _fmt(value: object) -> str:
    """Show a typed value the way a claims handler would write it."""
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return str(value)


def _about(key: str, intent: str, evaluated_by: str) -> dict[str, Any]:
    """An expectation's ``meta`` (what it protects against, its key, what evaluates it) and
    ``notes`` (the same in words, shown on the suite's Data Docs page).

    (GX's "meta_properties" column on validation pages would show who evaluated each result,
    but GX 1.24 then fails to render column-pair expectations: extra kwargs are refused.)
    """
    return {
        "meta": {"intent": intent, "check": key, "evaluated_by": evaluated_by},
        "notes": f"{intent} Evaluated by {evaluated_by}.",
    }


def _values(typed: pd.DataFrame, column: str, rows: np.ndarray) -> list[Any]:
    return typed[column].iloc[rows].tolist()


def _mask(values: Any) -> np.ndarray:
    """A boolean numpy mask from a comparison that may hold NA (NA counts as not failing)."""
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pd.api.extensions.ExtensionArray):
        return values.to_numpy(dtype=bool, na_value=False)
    return np.asarray(values, dtype=bool)


def _present(typed: pd.DataFrame, column: str) -> np.ndarray:
    return typed[column].notna().to_numpy()


def _not_null(col: Column) -> _Check:
    def failing(typed: pd.DataFrame) -> np.ndarray:
        return typed[col.name].isna().to_numpy()

    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        # A value that arrived but could not be cast is already reported by coercion.
        kept = rows[raw[col.name].iloc[rows].isna().to_numpy()]
        return kept, [f"{col.name}: missing"] * len(kept)

    key = f"{col.name}: not_null"
    intent = f"{col.description} Required: a claim without it cannot be scored or traced."
    return _Check(
        key,
        gxe.ExpectColumnValuesToNotBeNull(
            column=col.name, **_about(key, intent, EVALUATED_BY_NUMPY)
        ),
        failing,
        describe,
    )


def _between(col: Column) -> _Check:
    def failing(typed: pd.DataFrame) -> np.ndarray:
        # Like GX's map expectations, nulls are not judged here (not_null's business).
        values = typed[col.name]
        bad = np.zeros(len(values), dtype=bool)
        if col.minimum is not None:
            bad |= _mask(values < col.minimum)
        if col.maximum is not None:
            bad |= _mask(values > col.maximum)
        return bad

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
            **_about(key, intent, EVALUATED_BY_NUMPY),
        ),
        failing,
        describe,
    )


def _in_set(col: Column) -> _Check:
    allowed = tuple(col.allowed or ())
    shown = ", ".join(allowed)

    def failing(typed: pd.DataFrame) -> np.ndarray:
        values = typed[col.name]
        return _present(typed, col.name) & ~_mask(values.isin(allowed))

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
            column=col.name, value_set=list(allowed), **_about(key, intent, EVALUATED_BY_NUMPY)
        ),
        failing,
        describe,
    )


def _unique(col: Column) -> _Check:
    def failing(typed: pd.DataFrame) -> np.ndarray:
        # GX flags every copy of a repeated value, the first one too; nulls are not judged.
        values = typed[col.name]
        if (values.dropna() if values.hasnans else values).is_unique:  # the usual case, fast
            return np.zeros(len(values), dtype=bool)
        return _present(typed, col.name) & values.duplicated(keep=False).to_numpy()

    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        # The first occurrence stays valid.
        later = typed[col.name].duplicated(keep="first").to_numpy()
        kept = rows[later[rows]]
        return kept, [f"{col.name}: duplicate of an earlier row"] * len(kept)

    key = f"{col.name}: unique"
    intent = f"{col.description} A resent claim would be scored, paid and counted twice."
    return _Check(
        key,
        gxe.ExpectColumnValuesToBeUnique(
            column=col.name, **_about(key, intent, EVALUATED_BY_NUMPY)
        ),
        failing,
        describe,
    )


def _pair(rule: PairRule) -> _Check:
    # GX checks A > B (or A >= B): "left <= right" is "right >= left".
    a, b = (rule.right, rule.left) if rule.op == "<=" else (rule.left, rule.right)
    broken = ">" if rule.op == "<=" else "<"

    def failing(typed: pd.DataFrame) -> np.ndarray:
        both = _present(typed, a) & _present(typed, b)
        return both & ~_mask(typed[a] >= typed[b])

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
            **_about(rule.name, rule.description, EVALUATED_BY_NUMPY),
        ),
        failing,
        describe,
    )


def _checks() -> tuple[_Check, ...]:
    """All row-level checks, in the order their reasons are listed for a row."""
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


def _null_fraction(col: Column) -> gxe.Expectation:
    """A batch-level bound on a column's share of nulls (missing, or unreadable and cast to null).

    Protects against a column lost as a whole upstream (dropped, renamed, emptied by a failed
    join in the extract): the single rows are quarantined by the row-level checks, but a batch
    where one column is mostly empty is a broken feed, and is stopped whatever the overall
    failure rate. Run by GX, on the whole typed batch.
    """
    assert col.max_null_fraction is not None
    key = f"{col.name}: null_fraction"
    intent = (
        f"{col.description} More than {col.max_null_fraction:.0%} nulls in one batch means the "
        "column was lost upstream (dropped, renamed or emptied by the extract), not a few bad "
        "claims."
    )
    return gxe.ExpectColumnValuesToNotBeNull(
        column=col.name,
        mostly=1.0 - col.max_null_fraction,
        **_about(key, intent, EVALUATED_BY_GX),
    )


def _batch_expectations() -> list[gxe.Expectation]:
    """The batch-level expectations GX runs: one null-fraction bound per bounded column."""
    return [_null_fraction(c) for c in CLAIM_COLUMNS if c.max_null_fraction is not None]


def build_claims_suite() -> gx.ExpectationSuite:
    """A fresh (unsaved) expectation suite named ``claims``, derived from the schema.

    It holds every expectation of the contract: the row-level ones (evaluated with numpy,
    see :func:`validate_claims`) and the batch-level ones (evaluated by GX).
    """
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=[c.expectation for c in _checks()] + _batch_expectations(),
    )


@functools.cache
def _row_checks() -> tuple[_Check, ...]:
    """The row-level checks :func:`validate_claims` evaluates, built once per process."""
    return _checks()


@functools.cache
def _batch_validation() -> FrameValidation:
    """The batch-level expectations compiled for GX, once per process."""
    if not hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        raise RuntimeError(
            "great_expectations.execution_engine.pandas_execution_engine.HASH_THRESHOLD is "
            "gone: update _without_batch_fingerprint in expectations/claims.py for this GX"
        )
    return FrameValidation.compile(
        SUITE_NAME, _batch_expectations(), suite_name=f"{SUITE_NAME}_batch"
    )


@contextlib.contextmanager
def _without_batch_fingerprint() -> Iterator[None]:
    """Stop GX hashing the whole frame for a batch marker nobody reads.

    GX fingerprints every in-memory batch under ``HASH_THRESHOLD`` bytes with
    ``pd.util.hash_pandas_object``; the fingerprint is only stored in the batch markers.
    Callers hold the validation's lock, so only one claims validation changes it at a time.
    """
    saved = pandas_execution_engine.HASH_THRESHOLD
    pandas_execution_engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        pandas_execution_engine.HASH_THRESHOLD = saved


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


def _example(typed: pd.DataFrame, kwargs: Mapping[str, Any], row: int) -> Any:
    """One unexpected value as GX's SUMMARY result lists it (a pair for pair rules)."""
    if "column" in kwargs:
        value = typed[kwargs["column"]].iloc[row]
        return None if pd.isna(value) else _fmt(value)
    return [_fmt(typed[kwargs["column_A"]].iloc[row]), _fmt(typed[kwargs["column_B"]].iloc[row])]


def _row_result(
    typed: pd.DataFrame, check: _Check, failing: np.ndarray
) -> ExpectationValidationResult:
    """A row-level check's outcome in GX's result form (for Data Docs), counted like GX does."""
    n = len(typed)
    rows = np.flatnonzero(failing)
    config = check.expectation.configuration
    return ExpectationValidationResult(
        success=not len(rows),
        expectation_config=config,
        result={
            "element_count": n,
            "unexpected_count": len(rows),
            "unexpected_percent": 100.0 * len(rows) / n if n else 0.0,
            "partial_unexpected_list": [
                _example(typed, config.kwargs, r) for r in rows[:_EXAMPLES].tolist()
            ],
        },
        meta={"evaluated_by": EVALUATED_BY_NUMPY},
    )


def _report(
    gx_result: ExpectationSuiteValidationResult, row_results: list[ExpectationValidationResult]
) -> ExpectationSuiteValidationResult:
    """The whole suite's outcome: the row-level results, then GX's batch-level ones."""
    results = [*row_results, *gx_result.results]
    passed = sum(bool(r.success) for r in results)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=SUITE_NAME,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        meta=dict(gx_result.meta),
        batch_id=gx_result.batch_id,
    )


def _batch_failure(outcome: ExpectationValidationResult) -> str:
    cfg = outcome.expectation_config
    assert cfg is not None
    observed = float(outcome.result.get("unexpected_percent") or 0.0)
    allowed = 100.0 * (1.0 - float(cfg.kwargs["mostly"]))
    return f"{observed:.2f}% null (plausible at most {allowed:.2f}%)"


def validate_claims(raw: pd.DataFrame) -> ClaimsValidation:
    """Type a raw batch of claims, run the claims suite and quarantine every failing row.

    Row-level expectations (not null, ranges, allowed values, unique ids, column pairs) are
    evaluated with vectorised numpy, giving every failing row; GX runs the batch-level ones
    (each column's share of nulls) on the whole typed batch. Both kinds end up in ``report``.

    Args:
        raw: the frame as read from a landing file (any dtypes).

    Returns:
        Valid typed rows, quarantined raw rows with all their reasons, failure counts and the
        batch-level failures.

    Raises:
        fraud_core.schema.SchemaError: a required column is missing.
        RuntimeError: an expectation could not be evaluated (a suite/schema bug, not bad data).
    """
    coerced = coerce_claims(raw)
    typed, problems = coerced.frame, coerced.problems
    failures: dict[str, int] = {COERCION_KEY: len(problems)}
    batch_failures: dict[str, str] = {}
    report = None
    if len(typed):
        row_results = []
        for check in _row_checks():  # suite order, so a row's reasons read in a stable order
            failing = check.failing(typed)
            row_results.append(_row_result(typed, check, failing))
            if not failing.any():
                continue
            kept, reasons = check.describe(typed, raw, np.flatnonzero(failing))
            failures[check.key] = len(kept)
            for row, reason in zip(kept.tolist(), reasons, strict=True):
                problems.setdefault(row, []).append(reason)
        validation = _batch_validation()
        with validation.lock, _without_batch_fingerprint():
            result = validation.run(typed, result_format="BASIC")
        for outcome in result.results:
            key = _check_key(outcome.expectation_config)
            error = _raised(outcome.exception_info)
            if error is not None:
                raise RuntimeError(f"expectation {key!r} could not be evaluated: {error}")
            if not outcome.success:
                batch_failures[key] = _batch_failure(outcome)
        report = _report(result, row_results)
    valid, quarantined = split_valid(raw, typed, problems)
    return ClaimsValidation(
        valid=valid,
        quarantined=quarantined,
        failures_by_expectation={key: n for key, n in failures.items() if n},
        rows_in=len(typed),
        ignored_columns=coerced.ignored_columns,
        batch_failures=dict(sorted(batch_failures.items())),
        report=report,
    )
