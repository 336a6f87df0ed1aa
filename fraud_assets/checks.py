"""Every asset check of the code location: its spec, and how its verdict is reached.

=================  ==============  ========  ===============================================
check              asset           blocking  evaluated by
=================  ==============  ========  ===============================================
claims_contract    raw_claims      yes       ``claims_batch``, on the file it read
features_contract  claim_features  yes       ``claim_features``, on the features it wrote
feature_drift      claim_features  no        ``claim_features``, against the champion
scores_contract    claim_scores    yes       ``claim_scores``, on the scores it wrote
score_drift        claim_scores    no        ``claim_scores``, against the champion
model_gate         fraud_model     yes       its own step, after ``fraud_model``
=================  ==============  ========  ===============================================

The contracts are Great Expectations suites (``expectations/``); each result links the batch's
GX Data Docs page (``quality/data_docs/`` in the lakehouse). A drift check compares a batch with
the champion's reference profile (bins and weights of its training features and held-out
scores): PSI and binned KS from ``fraud_core.drift`` and GX's KL divergence. It records the
batch's drift in the lakehouse (``monitoring/*_drift``), where the retraining sensor reads it.
Drift warns; it never blocks.

A check with nothing to check yields no result, and Dagster shows it as skipped in that run,
never as passed: the drift checks and the scores contract before the first champion is
promoted. The run's log says why (:func:`skip`).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_core import drift
from fraud_core.gate import GateConfig, evaluate_gate
from fraud_core.ingest import IngestCounts
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CANDIDATE_POINTER, FEATURE_DRIFT, SCORE_DRIFT
from fraud_core.registry import champion_bundle
from fraud_core.training import holdout_of

# Great Expectations (~8 s of imports on a slow machine) and torch are imported by the checks
# that use them, not when the code location loads: every Dagster process loads it (the code
# server, each run worker, each step), and most steps validate nothing.
if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )

    from expectations.claims import ClaimsValidator
    from expectations.runner import SuiteOutcome
    from fraud_core.model.bundle import ModelBundle

KL_THRESHOLD = 0.1
NO_CHAMPION = "no champion model yet (materialize fraud_model and champion_model)"


def selected(context: dg.AssetExecutionContext, check: dg.AssetCheckSpec) -> bool:
    """Whether this run evaluates ``check`` (a run may select an asset without its checks)."""
    return check.key in context.selected_asset_check_keys


def skip(context: dg.AssetExecutionContext, reason: str, *checks: dg.AssetCheckSpec) -> None:
    """Log why ``checks`` yield no result in this run; Dagster shows them as skipped."""
    for check in checks:
        if selected(context, check):
            context.log.warning(f"{check.name} skipped: {reason}")


def _result(check: dg.AssetCheckSpec, **verdict: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=check.name, asset_key=check.asset_key, **verdict)


def data_docs_link(
    lh: Lakehouse,
    report: "ExpectationSuiteValidationResult | None",
    suite: "gx.ExpectationSuite",
    batch_id: str,
) -> dict[str, dg.MetadataValue]:
    """Publish a validation's GX Data Docs page into the lakehouse; check metadata linking it.

    Nothing when there is no validation result (an empty batch was not validated).
    """
    if report is None:
        return {}
    from expectations.data_docs import publish_validation

    uri = publish_validation(lh, report, suite, batch_id)
    return {"data_docs": dg.MetadataValue.path(uri) if lh.is_local else dg.MetadataValue.url(uri)}


# --- the claims contract ----------------------------------------------------------------------
CLAIMS_CONTRACT = dg.AssetCheckSpec(
    "claims_contract",
    asset="raw_claims",
    blocking=True,
    description="The file could be read as claims, and the share of rows the Great "
    "Expectations claims suite rejects is under the limit.",
)


class ClaimsContractConfig(dg.Config):
    max_failure_rate: float = 0.05
    """Above this share of rejected rows the batch is stopped (downstream assets don't run)."""
    stop_on_implausible_nulls: bool = True
    """Stop the batch when a column's share of nulls is over its plausible bound (the schema's
    ``max_null_fraction``: a column lost upstream), whatever the share of rejected rows."""


def claims_contract(
    validator: "ClaimsValidator",
    counts: IngestCounts,
    config: ClaimsContractConfig,
    lh: Lakehouse,
    batch_id: str,
    about: Mapping[str, Any],
) -> dg.AssetCheckResult:
    """The contract on a validated file: the share of rejected rows against the limit, and
    every column's share of nulls against its plausible bound; claims delivered before are
    reported (re-delivered unchanged: not ingested again; changed: corrections), never
    failures. ``about`` names the file and its feed."""
    from expectations.claims import build_claims_suite

    validation = validator.finish()
    docs = data_docs_link(lh, validation.report, build_claims_suite(validator.window), batch_id)
    max_failure_rate = config.max_failure_rate
    broken = "; ".join(f"{key}: {seen}" for key, seen in validation.batch_failures.items())
    nulls_ok = not (validation.batch_failures and config.stop_on_implausible_nulls)
    again = []
    if counts.re_delivered:
        again.append(f"{counts.re_delivered:,} re-delivered unchanged (not ingested again)")
    if counts.corrections:
        again.append(f"{counts.corrections:,} correction(s) of claims delivered before")
    return _result(
        CLAIMS_CONTRACT,
        passed=validation.failure_rate <= max_failure_rate and nulls_ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{validation.rows_quarantined:,} of {validation.rows_in:,} rows rejected "
            f"({validation.failure_rate:.2%}; limit {max_failure_rate:.2%})"
            + (f": {validation.problems}" if validation.problems else "")
            + (f". Implausible share of nulls: {broken}" if broken else "")
            + (f". Claims delivered before: {', '.join(again)}" if again else "")
        ),
        metadata={
            **about,
            **docs,
            "rows_in": counts.rows_in,
            "valid": counts.valid,
            "corrections": counts.corrections,
            "re_delivered": counts.re_delivered,
            "quarantined": counts.quarantined,
            "failure_rate": validation.failure_rate,
            "max_failure_rate": max_failure_rate,
            "failures_by_expectation": dg.MetadataValue.json(validation.failures_by_expectation),
            "quarantine_reasons": dg.MetadataValue.json(validation.reasons),
            "batch_failures": dg.MetadataValue.json(validation.batch_failures),
            "ignored_columns": ", ".join(validation.ignored_columns) or "none",
        },
    )


