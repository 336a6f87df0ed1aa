"""Tests for expectations.claims: the GX suite derived from the schema and row quarantine."""

from __future__ import annotations

import datetime as dt
from typing import Any

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import pytest

from expectations import claims as claims_suite
from expectations.claims import (
    EVALUATED_BY_NUMPY,
    ClaimsValidator,
    ValidatedClaims,
    build_claims_suite,
    validate_claims,
)
from fraud_core.schema import (
    CLAIM_COLUMNS,
    INPUT_COLUMNS,
    LABEL_COLUMN,
    ORACLE_COLUMN,
    PAIR_RULES,
    QUARANTINE_REASON_COLUMN,
    ROW_NUMBER_COLUMN,
    DateWindow,
    SchemaError,
    ValueFormats,
    coerce_claims,
)

REGION_REASON = "region: 'mars' is not one of north, south, east, west, central"
# Columns with a plausible share of nulls; the label and the oracle may be null at any rate.
BOUNDED = [c for c in CLAIM_COLUMNS if c.max_null_fraction is not None]


def _row(i: int) -> dict[str, Any]:
    return {
        "claim_id": f"C{i:04d}",
        "policy_id": f"P{i % 3:04d}",
        "policyholder_id": f"H{i % 3:04d}",
        "provider_id": f"V{i % 2:03d}",
        "claim_date": "2024-02-01",
        "policy_start_date": "2023-01-15",
        "incident_type": ("collision", "theft", "fire", "windscreen")[i % 4],
        "claimed_amount": 1200.0 + i,
        "coverage_limit": 10000.0,
        "deductible": 250.0,
        "report_delay_days": 3 + i,
        "police_report": i % 2 == 0,
        "witnesses": i % 3,
        "region": ("north", "south", "east", "west", "central")[i % 5],
        "channel": ("agent", "broker", "online", "phone")[i % 4],
        "asset_age_years": 4 + i,
        "prior_claims": i % 2,
    }


def claims(n: int = 5, **changes: dict[str, Any]) -> pd.DataFrame:
    """``n`` valid claims; ``changes={row: {column: value}}`` via ``claims(n, r2={...})``."""
    rows = [_row(i) for i in range(n)]
    for key, values in changes.items():
        rows[int(key.removeprefix("r"))].update(values)
    frame = pd.DataFrame(rows)
    assert list(frame.columns) == list(INPUT_COLUMNS)
    return frame


def _reasons(result: ValidatedClaims) -> dict[int, str]:
    q = result.quarantined
    return dict(zip(q[ROW_NUMBER_COLUMN], q[QUARANTINE_REASON_COLUMN], strict=True))


def _check_invariants(result: ValidatedClaims, rows_in: int) -> None:
    assert result.rows_in == rows_in
    assert len(result.valid) + len(result.quarantined) == rows_in


def test_suite_is_built_from_the_schema() -> None:
    suite = build_claims_suite()
    assert suite.name == "claims"
    assert all(e.meta and e.meta.get("intent") for e in suite.expectations)
    assert all(e.notes and e.meta["intent"] in e.notes for e in suite.expectations)
    n_required = sum(c.required for c in CLAIM_COLUMNS)
    n_ranges = sum(c.minimum is not None or c.maximum is not None for c in CLAIM_COLUMNS)
    n_sets = sum(bool(c.allowed) for c in CLAIM_COLUMNS)
    n_dates = sum(c.kind == "date" for c in CLAIM_COLUMNS)
    n_row_level = n_required + n_ranges + n_dates + n_sets + 1 + len(PAIR_RULES)
    assert len(suite.expectations) == n_row_level + len(BOUNDED)
    by = [e.meta["evaluated_by"] for e in suite.expectations]
    assert by.count(EVALUATED_BY_NUMPY) == len(suite.expectations)
    pairs = [
        e for e in suite.expectations if isinstance(e, gxe.ExpectColumnPairValuesAToBeGreaterThanB)
    ]
    # left <= right  is checked as  A=right >= B=left
    assert {(e.column_A, e.column_B) for e in pairs} == {
        ("coverage_limit", "claimed_amount"),
        ("claim_date", "policy_start_date"),
    }
    assert all(e.or_equal for e in pairs)


