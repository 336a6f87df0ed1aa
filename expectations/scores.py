"""The scores contract: what claim_scores must hold before metrics and BI read it."""

from __future__ import annotations

from typing import Any

import great_expectations as gx
import pandas as pd

from expectations.runner import SuiteOutcome, register, run_suite
from fraud_core.schema import DECISION_COLUMN, ID_COLUMN, Decision

SUITE = "scores"


def build() -> list[Any]:
    e = gx.expectations
    return [
        # Protects against: a model emitting NaN or out-of-range probabilities.
        e.ExpectColumnValuesToNotBeNull(column="fraud_score"),
        e.ExpectColumnValuesToBeBetween(column="fraud_score", min_value=0, max_value=1),
        # Protects against: a decision outside what the claims system understands.
        e.ExpectColumnValuesToBeInSet(column=DECISION_COLUMN, value_set=list(Decision)),
        # Protects against: scores without lineage (which model produced them).
        e.ExpectColumnValuesToNotBeNull(column="model_version"),
        # Protects against: a claim scored twice in one batch (double alerts, double counts).
        e.ExpectColumnValuesToBeUnique(column=ID_COLUMN),
        # Protects against: a degenerate model that refers every claim, or none of a large batch.
        e.ExpectColumnMeanToBeBetween(column="fraud_score", min_value=1e-4, max_value=0.5),
    ]


register(SUITE, build)


def validate_scores(scores: pd.DataFrame) -> SuiteOutcome:
    return run_suite(SUITE, scores)
