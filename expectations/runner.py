"""The one Great Expectations set-up of the project, and the runner of whole-frame suites.

Every suite here validates an in-memory pandas DataFrame: :class:`FrameValidation` holds an
ephemeral GX context (nothing written to disk, no progress bars) with one pandas data source,
one whole-frame batch definition, the suite and its validation definition. The claims contract,
the features and scores contracts and the drift check run through it; Data Docs use
:func:`ephemeral_context` (the same context settings).

The features and scores suites are registered by name and compiled once per process; their
outcome is a :class:`SuiteOutcome` (which expectations failed, with GX's observed values). The
claims suite has its own row-level runner (it must say which rows failed).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import great_expectations as gx
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from great_expectations.data_context import AbstractDataContext
from great_expectations.data_context.types.base import ProgressBarsConfig

ResultFormat = Literal["BOOLEAN_ONLY", "BASIC", "SUMMARY", "COMPLETE"]


def ephemeral_context() -> AbstractDataContext:
    """A GX context in memory only, with progress bars off (they would flood Dagster's logs)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@dataclass(frozen=True)
class FrameValidation:
    """A suite compiled for whole pandas DataFrames, run one frame at a time.

    GX's validation definitions are not safe to run from several threads at once (a Dagster
    run may execute steps in threads), hence the lock; it is reentrant, so a caller may hold it
    around a run to change GX's process-wide state for that run only.
    """

    definition: gx.ValidationDefinition
    lock: threading.RLock = field(default_factory=threading.RLock, compare=False)

    @classmethod
    def compile(
        cls, name: str, expectations: Sequence[Any], suite_name: str | None = None
    ) -> FrameValidation:
        """Data source, batch definition, suite (``suite_name``, default ``name``) and
        validation definition named ``name``, in a fresh ephemeral context."""
        context = ephemeral_context()
        batch = (
            context.data_sources.add_pandas(name)
            .add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe("whole")
        )
        suite = context.suites.add(
            gx.ExpectationSuite(name=suite_name or name, expectations=list(expectations))
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        return cls(definition)

    def run(
        self, frame: pd.DataFrame, result_format: ResultFormat = "SUMMARY"
    ) -> ExpectationSuiteValidationResult:
        """GX's validation result for ``frame``."""
        with self.lock:
            return self.definition.run(
                batch_parameters={"dataframe": frame}, result_format=result_format
            )


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


_BUILDERS: dict[str, Callable[[], list[Any]]] = {}


def register(name: str, build: Callable[[], list[Any]]) -> None:
    """Register a suite by name; ``build`` returns its GX expectations."""
    _BUILDERS[name] = build


def build_suite(name: str) -> gx.ExpectationSuite:
    """A fresh (unsaved) copy of a registered suite, e.g. to render it in Data Docs."""
    return gx.ExpectationSuite(name=name, expectations=_BUILDERS[name]())


@functools.cache
def _compiled(name: str) -> FrameValidation:
    return FrameValidation.compile(name, _BUILDERS[name]())


def run_suite(name: str, frame: pd.DataFrame) -> SuiteOutcome:
    """Validate ``frame`` against suite ``name``; an expectation that errors counts as failed."""
    result = _compiled(name).run(frame)
    outcome = SuiteOutcome(name, evaluated=len(result.results), report=result)
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        assert cfg is not None  # GX returns each result with its expectation
        label = f"{cfg.kwargs.get('column', 'table')}: {cfg.type}"
        info = r.exception_info or {}
        raised = info.get("exception_message") if isinstance(info, dict) else None
        res = r.result or {}
        outcome.failed[label] = raised or res.get("observed_value", res.get("unexpected_count"))
    return outcome