def test_clean_frame_passes_entirely() -> None:
    raw = claims(6)
    result = validate_claims(raw)
    _check_invariants(result, 6)
    assert result.quarantined.empty
    assert result.failures_by_expectation == {}
    assert result.failure_rate == 0.0
    assert result.ignored_columns == []
    expected = coerce_claims(raw).frame
    pd.testing.assert_frame_equal(result.valid, expected)


@pytest.mark.parametrize(
    ("change", "reason", "key"),
    [
        (
            {"claimed_amount": -5.0},
            "claimed_amount: -5.0 is below the minimum 0.01",
            "claimed_amount: between",
        ),
        (
            {"claimed_amount": 12000.0, "coverage_limit": 10000.0},
            "amount_within_limit: claimed_amount 12000.0 > coverage_limit 10000.0",
            "amount_within_limit",
        ),
        ({"region": "mars"}, REGION_REASON, "region: in_set"),
        ({"policyholder_id": None}, "policyholder_id: missing", "policyholder_id: not_null"),
        (
            {"policy_start_date": "2024-03-01", "claim_date": "2024-02-01"},
            "policy_started_before_claim: policy_start_date 2024-03-01 > claim_date 2024-02-01",
            "policy_started_before_claim",
        ),
        ({"claimed_amount": "abc"}, "claimed_amount: 'abc' is not a valid number", "coercion"),
        (
            {"report_delay_days": -3},
            "report_delay_days: -3 is below the minimum 0",
            "report_delay_days: between",
        ),
        ({"witnesses": 51}, "witnesses: 51 is above the maximum 50", "witnesses: between"),
        ({"witnesses": "two"}, "witnesses: 'two' is not a valid whole number", "coercion"),
    ],
)
def test_each_bad_row_is_quarantined_with_its_reason(
    change: dict[str, Any], reason: str, key: str
) -> None:
    raw = claims(5, r2=change)
    result = validate_claims(raw)
    _check_invariants(result, 5)
    assert _reasons(result) == {2: reason}
    assert result.failures_by_expectation == {key: 1}
    assert result.failure_rate == pytest.approx(0.2)
    assert result.valid["claim_id"].tolist() == ["C0000", "C0001", "C0003", "C0004"]


def test_duplicate_claim_ids_keep_the_first_occurrence() -> None:
    raw = claims(5, r2={"claim_id": "C0000"}, r4={"claim_id": "C0000"}, r3={"claim_id": "C0001"})
    result = validate_claims(raw)
    _check_invariants(result, 5)
    duplicate = "claim_id: duplicate of an earlier row"
    assert _reasons(result) == {2: duplicate, 3: duplicate, 4: duplicate}
    assert result.valid["claim_id"].tolist() == ["C0000", "C0001"]
    assert result.failures_by_expectation == {"claim_id: unique": 3}


def test_a_value_that_failed_coercion_is_not_also_missing_or_a_pair_failure() -> None:
    raw = claims(3, r1={"claimed_amount": "abc", "policy_start_date": "yesterday"})
    result = validate_claims(raw)
    assert _reasons(result) == {  # coercion reasons follow the schema's column order
        1: "policy_start_date: 'yesterday' is not a valid date (YYYY-MM-DD); "
        "claimed_amount: 'abc' is not a valid number"
    }
    assert result.failures_by_expectation == {"coercion": 1}


def test_every_reason_of_a_row_is_listed_in_suite_order() -> None:
    raw = claims(
        4,
        r0={"claimed_amount": 12000.0, "region": "mars"},
        r3={"claim_id": "C0000", "witnesses": "x", "channel": None, "deductible": -1.0},
    )
    result = validate_claims(raw)
    _check_invariants(result, 4)
    assert _reasons(result) == {
        0: f"{REGION_REASON}; amount_within_limit: claimed_amount 12000.0 > coverage_limit 10000.0",
        3: "witnesses: 'x' is not a valid whole number; deductible: -1.0 is below the minimum 0.0; "
        "channel: missing; claim_id: duplicate of an earlier row",
    }


