"""Running a suite of whole-column expectations on a frame, with a readable outcome.

Used by the features and scores suites (the claims suite has its own row-level runner, since it
must say which rows failed). One ephemeral GX context per suite, built on first use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from great_expectations.data_context.types.base import ProgressBarsConfig


@dataclass
class SuiteOutcome:
    """Which expectations failed, with GX's observed values, and GX's result (for Data Docs)."""

    suite: str
    failed: dict[str, Any] = field(default_factory=dict)
    evaluated: int = 0
    report: ExpectationSuiteValidationResult | None = field(default=None, repr=False)

    @property
    def success(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        if self.success:
            return f"{self.suite}: all {self.evaluated} expectations met"
        return f"{self.suite}: " + "; ".join(f"{k} ({v})" for k, v in self.failed.items())


@dataclass(frozen=True)
class _Compiled:
    definition: gx.ValidationDefinition
    lock: threading.Lock


_BUILDERS: dict[str, Callable[[], list[Any]]] = {}


def register(name: str, build: Callable[[], list[Any]]) -> None:
    """Register a suite by name; ``build`` returns its GX expectations."""
    _BUILDERS[name] = build


def build_suite(name: str) -> gx.ExpectationSuite:
    """A fresh (unsaved) copy of a registered suite, e.g. to render it in Data Docs."""
    return gx.ExpectationSuite(name=name, expectations=_BUILDERS[name]())


@functools.cache
def _compiled(name: str) -> _Compiled:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=_BUILDERS[name]()))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return _Compiled(definition, threading.Lock())


def run_suite(name: str, frame: pd.DataFrame) -> SuiteOutcome:
    """Validate ``frame`` against suite ``name``; an expectation that errors counts as failed."""
    compiled = _compiled(name)
    with compiled.lock:
        result = compiled.definition.run(
            batch_parameters={"dataframe": frame}, result_format="SUMMARY"
        )
    outcome = SuiteOutcome(name, evaluated=len(result.results), report=result)
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        label = f"{cfg.kwargs.get('column', 'table')}: {cfg.type}"
        info = r.exception_info or {}
        raised = info.get("exception_message") if isinstance(info, dict) else None
        res = r.result or {}
        outcome.failed[label] = raised or res.get("observed_value", res.get("unexpected_count"))
    return outcome