def claims_rejected(reason: str, metadata: Mapping[str, Any]) -> dg.AssetCheckResult:
    """The contract on a file rejected as a whole (unreadable, of an unsupported type, too
    large, columns missing...)."""
    return _result(
        CLAIMS_CONTRACT,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"file rejected: {reason}",
        metadata=dict(metadata),
    )


# --- the features and scores contracts ---------------------------------------------------------
def _contract_spec(name: str, asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=True,
        description=f"Great Expectations {asset} contract (expectations/); blocks downstream.",
    )


FEATURES_CONTRACT = _contract_spec("features_contract", "claim_features")
SCORES_CONTRACT = _contract_spec("scores_contract", "claim_scores")


def contract_result(
    check: dg.AssetCheckSpec, outcome: "SuiteOutcome", lh: Lakehouse, batch_id: str
) -> dg.AssetCheckResult:
    """A contract's verdict from its suite's outcome, linking the batch's Data Docs page."""
    from expectations.runner import build_suite

    docs = data_docs_link(lh, outcome.report, build_suite(outcome.suite), batch_id)
    return _result(
        check,
        passed=outcome.success,
        description=outcome.describe(),
        metadata={
            "expectations": outcome.evaluated,
            "failed": dg.MetadataValue.json({k: str(v) for k, v in outcome.failed.items()}),
            **docs,
        },
    )


# --- drift ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftCheck:
    """A drift check: its spec, the columns of a batch it compares with the champion's
    reference profile, and the lakehouse dataset (``fraud_core.layout``) recording each batch."""

    spec: dg.AssetCheckSpec
    columns: tuple[str, ...]
    record: str

    def evaluate(
        self, lh: Lakehouse, champion: "ModelBundle", batch_id: str, frame: pd.DataFrame
    ) -> dg.AssetCheckResult:
        """Compare one batch with ``champion``'s reference; record it; say what drifts."""
        from expectations.drift import kl_divergence

        reference = champion.reference_profile
        table = drift.with_divergence(
            drift.drift_table(reference, frame, self.columns),
            kl_divergence(reference, frame, self.columns, KL_THRESHOLD),
        )
        dates = frame["claim_date"] if "claim_date" in frame else pd.Series(dtype="datetime64[ns]")
        drift.record_drift(lh, self.record, batch_id, table, champion.version, dates)
        drifting = table[table["drifting"]]
        return _result(
            self.spec,
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


def _drift_spec(name: str, asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=False,
        description="Drift against the champion's training reference (PSI, KS, GX KL); warns.",
    )


FEATURE_DRIFT_CHECK = DriftCheck(
    _drift_spec("feature_drift", "claim_features"), drift.MONITORED_FEATURES, FEATURE_DRIFT
)
# The scores' reference profile is that of the champion's held-out scores, named "score".
SCORE_DRIFT_CHECK = DriftCheck(_drift_spec("score_drift", "claim_scores"), ("score",), SCORE_DRIFT)


# --- the model gate ------------------------------------------------------------------------------
class ModelGateConfig(dg.Config):
    min_average_precision: float = GateConfig.min_average_precision
    """Held-out AP the candidate must reach."""
    max_ap_drop: float = GateConfig.max_ap_drop
    """How much worse than the champion, on the same held-out claims, is tolerated."""
    max_calibration_error: float = GateConfig.max_calibration_error
    """Bound on the expected calibration error of the candidate's probabilities."""


@dg.asset_check(asset="fraud_model", blocking=True, name="model_gate")
def model_gate(config: ModelGateConfig, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    """Candidate vs floor, calibration bound, champion on the same claims, and invariance."""
    from fraud_core.model.bundle import ModelBundle

    lh = lakehouse.get()
    candidate = ModelBundle.load(lh, lh.read_json(CANDIDATE_POINTER)["version"])
    champion = champion_bundle(lh)
    if champion is not None and champion.version == candidate.version:
        champion = None  # re-checking the current champion: nothing to compare against
    result = evaluate_gate(
        candidate,
        champion,
        holdout_of(lh, candidate.lineage),
        GateConfig(
            min_average_precision=config.min_average_precision,
            max_ap_drop=config.max_ap_drop,
            max_calibration_error=config.max_calibration_error,
        ),
    )
    return dg.AssetCheckResult(
        passed=result.passed,
        description="; ".join(result.failures) or "candidate passed every gate",
        metadata={"candidate_version": candidate.version, **result.measurements},
    )
