"""Great Expectations suite for claims, derived from :mod:`fraud_core.schema`, and row quarantine.

Every expectation is generated from ``CLAIM_COLUMNS`` / ``PAIR_RULES`` (and the schema's
:class:`~fraud_core.schema.DateWindow`): no column name, range or category list is typed here.
:class:`ClaimsValidator` types a file's claims chunk by chunk, evaluates the suite and splits
each chunk into valid rows and quarantined rows, each quarantined row carrying every reason it
failed; :func:`validate_claims` does the same for one frame.

The suite is evaluated with vectorised numpy/pandas (each expectation's meta says so, under
``evaluated_by``), a chunk at a time, so a file of any size is validated in bounded memory:

* Row-level expectations (required fields, ranges, dates a claim can carry, allowed values,
  unique claim ids, column pairs) give every failing row at a fraction of GX's cost per
  expectation (bench/gx.py measures the suite). Claim ids seen in earlier chunks are kept as
  64-bit hashes, so a repeat anywhere in the file is caught.
* Batch-level expectations (each column's plausible share of nulls) are decided on running
  null counts over the whole file, as GX's ``mostly`` decides them on a whole frame.

Tests run GX itself on crafted batches and require the same failing rows and verdicts. The
outcome is reported in GX's validation result form (``ClaimsValidation.report``), from which the
Data Docs page of the batch is built (:mod:`expectations.data_docs`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
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

from fraud_core.landing import ReasonTally
from fraud_core.schema import (
    CLAIM_COLUMNS,
    COLUMNS_BY_NAME,
    ID_COLUMN,
    ISO_VALUES,
    PAIR_RULES,
    QUARANTINE_REASON_COLUMN,
    ROW_NUMBER_COLUMN,
    Column,
    DateWindow,
    PairRule,
    ValueFormats,
    coerce_claims,
    split_valid,
)

SUITE_NAME = "claims"
COERCION_KEY = "coercion"
EVALUATED_BY_NUMPY = "numpy (expectations/claims.py, same semantics as the GX expectation)"
DUPLICATE_REASON = f"{ID_COLUMN}: duplicate of an earlier row"
_EXAMPLES = 20  # unexpected values shown per expectation in Data Docs, as GX's SUMMARY does

# (typed frame, raw frame, failing row positions) -> (rows kept, one reason per kept row)
Describe = Callable[[pd.DataFrame, pd.DataFrame, np.ndarray], tuple[np.ndarray, list[str]]]
# typed frame -> boolean mask of the rows that fail, exactly as GX's expectation would flag them
Failing = Callable[[pd.DataFrame], np.ndarray]


@dataclass
class ClaimsValidation:
    """Outcome of validating a file's claims (or one frame).

    ``failures_by_expectation`` counts quarantined rows per row-level expectation (and
    coercion); ``batch_failures`` names the batch-level expectations that failed (a column's
    share of nulls), with what was observed; ``problems`` says what was wrong most often, with
    an example (:class:`~fraud_core.landing.ReasonTally`). ``report`` is the whole suite's
    validation result in GX's form, for Data Docs (None when no row was read).
    """

    rows_in: int
    rows_quarantined: int
    failures_by_expectation: dict[str, int]
    ignored_columns: list[str]
    batch_failures: dict[str, str] = field(default_factory=dict)
    report: ExpectationSuiteValidationResult | None = None
    problems: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def failure_rate(self) -> float:
        """Fraction of incoming rows that were quarantined (0.0 for an empty batch)."""
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0


@dataclass
class ValidatedClaims(ClaimsValidation):
    """A frame's validation, with its rows: valid (typed) and quarantined (as received)."""

    valid: pd.DataFrame = field(default_factory=pd.DataFrame)
    quarantined: pd.DataFrame = field(default_factory=pd.DataFrame)


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
        return kept, [DUPLICATE_REASON] * len(kept)

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


