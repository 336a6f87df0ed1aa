"""Request and response bodies of the scoring API.

The request model :class:`Claim` is generated from :mod:`fraud_core.schema`: field names, types,
ranges, allowed categories and the cross-field rules come from ``CLAIM_COLUMNS`` and
``PAIR_RULES``, so the API refuses exactly what the pipeline would quarantine, and a schema
change reaches the API (and its OpenAPI document) without an edit here.

Unknown fields are refused (422, error type ``extra_forbidden`` naming the field): a typo such
as ``claimed_ammount`` must not be scored as if the field were absent. The OpenAPI document says
so (``additionalProperties: false`` on ``Claim`` and ``BatchRequest``).

Dates a claim cannot carry (before 1900, or after today plus the server's clock skew,
``claim_date_max_skew_days`` in the validation context) are refused with the reason the claims
contract quarantines them with (:class:`fraud_core.schema.DateWindow`, type ``date_window``).
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fraud_core.schema import (
    COLUMNS_BY_NAME,
    DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS,
    INPUT_COLUMNS,
    PAIR_RULES,
    Column,
    DateWindow,
    Decision,
)
from serving.core.config import MAX_BATCH_SIZE

# The validation context's key for the days past today a claim may be dated.
DATE_SKEW = "claim_date_max_skew_days"
_DATE_FIELDS = tuple(n for n in INPUT_COLUMNS if COLUMNS_BY_NAME[n].kind == "date")


def claim_context(max_skew_days: int) -> dict[str, Any]:
    """The validation context of a :data:`Claim` for a server allowing this clock skew."""
    return {DATE_SKEW: max_skew_days}


def load_example() -> dict[str, Any]:
    """The example claim shipped in ``serving/examples/claim.json``."""
    text = resources.files("serving").joinpath("examples/claim.json").read_text("utf-8")
    example: dict[str, Any] = json.loads(text)
    return example


def _field(col: Column) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of one schema column."""
    bounds: dict[str, Any] = {}
    if col.minimum is not None:
        bounds["ge"] = col.minimum
    if col.maximum is not None:
        bounds["le"] = col.maximum
    annotation: Any
    if col.kind == "id":
        annotation = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    elif col.kind == "date":
        annotation = dt.date
    elif col.kind == "category":
        if not col.allowed:
            raise ValueError(f"category column {col.name} has no allowed values")
        annotation = Literal[col.allowed]
    elif col.kind == "float":
        annotation = Annotated[float, Field(allow_inf_nan=False, **bounds)]
    elif col.kind == "int":
        annotation = Annotated[int, Field(**bounds)]
    elif col.kind == "bool":
        annotation = bool
    else:  # pragma: no cover - guarded by the Kind literal
        raise ValueError(f"column {col.name}: unknown kind {col.kind!r}")
    if col.required:
        return annotation, Field(description=col.description)
    return annotation | None, Field(None, description=col.description)


class _ClaimBase(BaseModel):
    """Cross-field rules of the schema (``PAIR_RULES``), shared by the generated model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [load_example()]})

    @field_validator(*_DATE_FIELDS, check_fields=False)
    @classmethod
    def _possible_date(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        if value is None:
            return value
        skew = (info.context or {}).get(DATE_SKEW, DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS)
        problem = DateWindow.until_today(skew).problem(str(info.field_name), value)
        if problem is not None:
            raise PydanticCustomError("date_window", "{problem}", {"problem": problem})
        return value

    @model_validator(mode="after")
    def _pair_rules(self) -> _ClaimBase:
        for rule in PAIR_RULES:
            left, right = getattr(self, rule.left), getattr(self, rule.right)
            if left is None or right is None:
                continue
            ok = left <= right if rule.op == "<=" else left >= right
            if not ok:
                raise PydanticCustomError(
                    rule.name,
                    "{left} ({left_value}) must be {op} {right} ({right_value}). {why}",
                    {
                        "left": rule.left,
                        "left_value": str(left),
                        "op": rule.op,
                        "right": rule.right,
                        "right_value": str(right),
                        "why": rule.description,
                    },
                )
        return self


Claim: type[_ClaimBase] = create_model(  # type: ignore[call-overload]
    "Claim",
    __base__=_ClaimBase,
    __doc__="One insurance claim as the claims system sends it. Every field is required; "
    "unknown fields are refused (422, type `extra_forbidden`), so a misspelt field is never "
    "scored as missing. Cross-field rules: "
    + "; ".join(f"`{r.left} {r.op} {r.right}` ({r.name})" for r in PAIR_RULES)
    + ".",
    **{name: _field(COLUMNS_BY_NAME[name]) for name in INPUT_COLUMNS},
)


class FeatureContribution(BaseModel):
    """One input's share of the claim's score."""

    feature: str = Field(description="Model feature (see GET /v1/model `features`).")
    value: float | str = Field(description="The feature's value for this claim.")
    contribution: float = Field(
        description="Gradient x input on the standardized input, in logit units: positive "
        "pushes the score up, negative down, relative to a claim at the training mean."
    )


class ScoreResponse(BaseModel):
    """The fraud score of one claim."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "claim_id": "CLM-2025-000123",
                    "fraud_score": 0.0132,
                    "decision": "fast_track",
                    "model_version": "fm-1731400000000",
                    "threshold": 0.05,
                    "top_features": [
                        {"feature": "report_delay_days", "value": 2.0, "contribution": -0.61},
                        {"feature": "police_report", "value": 1.0, "contribution": -0.35},
                        {"feature": "amount_to_limit", "value": 0.165, "contribution": 0.12},
                    ],
                }
            ]
        }
    )

    claim_id: str
    fraud_score: float = Field(ge=0.0, le=1.0, description="Calibrated fraud probability.")
    decision: Decision = Field(
        description="'investigate' when fraud_score >= threshold, else 'fast_track'."
    )
    model_version: str
    threshold: float = Field(description="Decision threshold of the model that scored it.")
    top_features: list[FeatureContribution] = Field(
        default_factory=list,
        description="The inputs that moved this claim's score most, largest |contribution| "
        "first (attribution: gradient x input, see FeatureContribution).",
    )