def test_failures_by_expectation_counts_rows_per_check() -> None:
    raw = claims(
        10,
        r1={"claimed_amount": -1.0},
        r2={"claimed_amount": -2.0, "region": "mars"},
        r3={"claimed_amount": "abc"},
        r4={"claim_id": "C0000"},
        r5={"claim_id": "C0000"},
        r6={"policyholder_id": None},
    )
    result = validate_claims(raw)
    _check_invariants(result, 10)
    assert result.failures_by_expectation == {
        "coercion": 1,
        "policyholder_id: not_null": 1,
        "claimed_amount: between": 2,
        "region: in_set": 1,
        "claim_id: unique": 2,
    }
    assert len(result.quarantined) == 6
    assert result.failure_rate == pytest.approx(0.6)


def test_quarantined_rows_keep_values_as_received() -> None:
    raw = claims(3, r1={"claimed_amount": "abc"})
    raw.index = ["a", "b", "c"]  # source_row is the position, not the label
    result = validate_claims(raw)
    row = result.quarantined.iloc[0]
    assert row[ROW_NUMBER_COLUMN] == 1
    assert row["claimed_amount"] == "abc"
    assert row["claim_id"] == "C0001"
    assert list(result.quarantined.columns) == [
        ROW_NUMBER_COLUMN,
        *INPUT_COLUMNS,
        QUARANTINE_REASON_COLUMN,
    ]


def test_valid_rows_have_schema_dtypes() -> None:
    raw = claims(4, r1={"witnesses": "many"})
    result = validate_claims(raw)
    expected = coerce_claims(raw).frame.dtypes
    pd.testing.assert_series_equal(result.valid.dtypes, expected)
    assert result.valid["witnesses"].dtype == "Int64"


def test_missing_required_column_raises_schema_error() -> None:
    with pytest.raises(SchemaError, match="coverage_limit"):
        validate_claims(claims(3).drop(columns=["coverage_limit"]))


def test_unknown_columns_are_ignored_and_reported() -> None:
    result = validate_claims(claims(3).assign(notes="hello"))
    assert result.ignored_columns == ["notes"]
    assert "notes" not in result.valid.columns
    assert len(result.valid) == 3


def test_empty_batch() -> None:
    result = validate_claims(claims(3).iloc[:0])
    _check_invariants(result, 0)
    assert result.failure_rate == 0.0
    assert result.failures_by_expectation == {}


# --- plausible share of nulls per column (batch level, over the whole file) ----------------------
def test_every_column_but_label_and_oracle_has_a_null_fraction_bound() -> None:
    suite = build_claims_suite()
    keys = {
        e.meta["check"] for e in suite.expectations if e.meta["check"].endswith("null_fraction")
    }
    assert keys == {f"{c.name}: null_fraction" for c in BOUNDED}
    # Fresh claims have no investigation outcome yet; real claims have no simulator oracle.
    assert {c.name for c in CLAIM_COLUMNS} - {c.name for c in BOUNDED} == {
        LABEL_COLUMN,
        ORACLE_COLUMN,
    }
    bounds = [e for e in suite.expectations if e.meta["check"].endswith("null_fraction")]
    assert all(isinstance(e, gxe.ExpectColumnValuesToNotBeNull) for e in bounds)
    assert all(e.mostly == pytest.approx(0.99) for e in bounds)


def _null_in(column: str, rows: range) -> dict[str, dict[str, Any]]:
    return {f"r{i}": {column: None} for i in rows}


@pytest.mark.parametrize("column", [c.name for c in BOUNDED])
def test_each_null_fraction_bound_catches_a_column_lost_upstream(column: str) -> None:
    # 2 nulls in 100 rows: over the plausible 1%, though the failure rate (2%) is tolerable.
    result = validate_claims(claims(100, **_null_in(column, range(10, 12))))
    assert result.batch_failures == {
        f"{column}: null_fraction": "2.00% null (plausible at most 1.00%)"
    }
    assert result.failures_by_expectation == {f"{column}: not_null": 2}  # rows still held
    assert _reasons(result) == {10: f"{column}: missing", 11: f"{column}: missing"}
    # 1 null in 100 rows is plausible: that row is quarantined, the batch is fine.
    assert validate_claims(claims(100, **_null_in(column, range(10, 11)))).batch_failures == {}


