"""The features contract: what claim_features must hold for the model to be trusted on it."""

from __future__ import annotations

from typing import Any

import great_expectations as gx
import pandas as pd

from expectations.runner import SuiteOutcome, register, run_suite
from fraud_core import schema
from fraud_core.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

SUITE = "features"
_COUNTS = ("ph_claims_30d", "ph_claims_365d", "prov_claims_90d", "witnesses", "prior_claims")


def build() -> list[Any]:
    e = gx.expectations
    return [
        # Protects against: a feature the model needs silently missing (NaN becomes the mean).
        *[e.ExpectColumnValuesToNotBeNull(column=c) for c in NUMERIC_FEATURES],
        # Protects against: a broken ratio (limit or amount mis-scaled upstream).
        e.ExpectColumnValuesToBeBetween(column="amount_to_limit", min_value=0, max_value=1),
        # Protects against: negative history counts from a broken window query.
        *[e.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in _COUNTS],
        # Protects against: a policy starting after its claim slipping through validation.
        e.ExpectColumnValuesToBeBetween(column="days_since_policy_start", min_value=0),
        # Protects against: a boolean encoded as something else.
        e.ExpectColumnValuesToBeInSet(column="police_report", value_set=[0.0, 1.0]),
        # Protects against: categories the model has no embedding for (all map to 'unknown').
        *[
            e.ExpectColumnValuesToBeInSet(
                column=c, value_set=list(schema.COLUMNS_BY_NAME[c].allowed or ())
            )
            for c in CATEGORICAL_FEATURES
        ],
        # Protects against: a claim featurized twice (double-counted in training and metrics).
        e.ExpectColumnValuesToBeUnique(column=schema.ID_COLUMN),
    ]


register(SUITE, build)


def validate_features(features: pd.DataFrame) -> SuiteOutcome:
    return run_suite(SUITE, features)
