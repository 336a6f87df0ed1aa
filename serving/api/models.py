"""Request and response bodies of the scoring API.

The request model :class:`Claim` is generated from :mod:`fraud_core.schema`: field names, types,
ranges, allowed categories and the cross-field rules come from ``CLAIM_COLUMNS`` and
``PAIR_RULES``, so the API refuses exactly what the pipeline would quarantine, and a schema
change reaches the API (and its OpenAPI document) without an edit here.
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
    create_model,
    model_validator,
)

from fraud_core.schema import COLUMNS_BY_NAME, INPUT_COLUMNS, PAIR_RULES, Column
from serving.core.config import MAX_BATCH_SIZE

Decision = Literal["investigate", "fast_track"]


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

    @model_validator(mode="after")
    def _pair_rules(self) -> _ClaimBase:
        for rule in PAIR_RULES:
            left, right = getattr(self, rule.left), getattr(self, rule.right)
            if left is None or right is None:
                continue
            ok = left <= right if rule.op == "<=" else left >= right
            if not ok:
                raise ValueError(
                    f"{rule.name}: {rule.left} ({left}) must be {rule.op} {rule.right} "
                    f"({right}). {rule.description}"
                )
        return self


Claim: type[_ClaimBase] = create_model(  # type: ignore[call-overload]
    "Claim",
    __base__=_ClaimBase,
    __doc__="One insurance claim as the claims system sends it (unknown fields are refused).",
    **{name: _field(COLUMNS_BY_NAME[name]) for name in INPUT_COLUMNS},
)


class ScoreResponse(BaseModel):
    """The fraud score of one claim."""

    claim_id: str
    fraud_score: float = Field(ge=0.0, le=1.0, description="Calibrated fraud probability.")
    decision: Decision = Field(
        description="'investigate' when fraud_score >= threshold, else 'fast_track'."
    )
    model_version: str
    threshold: float = Field(description="Decision threshold of the model that scored it.")


class BatchRequest(BaseModel):
    """Up to 10,000 claims, each validated on its own (see POST /v1/score/batch)."""

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


class ModelInfo(BaseModel):
    """The model currently serving, and where it came from."""

    version: str
    created_at: str
    threshold: float
    metaflow_run: str | None = Field(
        None, description="Metaflow run (Flow/run_id) that trained it."
    )
    training_batches: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Readiness answer: the model serving, and the last failed reload if any."""

    status: Literal["ready"] = "ready"
    model_version: str
    reload_error: str | None = Field(
        None, description="Why the latest champion could not be loaded (the old model stays)."
    )