def test_unreadable_values_count_as_nulls_for_the_bound() -> None:
    raw = claims(50, r3={"witnesses": "two"}, r7={"witnesses": "three"})
    result = validate_claims(raw)
    assert result.batch_failures == {
        "witnesses: null_fraction": "4.00% null (plausible at most 1.00%)"
    }
    assert result.failures_by_expectation == {"coercion": 2}


def test_label_and_oracle_may_be_missing_entirely() -> None:
    raw = claims(20).assign(is_fraud=None)  # fresh claims: no outcome yet; no oracle column
    result = validate_claims(raw)
    assert result.batch_failures == {}
    assert result.quarantined.empty


# --- numpy evaluation matches GX's --------------------------------------------------------------
def _everything_wrong() -> pd.DataFrame:
    """A batch failing every kind of row-level expectation, with nulls where GX skips them."""
    return claims(
        12,
        r0={"claimed_amount": -5.0, "region": "mars"},
        r1={"claimed_amount": 20000.0, "channel": None, "witnesses": 51},
        r2={"claim_id": "C0000", "report_delay_days": -1, "asset_age_years": None},
        r3={"claim_id": None, "policy_start_date": "2024-03-01", "incident_type": "meteor"},
        r4={"claim_id": None, "claim_date": None, "coverage_limit": None, "deductible": -1.0},
        r5={"claim_id": "C0006", "prior_claims": 201, "region": None, "policyholder_id": None},
        r7={"claimed_amount": None, "asset_age_years": 151, "channel": "fax"},
        r8={"policy_start_date": None, "witnesses": None, "coverage_limit": 0.5},
        r9={"report_delay_days": 4000, "police_report": None, "provider_id": ""},
        r10={"claim_date": "2199-01-01"},  # after today: outside the date window
        r11={"policy_start_date": "1850-06-30"},  # before 1900
    )


def test_row_level_checks_flag_the_rows_gx_flags() -> None:
    """GX itself, on the same typed batch, flags exactly the rows numpy flags for each check."""
    import great_expectations as gx

    typed = coerce_claims(_everything_wrong()).frame
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("t")
        .add_dataframe_asset("t")
        .add_batch_definition_whole_dataframe("t")
    )
    checks = claims_suite._checks()
    row_level = [c.expectation for c in checks]
    suite = context.suites.add(gx.ExpectationSuite(name="t", expectations=row_level))
    definition = gx.ValidationDefinition(name="t", data=batch, suite=suite)
    result = definition.run(batch_parameters={"dataframe": typed}, result_format="COMPLETE")
    by_key = {r.expectation_config.meta["check"]: r for r in result.results}
    assert set(by_key) == {c.key for c in checks}
    flagged = {}
    for check in checks:
        gx_rows = sorted(by_key[check.key].result.get("unexpected_index_list") or [])
        assert gx_rows == np.flatnonzero(check.failing(typed)).tolist(), check.key
        flagged[check.key] = gx_rows
    assert sum(map(bool, flagged.values())) >= 15  # the batch did exercise the checks


def test_report_holds_every_expectation_with_who_evaluated_it() -> None:
    result = validate_claims(claims(100, **_null_in("region", range(3)), r50={"witnesses": 99}))
    report = result.report
    assert report is not None and not report.success
    assert len(report.results) == len(build_claims_suite().expectations)
    failed = {r.expectation_config.meta["check"]: r for r in report.results if not r.success}
    assert set(failed) == {"region: not_null", "region: null_fraction", "witnesses: between"}
    assert failed["witnesses: between"].result["partial_unexpected_list"] == ["99"]
    assert failed["witnesses: between"].meta["evaluated_by"] == EVALUATED_BY_NUMPY
    assert failed["region: null_fraction"].result["unexpected_count"] == 3
    assert report.statistics["unsuccessful_expectations"] == 3


