"""The claim record: column names, types, allowed values and business rules.

This module is the single source of truth for what a claim looks like. The Great Expectations
suite (expectations/claims.py), the feature code, the model bundle and the API's request model are
all derived from it, so a new column or a tightened range is one edit here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["id", "date", "category", "float", "int", "bool"]


class SchemaError(ValueError):
    """A whole file cannot be read as claims (missing columns, unreadable data)."""


@dataclass(frozen=True)
class Column:
    """One column of the claim record."""

    name: str
    kind: Kind
    description: str
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] | None = None
    # Largest plausible share of nulls (missing or unreadable values) in one batch. Above it the
    # column is broken as a whole (dropped or renamed upstream, a failed join in the extract),
    # not a few bad claims, and the batch is stopped. None: nulls are normal at any rate.
    max_null_fraction: float | None = 0.01


@dataclass(frozen=True)
class PairRule:
    """A rule between two columns: ``left <op> right`` for every row where both are present."""

    name: str
    left: str
    right: str
    op: Literal["<=", ">="]
    description: str


INCIDENT_TYPES = (
    "collision",
    "theft",
    "fire",
    "water_damage",
    "bodily_injury",
    "vandalism",
    "windscreen",
)
REGIONS = ("north", "south", "east", "west", "central")
CHANNELS = ("agent", "broker", "online", "phone")

CLAIM_COLUMNS: tuple[Column, ...] = (
    Column("claim_id", "id", "Unique claim reference from the claims system."),
    Column("policy_id", "id", "Policy the claim is made against."),
    Column("policyholder_id", "id", "Customer who holds the policy."),
    Column("provider_id", "id", "Repairer, clinic or contractor handling the claim."),
    Column("claim_date", "date", "Date the claim was reported."),
    Column("policy_start_date", "date", "Inception date of the policy."),
    Column("incident_type", "category", "What happened.", allowed=INCIDENT_TYPES),
    Column("claimed_amount", "float", "Amount claimed, in currency units.", minimum=0.01),
    Column("coverage_limit", "float", "Maximum payable under the policy.", minimum=1.0),
    Column("deductible", "float", "Policy excess paid by the customer.", minimum=0.0),
    Column(
        "report_delay_days",
        "int",
        "Days between the incident and the report.",
        minimum=0,
        maximum=3650,
    ),
    Column("police_report", "bool", "Whether a police report was filed."),
    Column("witnesses", "int", "Number of witnesses named.", minimum=0, maximum=50),
    Column("region", "category", "Sales region of the policy.", allowed=REGIONS),
    Column("channel", "category", "How the policy was sold.", allowed=CHANNELS),
    Column(
        "asset_age_years",
        "int",
        "Age of the insured vehicle or property, in years.",
        minimum=0,
        maximum=150,
    ),
    Column("prior_claims", "int", "Claims on the policy before this one.", minimum=0, maximum=200),
    # Investigation outcome: unknown (null) for fresh claims, known later for some of them.
    Column(
        "is_fraud",
        "bool",
        "Investigation outcome, when known (label).",
        required=False,
        max_null_fraction=None,
    ),
    # Present only in simulated data: the probability the simulator drew the label from.
    # It is never a feature; it gives the Bayes-optimal score to compare the model against.
    Column(
        "true_fraud_probability",
        "float",
        "Simulator's true fraud probability (oracle; never a feature).",
        required=False,
        minimum=0.0,
        maximum=1.0,
        max_null_fraction=None,
    ),
)

PAIR_RULES: tuple[PairRule, ...] = (
    PairRule(
        "amount_within_limit",
        "claimed_amount",
        "coverage_limit",
        "<=",
        "A claim above the policy's coverage limit cannot be paid as filed.",
    ),
    PairRule(
        "policy_started_before_claim",
        "policy_start_date",
        "claim_date",
        "<=",
        "A claim dated before its policy started is a data-entry error.",
    ),
)

COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in CLAIM_COLUMNS}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in CLAIM_COLUMNS if c.required)
ID_COLUMN = "claim_id"
LABEL_COLUMN = "is_fraud"
ORACLE_COLUMN = "true_fraud_probability"
DECISION_COLUMN = "decision"
# Columns that describe the claim (what a claims system sends). Label and oracle are not inputs.
INPUT_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in CLAIM_COLUMNS if c.name not in (LABEL_COLUMN, ORACLE_COLUMN)
)


class Decision(StrEnum):
    """What a claim's score decides: at or above the model's threshold it is investigated."""

    INVESTIGATE = "investigate"
    FAST_TRACK = "fast_track"

    @staticmethod
    def labels(investigate: np.ndarray) -> np.ndarray:
        """The decision per claim for a boolean array (True: investigate)."""
        return np.where(investigate, Decision.INVESTIGATE.value, Decision.FAST_TRACK.value)


@dataclass(frozen=True)
class ValueFormats:
    """How a feed writes dates and numbers as text (its contract's ``dates`` and ``numbers``).

    The default is the canonical form: ISO 8601 dates, ``.`` as the decimal separator and no
    thousands separator. Values that arrive typed (Parquet numbers and timestamps) are not
    text and are taken as they are.

    Attributes:
        date_formats: ``strptime`` formats tried in order (``%d/%m/%Y``); empty: ISO 8601.
        decimal: the decimal separator.
        thousands: the thousands separator, or None. A value may use it only in whole groups
            of three digits (``4,120.50``), so a misplaced one (``41,20.50``) is not read.
    """

    date_formats: tuple[str, ...] = ()
    decimal: str = "."
    thousands: str | None = None

    def __post_init__(self) -> None:
        if len(self.decimal) != 1 or self.decimal.isdigit():
            raise ValueError(f"the decimal separator must be one non-digit, not {self.decimal!r}")
        if self.thousands is not None and (
            len(self.thousands) != 1 or self.thousands.isdigit() or self.thousands == self.decimal
        ):
            raise ValueError(
                f"the thousands separator must be one non-digit other than the decimal "
                f"separator, not {self.thousands!r}"
            )

    def date_word(self) -> str:
        """How dates should look, for reasons: ``date (YYYY-MM-DD)``."""
        shown = " or ".join(self.date_formats) if self.date_formats else "YYYY-MM-DD"
        return f"date ({shown})"


ISO_VALUES = ValueFormats()

# The oldest date a claim can carry, and the default clock skew allowed past today (a claims
# system a time zone ahead dates a claim tomorrow).
EARLIEST_DATE = dt.date(1900, 1, 1)
DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS = 1


@dataclass(frozen=True)
class DateWindow:
    """The dates a claim can carry: from :data:`EARLIEST_DATE` to the day it is checked
    plus a clock skew. One rule for every date column, applied by the claims contract
    (quarantine reason) and by the scoring API's request model (422), with the same words.
    """

    latest: dt.date
    max_skew_days: int = DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS
    earliest: dt.date = EARLIEST_DATE

    @classmethod
    def until_today(
        cls, max_skew_days: int = DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS, today: dt.date | None = None
    ) -> DateWindow:
        """The window for a check made today (UTC) or on ``today``."""
        if max_skew_days < 0:
            raise ValueError(f"the clock skew must be 0 days or more, not {max_skew_days}")
        day = today if today is not None else dt.datetime.now(dt.UTC).date()
        return cls(day + dt.timedelta(days=max_skew_days), max_skew_days)

    def problem(self, column: str, value: dt.date) -> str | None:
        """Why ``value`` cannot be a date of ``column``, or None when it can."""
        if value < self.earliest:
            return f"{column}: {value.isoformat()} is before {self.earliest.isoformat()}"
        if value > self.latest:
            return (
                f"{column}: {value.isoformat()} is after {self.latest.isoformat()} (today plus "
                f"{self.max_skew_days} day(s) of clock skew): a date in the future"
            )
        return None

    def outside(self, values: pd.Series) -> np.ndarray:
        """Rows of a typed date column outside the window (nulls are not judged)."""
        days = values.to_numpy(dtype="datetime64[ns]")
        lo, hi = np.datetime64(self.earliest, "ns"), np.datetime64(self.latest, "ns")
        with np.errstate(invalid="ignore"):
            return ~np.isnat(days) & ((days < lo) | (days > hi))


@dataclass
class CoercionResult:
    """Claims cast to their declared types, with a list of problems per row."""

    frame: pd.DataFrame
    # Reasons per row position, only for rows that have some (a million clean rows cost nothing).
    problems: dict[int, list[str]] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def bad_mask(self) -> np.ndarray:
        """Rows (by position) that could not be typed cleanly."""
        mask = np.zeros(len(self.frame), dtype=bool)
        mask[list(self.problems)] = True
        return mask


def _show(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def coerce_claims(
    raw: pd.DataFrame, formats: ValueFormats = ISO_VALUES, window: DateWindow | None = None
) -> CoercionResult:
    """Cast a freshly read claims frame to the declared types.

    A missing required column makes the whole file unusable and raises :class:`SchemaError`.
    A value that cannot be cast (``"abc"`` as an amount, ``"yesterday"`` as a date) becomes null
    and the row gets a problem naming the column and the value, so it can be quarantined with
    that reason instead of being dropped. Unknown columns are set aside and reported.

    Args:
        raw: the frame as read from a landing file (any dtypes), with the claim's column names.
        formats: how the feed writes dates and numbers as text.
        window: the dates a claim can carry (default: until today, UTC). A date beyond what a
            typed column holds (after 2262) is a problem here, in the window's words; the
            others outside it are the claims contract's business.

    Returns:
        The typed frame (same row order, fresh RangeIndex) and per-row problems.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise SchemaError(
            f"claims file is missing required column(s): {', '.join(missing)}. "
            f"Expected columns: {', '.join(INPUT_COLUMNS)}."
        )
    raw = raw.reset_index(drop=True)
    window = window or DateWindow.until_today()
    problems: dict[int, list[str]] = {}
    out: dict[str, pd.Series] = {}
    for col in CLAIM_COLUMNS:
        if col.name not in raw.columns:
            out[col.name] = _empty_like(col, len(raw))
            continue
        original = raw[col.name]
        beyond: dict[int, dt.date] = {}
        if col.kind == "date":
            typed, beyond = _cast_dates(original, formats)
        else:
            typed = _cast(original, col, formats)
        lost = original.notna().to_numpy() & typed.isna().to_numpy()
        word = formats.date_word() if col.kind == "date" else _kind_word(col.kind)
        for i in np.flatnonzero(lost).tolist():
            reason = window.problem(col.name, beyond[i]) if i in beyond else None
            problems.setdefault(i, []).append(
                reason or f"{col.name}: {_show(original.iloc[i])} is not a valid {word}"
            )
        out[col.name] = typed
    frame = pd.DataFrame(out)
    ignored = [c for c in raw.columns if c not in COLUMNS_BY_NAME]
    return CoercionResult(frame=frame, problems=problems, ignored_columns=ignored)


def _kind_word(kind: Kind) -> str:
    return {
        "id": "identifier",
        "date": ISO_VALUES.date_word(),
        "category": "category",
        "float": "number",
        "int": "whole number",
        "bool": "true/false value",
    }[kind]


def _empty_like(col: Column, n: int) -> pd.Series:
    return _cast(pd.Series([None] * n, dtype=object), col)


_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def _cast(s: pd.Series, col: Column, formats: ValueFormats = ISO_VALUES) -> pd.Series:
    kind = col.kind
    if kind in ("id", "category"):
        if pd.api.types.is_float_dtype(s):
            # An integer id column with a gap arrives as floats: 1.0 must stay "1".
            whole = s.where(np.isfinite(s) & (s % 1 == 0))
            s = whole.astype("Int64").where(whole.notna(), s)
        result = s.astype("string").str.strip()
        return result.mask(result == "")
    if kind == "date":
        return _cast_dates(s, formats)[0]
    if kind == "float":
        num = _numbers(s, formats)
        return num.where(np.isfinite(num))
    if kind == "int":
        if pd.api.types.is_signed_integer_dtype(s):  # whole numbers already: no float round trip
            return s.astype("Int64")
        num = _numbers(s, formats)
        whole = num.where(np.isfinite(num) & (num % 1 == 0))
        return whole.astype("Int64")
    if kind == "bool":
        if pd.api.types.is_bool_dtype(s):
            return s.astype("boolean")
        text = s.astype("string").str.strip().str.lower()
        mapped = pd.Series(pd.NA, index=s.index, dtype="boolean")
        mapped[text.isin(_TRUE).fillna(False).to_numpy()] = True
        mapped[text.isin(_FALSE).fillna(False).to_numpy()] = False
        return mapped
    raise AssertionError(f"unknown kind {kind}")


def _numbers(s: pd.Series, formats: ValueFormats) -> pd.Series:
    """Numbers as float64 (NaN where unreadable), text read with the feed's separators."""
    if formats == ISO_VALUES or pd.api.types.is_numeric_dtype(s):
        return pd.to_numeric(s, errors="coerce").astype("float64")
    text = s.astype("string").str.strip()
    dec = re.escape(formats.decimal)
    if formats.thousands is not None:
        sep = re.escape(formats.thousands)
        grouped = text.str.fullmatch(rf"[+-]?\d{{1,3}}({sep}\d{{3}})+({dec}\d*)?")
        grouped = grouped.fillna(False).to_numpy(dtype=bool)
        text = text.where(~grouped, text.str.replace(formats.thousands, "", regex=False))
    if formats.decimal != ".":
        # A "." left over is neither this feed's decimal nor a whole thousands group.
        text = text.mask(text.str.contains(".", regex=False).fillna(False).to_numpy(dtype=bool))
        text = text.str.replace(formats.decimal, ".", regex=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


# The days a typed date column (datetime64[ns]) can hold.
_FIRST_DAY = pd.Timestamp.min.ceil("D")
_LAST_DAY = pd.Timestamp.max.floor("D")


def _cast_dates(s: pd.Series, formats: ValueFormats) -> tuple[pd.Series, dict[int, dt.date]]:
    """Dates to days: text in the feed's formats (default ISO 8601, optionally with a time and
    offset, taken in UTC), or timestamps as they arrived.

    Returns:
        The typed column, and the rows whose date was read but lies beyond what the column
        holds (null in it), with that date.
    """
    if pd.api.types.is_datetime64_any_dtype(s):
        parsed = s.dt.tz_convert("UTC") if s.dt.tz is not None else s
    else:
        text = s.astype("string").str.strip()
        if not formats.date_formats:
            parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        else:
            parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
            for fmt in formats.date_formats:
                todo = parsed.isna() & text.notna()
                if not todo.any():
                    break
                parsed[todo] = pd.to_datetime(text[todo], errors="coerce", format=fmt, utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    days = parsed.dt.normalize()
    beyond = (days.notna() & ((days < _FIRST_DAY) | (days > _LAST_DAY))).to_numpy(dtype=bool)
    out = {int(i): days.iloc[i].date() for i in np.flatnonzero(beyond)}
    return days.mask(beyond).astype("datetime64[ns]"), out


# The dtype coerce_claims gives each kind of column.
KIND_DTYPES: dict[Kind, str] = {
    "id": "string",
    "category": "string",
    "date": "datetime64[ns]",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
}


def claims_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Already validated claim records (python values) as the frame ``coerce_claims`` gives.

    For records checked by the API's request model: nothing is parsed again, so it is much
    cheaper than ``coerce_claims`` for one claim. Absent optional columns become nulls.
    """
    return pd.DataFrame(
        {
            col.name: pd.Series([r.get(col.name) for r in records], dtype=KIND_DTYPES[col.kind])
            for col in CLAIM_COLUMNS
        }
    )


QUARANTINE_REASON_COLUMN = "quarantine_reasons"
# A quarantined row's reasons, each ``subject: detail`` (a column or a rule, then what is wrong),
# are joined with this separator in QUARANTINE_REASON_COLUMN.
REASON_SEPARATOR = "; "
ROW_NUMBER_COLUMN = "source_row"


def split_valid(
    raw: pd.DataFrame, typed: pd.DataFrame, problems: Mapping[int, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into valid (typed) and quarantined (as received, with their reasons).

    Quarantined rows keep every value exactly as it arrived (as text), so a rejected
    ``"12,50"`` amount can be fixed and replayed; nothing is dropped.

    Args:
        raw: the frame as read from the landing file.
        typed: ``coerce_claims(raw).frame`` (same row order).
        problems: reasons per row position; a row without any (or with an empty list) is valid.

    Returns:
        ``(valid, quarantined)``; ``len(valid) + len(quarantined) == len(raw)``.
    """
    if len(raw) != len(typed) or any(not 0 <= i < len(typed) for i in problems):
        raise ValueError("raw, typed and problems must describe the same rows")
    bad = np.zeros(len(typed), dtype=bool)
    bad[[i for i, p in problems.items() if p]] = True
    valid = typed.loc[~bad].reset_index(drop=True)
    rejected = raw.reset_index(drop=True).loc[bad]
    quarantined = rejected.astype("string").astype(object).where(rejected.notna(), None)
    rows = np.flatnonzero(bad)
    quarantined.insert(0, ROW_NUMBER_COLUMN, rows.astype("int64"))
    reasons = [REASON_SEPARATOR.join(problems[i]) for i in rows.tolist()]
    quarantined[QUARANTINE_REASON_COLUMN] = pd.Series(
        reasons, index=quarantined.index, dtype=object
    )
    return valid, quarantined.reset_index(drop=True)