class BatchRequest(BaseModel):
    """Up to 10,000 claims, each validated on its own (see POST /v1/score/batch)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "claims": [
                        load_example(),
                        {**load_example(), "claim_id": "CLM-2025-000124", "region": "atlantis"},
                    ]
                }
            ]
        },
    )

    claims: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH_SIZE,
        description="Claims with the fields of `Claim`. Each is validated separately: an "
        "invalid claim is reported by its index in `results` and does not fail the others.",
    )


class BatchItemScore(ScoreResponse):
    """A scored claim of a batch, with its position in the request."""

    index: int = Field(ge=0, description="Position of the claim in the request's `claims`.")


class BatchItemError(BaseModel):
    """A claim of a batch that was not scored, with why (pydantic error list)."""

    index: int = Field(ge=0, description="Position of the claim in the request's `claims`.")
    error: list[dict[str, Any]] = Field(
        description="Validation errors, in the format of a 422 response's `detail`."
    )


class BatchResponse(BaseModel):
    """One result per requested claim, in request order."""

    results: list[BatchItemScore | BatchItemError]
    model_version: str
    scored: int = Field(ge=0, description="Claims scored.")
    failed: int = Field(ge=0, description="Claims refused (their results carry `error`).")


class ModelInfo(BaseModel):
    """The model currently serving, and where it came from (lineage back to its data)."""

    version: str
    trained_at: str | None = Field(
        None, description="When training finished (champion pointer), else the bundle's time."
    )
    created_at: str = Field(description="When the bundle was written.")
    threshold: float
    metaflow_run: str | None = Field(
        None, description="Metaflow run pathspec (Flow/run_id) that trained it."
    )
    dagster_run_id: str | None = Field(
        None, description="Dagster run that materialized fraud_model (it ran the Metaflow flow)."
    )
    promoted_at: str | None = Field(None, description="When it became the champion.")
    promoted_by_run: str | None = Field(
        None, description="Dagster run that materialized champion_model."
    )
    previous_version: str | None = Field(None, description="The champion it replaced.")
    bundle_uri: str = Field(description="Where the bundle (weights + manifest) lives.")
    training_batches: list[str] = Field(
        default_factory=list, description="Raw/feature batches it was trained on."
    )
    table_versions: dict[str, int] = Field(
        default_factory=dict,
        description="Delta version of each lakehouse table its training read (table folder -> "
        "version): fraud_model's config `as_of` retrains on exactly those rows.",
    )
    split: dict[str, Any] = Field(
        default_factory=dict, description="Train/validation/test periods of the training data."
    )
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Held-out metrics recorded at training."
    )
    features: dict[str, list[str]] = Field(
        default_factory=dict, description="Numeric and categorical model inputs."
    )
    attribution: str = Field(description="How `top_features` contributions are computed.")
    history_batches: list[str] = Field(
        default_factory=list, description="Raw batches the history features read from."
    )
    history_claims: int = Field(ge=0, description="Claims in that history.")
    loaded_at: str = Field(description="When this process loaded the model.")
    champion: dict[str, Any] = Field(
        default_factory=dict, description="The champion pointer as read (models/champion.json)."
    )


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Readiness answer: the model serving, and the last failed reload if any."""

    status: Literal["ready"] = "ready"
    model_version: str
    champion_version: str | None = Field(
        None, description="The version the champion pointer named at the last poll."
    )
    loaded_at: str = Field(description="When the serving model was loaded.")
    reload_error: str | None = Field(
        None, description="Why the latest champion could not be loaded (the old model stays)."
    )


class NotReady(BaseModel):
    """503 from /readyz: no model is loaded."""

    status: Literal["not_ready"] = "not_ready"
    detail: str = Field(description="Why: no champion yet, or the champion was refused and why.")