def _gx_run(expectations: list, frame: pd.DataFrame):
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("t")
        .add_dataframe_asset("t")
        .add_batch_definition_whole_dataframe("t")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="t", expectations=expectations))
    definition = gx.ValidationDefinition(name="t", data=batch, suite=suite)
    return definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")


@pytest.mark.parametrize("nulls", [0, 1, 2, 5])
def test_null_fraction_verdicts_are_gxs(nulls: int) -> None:
    """GX's own null-fraction expectations, on the whole typed batch, reach the verdicts the
    running counts reach."""
    raw = claims(100, **_null_in("region", range(nulls)), r50={"witnesses": None})
    typed = coerce_claims(raw).frame
    bounds = claims_suite._batch_expectations()
    result = _gx_run(bounds, typed)
    gx_failed = {r.expectation_config.meta["check"] for r in result.results if not r.success}
    assert gx_failed == set(validate_claims(raw).batch_failures)
    assert gx_failed == ({"region: null_fraction"} if nulls > 1 else set())


# --- a file validated chunk by chunk --------------------------------------------------------------
def _in_chunks(raw: pd.DataFrame, sizes: list[int]) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    validator = ClaimsValidator()
    valid, quarantined, start = [], [], 0
    for size in sizes:
        v, q = validator.check(raw.iloc[start : start + size].reset_index(drop=True))
        valid.append(v)
        quarantined.append(q)
        start += size
    assert start == len(raw)
    return (
        pd.concat(valid, ignore_index=True),
        pd.concat(quarantined, ignore_index=True),
        validator.finish(),
    )


def test_chunks_give_what_the_whole_frame_gives() -> None:
    raw = claims(
        30,
        r2={"claimed_amount": "abc"},
        r11={"region": "mars"},
        r17={"policyholder_id": None},
        r25={"witnesses": 99},
        **_null_in("channel", range(26, 28)),
    )
    whole = validate_claims(raw)
    valid, quarantined, summary = _in_chunks(raw, [7, 1, 12, 10])
    pd.testing.assert_frame_equal(valid, whole.valid)
    pd.testing.assert_frame_equal(quarantined, whole.quarantined)
    assert summary.failures_by_expectation == whole.failures_by_expectation
    assert summary.batch_failures == whole.batch_failures
    assert summary.batch_failures["channel: null_fraction"] == (
        "6.67% null (plausible at most 1.00%)"  # 2 of 30
    )
    assert (summary.rows_in, summary.rows_quarantined) == (30, len(whole.quarantined))
    assert summary.problems == whole.problems and summary.reasons == whole.reasons
    assert summary.report is not None and whole.report is not None
    assert [r.result["unexpected_count"] for r in summary.report.results] == [
        r.result["unexpected_count"] for r in whole.report.results
    ]


def test_a_claim_id_repeated_in_a_later_chunk_is_quarantined() -> None:
    raw = claims(10, r8={"claim_id": "C0001"}, r9={"claim_id": "C0007"})
    valid, quarantined, summary = _in_chunks(raw, [4, 4, 2])
    assert quarantined[ROW_NUMBER_COLUMN].tolist() == [8, 9]
    assert set(quarantined[QUARANTINE_REASON_COLUMN]) == {"claim_id: duplicate of an earlier row"}
    assert valid["claim_id"].is_unique and len(valid) == 8
    assert summary.failures_by_expectation == {"claim_id: unique": 2}