def _within_dates(col: Column, window: DateWindow) -> _Check:
    def failing(typed: pd.DataFrame) -> np.ndarray:
        return window.outside(typed[col.name])

    def describe(
        typed: pd.DataFrame, raw: pd.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        days = [pd.Timestamp(v).date() for v in _values(typed, col.name, rows)]
        return rows, [window.problem(col.name, d) or "" for d in days]

    key = f"{col.name}: date_window"
    intent = (
        f"{col.description} A date before {window.earliest} or after the day the claim is "
        f"checked (plus {window.max_skew_days} day(s) of clock skew) is an entry or "
        "extraction error (9999-12-31 as 'unknown'), and would be scored as a future claim."
    )
    return _Check(
        key,
        gxe.ExpectColumnValuesToBeBetween(
            column=col.name,
            min_value=dt.datetime.combine(window.earliest, dt.time()),
            max_value=dt.datetime.combine(window.latest, dt.time()),
            **_about(key, intent, EVALUATED_BY_NUMPY),
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


def _checks(window: DateWindow | None = None) -> tuple[_Check, ...]:
    """All row-level checks, in the order their reasons are listed for a row."""
    window = window or DateWindow.until_today()
    checks: list[_Check] = []
    for col in CLAIM_COLUMNS:
        if col.required:
            checks.append(_not_null(col))
        if col.minimum is not None or col.maximum is not None:
            checks.append(_between(col))
        if col.kind == "date":
            checks.append(_within_dates(col, window))
        if col.allowed:
            checks.append(_in_set(col))
    checks.append(_unique(COLUMNS_BY_NAME[ID_COLUMN]))
    checks.extend(_pair(rule) for rule in PAIR_RULES)
    return tuple(checks)


def _null_fraction(col: Column) -> gxe.ExpectColumnValuesToNotBeNull:
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
        **_about(key, intent, EVALUATED_BY_NUMPY),
    )


BOUNDED_COLUMNS = tuple(c for c in CLAIM_COLUMNS if c.max_null_fraction is not None)


def _batch_expectations() -> list[gxe.Expectation]:
    """The batch-level expectations: one null-fraction bound per bounded column."""
    return [_null_fraction(c) for c in BOUNDED_COLUMNS]


def build_claims_suite(window: DateWindow | None = None) -> gx.ExpectationSuite:
    """A fresh (unsaved) expectation suite named ``claims``, derived from the schema.

    It holds every expectation of the contract: the row-level ones and the batch-level ones
    (all evaluated with numpy, see :class:`ClaimsValidator`). ``window``: the dates a claim
    can carry (default: until today).
    """
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=[c.expectation for c in _checks(window)] + _batch_expectations(),
    )


@functools.lru_cache(maxsize=4)
def _row_checks(window: DateWindow) -> tuple[_Check, ...]:
    """The row-level checks for a date window, built once per process and day."""
    return _checks(window)


def _example(typed: pd.DataFrame, kwargs: Mapping[str, Any], row: int) -> Any:
    """One unexpected value as GX's SUMMARY result lists it (a pair for pair rules)."""
    if "column" in kwargs:
        value = typed[kwargs["column"]].iloc[row]
        return None if pd.isna(value) else _fmt(value)
    return [_fmt(typed[kwargs["column_A"]].iloc[row]), _fmt(typed[kwargs["column_B"]].iloc[row])]


@dataclass
class _Tally:
    """A check's running count over a file: rows judged, rows failing, the first examples."""

    elements: int = 0
    unexpected: int = 0
    examples: list[Any] = field(default_factory=list)

    def add(self, typed: pd.DataFrame, kwargs: Mapping[str, Any], failing: np.ndarray) -> None:
        rows = np.flatnonzero(failing)
        self.elements += len(typed)
        self.unexpected += len(rows)
        room = _EXAMPLES - len(self.examples)
        if room > 0:
            self.examples += [_example(typed, kwargs, r) for r in rows[:room].tolist()]

    def result(
        self, expectation: gxe.Expectation, success: bool | None = None
    ) -> ExpectationValidationResult:
        """The outcome in GX's result form (for Data Docs), counted like GX does."""
        n = self.elements
        return ExpectationValidationResult(
            success=not self.unexpected if success is None else success,
            expectation_config=expectation.configuration,
            result={
                "element_count": n,
                "unexpected_count": self.unexpected,
                "unexpected_percent": 100.0 * self.unexpected / n if n else 0.0,
                "partial_unexpected_list": list(self.examples),
            },
            meta={"evaluated_by": EVALUATED_BY_NUMPY},
        )


class SeenIds:
    """Claim ids seen so far in a file, as sorted runs of 64-bit hashes (8 bytes an id).

    Runs are merged like a binary counter, so adding n ids costs O(n log n) in all and a
    lookup searches O(log n) runs. Two different ids share a hash with odds of about n² / 2⁶⁵
    (one in a million for 10 million claims); such a claim would be quarantined as a
    duplicate, with its reason, never dropped.

    Two sorted runs are merged by a stable sort of the two laid end to end (numpy's timsort
    finds the two runs and merges them in linear time), then repeats are dropped: neither
    ``np.union1d`` nor ``np.unique`` (a full sort, and several temporary copies) is used.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    @property
    def runs(self) -> tuple[np.ndarray, ...]:
        """The sorted runs, oldest (and largest) first; no hash appears twice in a run."""
        return tuple(self._runs)

    @staticmethod
    def hashes(ids: pd.Series) -> np.ndarray:
        """The 64-bit hashes of claim ids (strings)."""
        return pd.util.hash_array(ids.astype(object).to_numpy())

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Which hashes were added before."""
        found = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            found |= run[at] == hashes
        return found

    def add(self, hashes: np.ndarray) -> None:
        """Remember these hashes."""
        if not len(hashes):
            return
        self._runs.append(_distinct(np.sort(hashes, kind="stable")))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            merged = np.concatenate((self._runs[-1], last))
            merged.sort(kind="stable")
            self._runs[-1] = _distinct(merged)


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """A sorted array without its repeats (each value once)."""
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered if keep.all() else ordered[keep]


class ClaimsValidator:
    """Validates one file's claims chunk by chunk: each chunk split into valid and quarantined
    rows as it comes, the checks that need the whole file (repeated claim ids, each column's
    share of nulls) kept across chunks in memory that does not grow with the rows' width.

    Args:
        formats: how the file's feed writes dates and numbers as text.
        window: the dates a claim can carry (default: until today, UTC).
    """

    def __init__(self, formats: ValueFormats = ISO_VALUES, window: DateWindow | None = None):
        self.formats = formats
        self.window = window or DateWindow.until_today()
        self._checks = _row_checks(self.window)
        self._tallies = {c.key: _Tally() for c in self._checks}
        self._failures: dict[str, int] = {}
        self._nulls = dict.fromkeys((c.name for c in BOUNDED_COLUMNS), 0)
        self._rows_in = 0
        self._quarantined = 0
        self._ignored: dict[str, None] = {}
        self._seen = SeenIds()
        self._reasons = ReasonTally()

    @property
    def rows_in(self) -> int:
        """Rows checked so far."""
        return self._rows_in

    def check(
        self, claims: pd.DataFrame, received: pd.DataFrame | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Validate the file's next rows.

        Args:
            claims: the rows with the claim's column names (the feed's mapping applied).
            received: the same rows as they arrived (source column names), kept as text in
                quarantine; default ``claims``.

        Returns:
            ``(valid typed rows, quarantined rows)``; ``source_row`` counts from the file's
            first row.

        Raises:
            fraud_core.schema.SchemaError: a required column is missing.
        """
        coerced = coerce_claims(claims, self.formats, self.window)
        typed, problems = coerced.frame, coerced.problems
        self._ignored.update(dict.fromkeys(coerced.ignored_columns))
        self._count(COERCION_KEY, len(problems))
        for check in self._checks:  # suite order, so a row's reasons read in a stable order
            failing = check.failing(typed)
            self._tallies[check.key].add(typed, check.expectation.configuration.kwargs, failing)
            if not failing.any():
                continue
            kept, reasons = check.describe(typed, claims, np.flatnonzero(failing))
            self._count(check.key, len(kept))
            for row, reason in zip(kept.tolist(), reasons, strict=True):
                problems.setdefault(row, []).append(reason)
        self._repeated_ids(typed, problems)
        for name in self._nulls:
            self._nulls[name] += int(typed[name].isna().sum())
        source = claims if received is None else received
        valid, quarantined = split_valid(source, typed, problems)
        quarantined[ROW_NUMBER_COLUMN] += self._rows_in
        self._rows_in += len(typed)
        self._quarantined += len(quarantined)
        self._reasons.add(quarantined[QUARANTINE_REASON_COLUMN])
        return valid, quarantined

    def _count(self, key: str, n: int) -> None:
        if n:
            self._failures[key] = self._failures.get(key, 0) + n

    def _repeated_ids(self, typed: pd.DataFrame, problems: dict[int, list[str]]) -> None:
        """Quarantine rows whose claim id an earlier chunk held (repeats within the chunk are
        the unique check's); then remember this chunk's ids."""
        ids = typed[ID_COLUMN]
        present = ids.notna().to_numpy()
        hashes = SeenIds.hashes(ids[present])
        earlier = np.flatnonzero(present)[self._seen.contains(hashes)]
        repeats = [r for r in earlier.tolist() if DUPLICATE_REASON not in problems.get(r, ())]
        for row in repeats:
            problems.setdefault(row, []).append(DUPLICATE_REASON)
        key = f"{ID_COLUMN}: unique"
        self._count(key, len(repeats))
        self._tallies[key].unexpected += len(repeats)
        self._seen.add(hashes)

    def finish(self) -> ClaimsValidation:
        """The whole file's outcome: counts, batch-level verdicts and the GX-form report."""
        n = self._rows_in
        batch_failures: dict[str, str] = {}
        report = None
        if n:
            results = [self._tallies[c.key].result(c.expectation) for c in self._checks]
            for col in BOUNDED_COLUMNS:
                expectation = _null_fraction(col)
                nulls = self._nulls[col.name]
                mostly = float(expectation.configuration.kwargs["mostly"])
                # GX's ``mostly``: the share of non-null values must reach it.
                passed = (n - nulls) / n >= mostly
                results.append(_Tally(n, nulls).result(expectation, passed))
                if not passed:
                    allowed = 100.0 * (1.0 - mostly)
                    batch_failures[f"{col.name}: null_fraction"] = (
                        f"{100.0 * nulls / n:.2f}% null (plausible at most {allowed:.2f}%)"
                    )
            report = _report(results)
        return ClaimsValidation(
            rows_in=n,
            rows_quarantined=self._quarantined,
            failures_by_expectation=dict(self._failures),
            ignored_columns=list(self._ignored),
            batch_failures=dict(sorted(batch_failures.items())),
            report=report,
            problems=self._reasons.summary(),
            reasons=self._reasons.counts(),
        )


def _report(results: list[ExpectationValidationResult]) -> ExpectationSuiteValidationResult:
    """The whole suite's outcome, in GX's form."""
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
    )


def validate_claims(
    raw: pd.DataFrame, formats: ValueFormats = ISO_VALUES, window: DateWindow | None = None
) -> ValidatedClaims:
    """Type a frame of claims, run the claims suite and quarantine every failing row.

    The one-chunk form of :class:`ClaimsValidator`, for a frame in memory.

    Args:
        raw: the frame as read from a landing file (any dtypes), with the claim's column names.
        formats: how its dates and numbers are written as text.
        window: the dates a claim can carry (default: until today, UTC).

    Returns:
        Valid typed rows, quarantined raw rows with all their reasons, failure counts and the
        batch-level failures.

    Raises:
        fraud_core.schema.SchemaError: a required column is missing.
    """
    validator = ClaimsValidator(formats, window)
    valid, quarantined = validator.check(raw)
    summary = validator.finish()
    return ValidatedClaims(**vars(summary), valid=valid, quarantined=quarantined)
