"""Drift monitoring: per-batch drift checks (warn, never block) and the sensor that asks for a
retraining when drift persists.

Each check compares a batch with the champion's reference profile (bins and weights of its
training features and held-out scores): PSI and binned KS from fraud_core.drift, and Great
Expectations' KL-divergence expectation (expectations/drift.py). It also records the batch's
drift in the lakehouse (monitoring/*_drift/batch=ID), which the retraining sensor reads.

The features and scores contracts (blocking) are built here too; like the claims contract, each
links the batch's GX Data Docs page (quality/data_docs/ in the lakehouse).
"""

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import great_expectations as gx
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)

from expectations.data_docs import publish_validation
from expectations.drift import kl_divergence
from expectations.runner import SuiteOutcome, build_suite
from fraud_assets.resources import LakehouseResource
from fraud_core import drift
from fraud_core.lakehouse import Lakehouse
from fraud_core.model.bundle import load_champion

FEATURE_DRIFT_CHECK = "feature_drift"
SCORE_DRIFT_CHECK = "score_drift"
KL_THRESHOLD = 0.1


def drift_spec(name: str, asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=False,
        description="Drift against the champion's training reference (PSI, KS, GX KL); warns.",
    )


def drift_check(
    lh: Lakehouse,
    batch_id: str,
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    record: str,
    check_name: str,
    asset_key: str,
) -> dg.AssetCheckResult:
    """Compare one batch with the champion's reference; record it; say what drifts."""
    if lh.champion() is None:
        return dg.AssetCheckResult(
            check_name=check_name,
            asset_key=asset_key,
            passed=True,
            description="no champion yet: nothing to compare this batch with",
        )
    champion = load_champion(lh)
    table = drift.drift_table(champion.reference_profile, frame, columns)
    kl = kl_divergence(champion.reference_profile, frame, columns, KL_THRESHOLD)
    table["kl"] = table["column"].map(lambda c: kl.get(c, {}).get("kl"))
    table["kl_passed"] = table["column"].map(lambda c: kl.get(c, {}).get("passed", True))
    table["drifting"] = table["drifting"] | ~table["kl_passed"].astype(bool)
    dates = frame["claim_date"] if "claim_date" in frame else pd.Series(dtype="datetime64[ns]")
    lh.write_batch(
        record,
        batch_id,
        table.assign(
            batch_id=batch_id,
            model_version=champion.version,
            first_claim_date=dates.min(),
            computed_at=pd.Timestamp(datetime.now(UTC)).tz_localize(None),
        ),
    )
    drifting = table[table["drifting"]]
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=drifting.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "no drift against champion " + champion.version
            if drifting.empty
            else f"drifting against champion {champion.version}: "
            + ", ".join(
                f"{r.column} (PSI {r.psi:.3f}, KS {r.ks:.3f}, KL {r.kl or 0:.3f})"
                for r in drifting.itertuples()
            )
        ),
        metadata={
            "drifting_features": ", ".join(drifting["column"]) or "none",
            "max_psi": float(table["psi"].max()),
            "max_ks": float(table["ks"].max()),
            "statistics": dg.MetadataValue.md(
                table.round(4).drop(columns=["kl_passed"]).to_markdown(index=False)
            ),
        },
    )


def drifting_streak(lh: Lakehouse, version: str) -> list[str]:
    """Batches scored against ``version`` that drift, newest last, up to the first calm one
    counting back from the newest batch (the current run of consecutive drifting batches)."""
    if not lh.batches(drift.FEATURE_DRIFT):
        return []
    records = lh.read_batches(drift.FEATURE_DRIFT)
    records = records[records["model_version"] == version]
    per_batch = (
        records.groupby("batch_id")
        .agg(drifting=("drifting", "any"), first=("first_claim_date", "min"))
        .sort_values(["first", "batch_id"])
    )
    streak: list[str] = []
    for batch_id, row in per_batch[::-1].iterrows():
        if not row["drifting"]:
            break
        streak.insert(0, str(batch_id))
    return streak


def retraining_sensor_for(job: Any, consecutive: int) -> dg.SensorDefinition:
    """Requests a retraining when the last ``consecutive`` batches all drift."""
    if consecutive < 1:
        raise ValueError("the number of consecutive drifting batches must be at least 1")

    @dg.sensor(
        name="drift_retraining_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Retrains when {consecutive} consecutive batches drift from the champion.",
    )
    def drift_retraining_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):  # type: ignore[no-untyped-def]
        lh = lakehouse.get()
        pointer = lh.champion()
        if pointer is None:
            return dg.SkipReason("no champion yet")
        streak = drifting_streak(lh, pointer["version"])
        if len(streak) < consecutive:
            return dg.SkipReason(
                f"{len(streak)} consecutive drifting batch(es); retraining at {consecutive}"
            )
        window = streak[-consecutive:]
        return dg.RunRequest(
            # One retraining per champion and drifting window: repeated ticks launch nothing.
            run_key=f"drift:{pointer['version']}:{window[-1]}",
            tags={"fraud/trigger": "drift", "fraud/drifting_batches": json.dumps(window)},
        )

    return drift_retraining_sensor


def contract_spec(name: str, asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=True,
        description=f"Great Expectations {asset} contract (expectations/); blocks downstream.",
    )


def data_docs_link(
    lh: Lakehouse,
    report: ExpectationSuiteValidationResult | None,
    suite: gx.ExpectationSuite,
    batch_id: str,
) -> dict[str, dg.MetadataValue]:
    """Publish a validation's GX Data Docs page into the lakehouse; check metadata linking it.

    Nothing when there is no validation result (an empty batch was not validated).
    """
    if report is None:
        return {}
    uri = publish_validation(lh, report, suite, batch_id)
    return {"data_docs": dg.MetadataValue.path(uri) if lh.is_local else dg.MetadataValue.url(uri)}


def contract_result(
    outcome: SuiteOutcome, check_name: str, asset_key: str, lh: Lakehouse, batch_id: str
) -> dg.AssetCheckResult:
    """An AssetCheckResult from a suite's outcome, linking the batch's Data Docs page."""
    docs = data_docs_link(lh, outcome.report, build_suite(outcome.suite), batch_id)
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=outcome.success,
        description=outcome.describe(),
        metadata={
            "expectations": outcome.evaluated,
            "failed": dg.MetadataValue.json({k: str(v) for k, v in outcome.failed.items()}),
            **docs,
        },
    )