def test_seen_ids_find_every_earlier_id_across_many_merges() -> None:
    rng = np.random.default_rng(18)
    seen, expected = claims_suite.SeenIds(), set()
    for _ in range(400):  # batches of 0 to 300 ids from 20,000, repeats within and across
        ids = rng.integers(0, 20_000, rng.integers(0, 300)).astype(np.uint64)
        found = seen.contains(ids)
        assert found.tolist() == [int(i) in expected for i in ids]
        seen.add(ids)
        expected.update(int(i) for i in ids)
        for run in seen.runs:  # sorted, each hash once
            assert (np.diff(run.astype(np.int64)) > 0).all()
        assert len(seen.runs) <= 2 * int(np.log2(max(len(expected), 2))) + 1  # merged
    assert len(expected) > 15_000
    assert set().union(*(r.tolist() for r in seen.runs)) == expected
    everything = np.arange(20_000, dtype=np.uint64)
    assert seen.contains(everything).tolist() == [int(i) in expected for i in everything]


def test_seen_ids_merge_keeps_each_hash_once() -> None:
    seen = claims_suite.SeenIds()
    seen.add(np.array([5, 3, 5, 9], dtype=np.uint64))
    seen.add(np.array([9, 3, 1], dtype=np.uint64))  # merged with the first run (3 <= 2 * 3)
    assert [r.tolist() for r in seen.runs] == [[1, 3, 5, 9]]


# --- dates a claim cannot carry, and feeds' formats ----------------------------------------------
WINDOW = DateWindow.until_today(1, today=dt.date(2026, 3, 1))


def test_dates_outside_the_window_are_quarantined_with_the_reason() -> None:
    raw = claims(
        6,
        r1={"claim_date": "2026-03-02"},  # tomorrow: within the skew
        r2={"claim_date": "2026-03-03"},
        r3={"claim_date": "9999-12-31"},  # 'unknown' in some systems; beyond what pandas holds
        r4={"policy_start_date": "1899-12-31"},
    )
    result = validate_claims(raw, window=WINDOW)
    future = "(today plus 1 day(s) of clock skew): a date in the future"
    assert _reasons(result) == {
        2: f"claim_date: 2026-03-03 is after 2026-03-02 {future}",
        3: f"claim_date: 9999-12-31 is after 2026-03-02 {future}",
        4: "policy_start_date: 1899-12-31 is before 1900-01-01",
    }
    assert result.failures_by_expectation == {
        "coercion": 1,  # 9999-12-31 cannot be held as a typed date: coercion says why
        "claim_date: date_window": 1,
        "policy_start_date: date_window": 1,
    }
    assert DateWindow.until_today(0, today=dt.date(2026, 3, 1)).latest == dt.date(2026, 3, 1)
    with pytest.raises(ValueError, match="clock skew must be 0 days or more"):
        DateWindow.until_today(-1)


def test_feed_formats_read_dates_and_numbers_as_the_source_writes_them() -> None:
    raw = (
        claims(4)
        .astype(str)
        .assign(policy_start_date="15/01/2023", coverage_limit="10.000", deductible="250,0")
    )
    raw["claim_date"] = ["01/02/2024", "31/01/2024", "2024-02-01", "30/02/2024"]
    raw["claimed_amount"] = ["1.200,50", "1200,5", "1,200.50", "12.00,5"]
    formats = ValueFormats(date_formats=("%d/%m/%Y",), decimal=",", thousands=".")
    result = validate_claims(raw, formats, WINDOW)
    assert result.valid["claim_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-02-01",
        "2024-01-31",
    ]
    assert result.valid["claimed_amount"].tolist() == [1200.5, 1200.5]
    assert _reasons(result) == {
        2: "claim_date: '2024-02-01' is not a valid date (%d/%m/%Y); "
        "claimed_amount: '1,200.50' is not a valid number",
        3: "claim_date: '30/02/2024' is not a valid date (%d/%m/%Y); "
        "claimed_amount: '12.00,5' is not a valid number",
    }
    grouped = claims(4).assign(claimed_amount=["4,120.50", "41,20.50", "4120.5", "-1,000"])
    typed = coerce_claims(grouped, ValueFormats(thousands=","), WINDOW)
    amounts = typed.frame["claimed_amount"].tolist()
    assert amounts[::2] == [4120.5, 4120.5] and amounts[3] == -1000.0
    # A separator must stand between whole groups of three digits.
    assert typed.problems == {1: ["claimed_amount: '41,20.50' is not a valid number"]}
