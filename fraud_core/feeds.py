"""Feed contracts: how each source system's export maps onto the one claim schema.

An insurer's claims come from several systems, each exporting its own way. A feeds file (YAML,
path in the ``FEEDS_FILE`` setting) declares a section per source: which landed files it
covers, their column names, CSV dialect, date and number formats, and constants for columns
the source lacks. Each landed file is read with the first section whose ``match`` patterns
take its name (relative to the landing zone), else with :data:`DEFAULT_FEED`: the claim
schema's own names (matched without regard to case), a sniffed CSV dialect, ISO dates and
``.`` decimals. The feed's name, version and fingerprint are recorded with every batch.

Example (docs/data-intake.md#feed-contracts has the whole reference)::

    sources:
      legacy_core:                  # the source's name, recorded with each batch
        match: ["legacy/*", "*_LEGACY.csv"]
        version: "2025-06"          # yours: bump it when the export changes
        csv: {delimiter: ";", encoding: cp1252}
        columns: {SCHADEN_NR: claim_id, DATUM: claim_date, BETRAG: claimed_amount}
        dates: {formats: ["%d.%m.%Y"]}
        numbers: {decimal: ",", thousands: "."}
        constants: {channel: broker}

Validation errors name the file, the source and the key, and say what is allowed.
"""

from __future__ import annotations

import codecs
import fnmatch
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from fraud_core.schema import (
    COLUMNS_BY_NAME,
    INPUT_COLUMNS,
    REQUIRED_COLUMNS,
    SchemaError,
    ValueFormats,
)

FEEDS_DOC = "docs/data-intake.md#feed-contracts"
_SHOWN_COLUMNS = 30


class FeedsError(ValueError):
    """The feeds file cannot be used: the message names the file, the source and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_char(value: str | None, what: str) -> str | None:
    if value is not None and len(value) != 1:
        raise ValueError(f"{what} must be one character, not {value!r}")
    return value


class CsvDialect(_Strict):
    """How a CSV export is written; anything left out is sniffed from the file's start."""

    delimiter: str | None = Field(
        default=None, description="one character; sniffed among , ; tab |"
    )
    quote: str | None = Field(default=None, description='one character; default "')
    encoding: str | None = Field(
        default=None,
        description="a Python codec name (utf-8, cp1252, latin-1...); default UTF-8, else "
        "Windows-1252",
    )

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        return _one_char(value, "the delimiter")

    @field_validator("quote")
    @classmethod
    def _quote(cls, value: str | None) -> str | None:
        return _one_char(value, "the quote character")

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(
                    f"unknown encoding {value!r}: use a Python codec name such as utf-8, "
                    "cp1252 or latin-1"
                ) from None
        return value


class DateFormats(_Strict):
    """How dates are written: ``strptime`` formats tried in order (empty: ISO 8601)."""

    formats: list[str] = Field(default_factory=list)

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        for fmt in value:
            if "%" not in fmt:
                raise ValueError(
                    f"{fmt!r} is not a strptime format: write it with directives, such as "
                    "%d/%m/%Y for 06/01/2025"
                )
        return value


class NumberFormat(_Strict):
    """How numbers are written as text."""

    decimal: str = "."
    thousands: str | None = None

    @model_validator(mode="after")
    def _separators(self) -> NumberFormat:
        ValueFormats(decimal=self.decimal, thousands=self.thousands)  # raises what is wrong
        return self


def _claim_column(name: str, what: str) -> str:
    if name not in COLUMNS_BY_NAME:
        raise ValueError(
            f"{what} {name!r} is not a claim column: use one of {', '.join(COLUMNS_BY_NAME)}"
        )
    return name


class FeedContract(_Strict):
    """One source's contract: which files, and how to read them as claims."""

    name: str
    match: list[str] = Field(
        min_length=1,
        description="glob patterns on the file's path in the landing zone (case-insensitive; "
        "'*' crosses folders); a pattern ending in '/' is a prefix",
    )
    version: str = Field(min_length=1, description="the contract's version, recorded per batch")
    format: Literal["parquet", "csv", "jsonl", "json"] | None = Field(
        default=None, description="the files' format whatever their extension (default: from it)"
    )
    csv: CsvDialect = CsvDialect()
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="source column -> claim column (case-insensitive); claim names need none",
    )
    dates: DateFormats = DateFormats()
    numbers: NumberFormat = NumberFormat()
    constants: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="claim column -> value, for columns the source lacks"
    )
    _plans: dict[tuple[str, ...], dict[str, str]] = PrivateAttr(default_factory=dict)

    @field_validator("match", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        by_target: dict[str, str] = {}
        for source, target in value.items():
            _claim_column(target, "target")
            key = source.strip().casefold()
            if key in seen:
                raise ValueError(f"{seen[key]!r} and {source!r} are the same column (case aside)")
            if target in by_target:
                raise ValueError(
                    f"{by_target[target]!r} and {source!r} both map to {target}: keep one"
                )
            seen[key], by_target[target] = source, target
        return value

    @field_validator("constants")
    @classmethod
    def _constants(cls, value: dict[str, Any]) -> dict[str, Any]:
        for column in value:
            _claim_column(column, "constant")
        return value

    @model_validator(mode="after")
    def _constant_or_column(self) -> FeedContract:
        both = set(self.constants) & set(self.columns.values())
        if both:
            raise ValueError(
                f"{', '.join(sorted(both))}: both a constant and a mapped column; keep one"
            )
        return self

    # --- use --------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """``name@version``: how batches name their feed."""
        return f"{self.name}@{self.version}"

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of the contract as declared: changes with any edit of its section."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def lineage(self) -> dict[str, str]:
        """What a batch records about the feed it was read with."""
        return {"feed": self.name, "feed_version": self.version, "feed_hash": self.fingerprint}

    def matches(self, name: str) -> bool:
        """Whether the landed file ``name`` (relative path, ``/``-separated) is this feed's."""
        path = name.strip("/").casefold()
        return any(
            fnmatch.fnmatchcase(path, p.casefold() + ("*" if p.endswith("/") else ""))
            for p in self.match
        )

    def value_formats(self) -> ValueFormats:
        """The feed's date and number formats, for typing its values."""
        return ValueFormats(
            date_formats=tuple(self.dates.formats),
            decimal=self.numbers.decimal,
            thousands=self.numbers.thousands,
        )

    def column_plan(self, columns: tuple[str, ...]) -> dict[str, str]:
        """Which source column gives which claim column (others are left as they are); worked
        out once per set of columns.

        Raises:
            SchemaError: two source columns give one claim column, or a constant's column is
                also in the file, or a required claim column is missing.
        """
        if columns in self._plans:
            return self._plans[columns]
        mapping = {source.strip().casefold(): target for source, target in self.columns.items()}
        schema = {name.casefold(): name for name in COLUMNS_BY_NAME}
        plan: dict[str, str] = {}
        given: dict[str, str] = {}
        for source in columns:
            key = str(source).strip().casefold()
            target = mapping.get(key) or schema.get(key)
            if target is None:
                continue
            if target in given:
                raise SchemaError(
                    f"columns {given[target]!r} and {source!r} both give {target} "
                    f"(feed {self.name!r}): drop one from the export, or map one elsewhere"
                )
            if target in self.constants:
                raise SchemaError(
                    f"column {source!r} gives {target}, which feed {self.name!r} sets as a "
                    "constant: remove the constant or the column"
                )
            plan[source], given[target] = target, source
        missing = [c for c in REQUIRED_COLUMNS if c not in given and c not in self.constants]
        if missing:
            shown = ", ".join(map(str, columns[:_SHOWN_COLUMNS]))
            extra = len(columns) - _SHOWN_COLUMNS
            more = f" and {extra} more" if extra > 0 else ""
            raise SchemaError(
                f"claims file is missing required column(s): {', '.join(missing)}. "
                f"Expected columns: {', '.join(INPUT_COLUMNS)}. The file has: {shown}{more} "
                f"(feed {self.name!r}; map other names onto the claim's in a feed contract, "
                f"see {FEEDS_DOC})."
            )
        self._plans[columns] = plan
        return plan

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows as the claim schema names them: mapped columns renamed, constants added,
        other columns kept under their own names (reported as ignored)."""
        plan = self.column_plan(tuple(frame.columns))
        out = frame.rename(columns=plan, copy=False) if plan else frame.copy(deep=False)
        for column, value in self.constants.items():
            out[column] = value
        return out


DEFAULT_FEED = FeedContract(name="default", match=["*"], version="1")


@dataclass(frozen=True)
class Feeds:
    """The contracts of a feeds file, in file order; :data:`DEFAULT_FEED` for the rest."""

    contracts: tuple[FeedContract, ...] = ()
    source: str = ""

    def for_file(self, name: str) -> FeedContract:
        """The contract of the landed file ``name``: the first that matches, else the default."""
        return next((c for c in self.contracts if c.matches(name)), DEFAULT_FEED)


class _FeedsFile(_Strict):
    sources: dict[str, dict[str, Any]]


def parse_feeds(text: str, source: str = "<feeds>") -> Feeds:
    """Feed contracts from YAML text (``source`` names it in errors).

    Raises:
        FeedsError: invalid YAML, or a section that breaks the contract's rules.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FeedsError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        return Feeds((), source)
    try:
        sections = _FeedsFile.model_validate(data).sources
    except ValidationError as exc:
        raise FeedsError(
            f"{source}: expected a 'sources:' mapping of source name -> contract: "
            + "; ".join(_problem(e) for e in exc.errors(include_url=False))
        ) from None
    contracts = []
    problems = []
    for name, section in sections.items():
        if "name" in section:
            problems.append(f"source {name!r}: 'name' is the section's key; remove it")
            continue
        try:
            contracts.append(FeedContract.model_validate({"name": name, **section}))
        except ValidationError as exc:
            problems += [f"source {name!r}: {_problem(e)}" for e in exc.errors(include_url=False)]
    if problems:
        raise FeedsError(
            f"{source}: fix these feed contracts:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return Feeds(tuple(contracts), source)


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def load_feeds(path: str) -> Feeds:
    """The feeds file at ``path`` ('' for none: every file gets the default contract).

    Read again only when the file changes, so a run sees the contracts as they are now.

    Raises:
        FeedsError: the file is missing or invalid.
    """
    if not path:
        return Feeds()
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FeedsError(
            f"feeds file {path} does not exist: create it or unset FEEDS_FILE"
        ) from None
    return _load(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> Feeds:
    with open(path, encoding="utf-8") as fh:
        return parse_feeds(fh.read(), path)


__all__ = [
    "DEFAULT_FEED",
    "CsvDialect",
    "FeedContract",
    "Feeds",
    "FeedsError",
    "load_feeds",
    "parse_feeds",
]
