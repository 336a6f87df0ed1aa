"""fraud_model (a candidate trained by Metaflow) and champion_model (behind the gate)."""

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from fraud_assets.owners import OWNERS
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.training import Training
from fraud_core.layout import CANDIDATE_POINTER, FEATURES
from fraud_core.plots import markdown_image
from fraud_core.registry import promote


class TrainingConfig(dg.Config):
    seed: int = 0
    """Seed of every branch of the search."""
    max_epochs: int = 0
    """Upper bound on epochs per candidate (0: the flow's config file decides)."""
    resume_from: str = ""
    """Metaflow run id of a failed training run to resume (its finished steps are reused)."""
    as_of: str = ""
    """Delta version of each table to train on, JSON as a model's ``table_versions`` lineage
    shows it (``{"features/claims": 12, ...}``): retrains on exactly the rows that model
    saw. Empty: the tables' current versions."""


# pool "training": the production instance runs one training at a time (deploy/dagster).
@dg.asset(
    deps=["claim_features"],
    group_name="model",
    pool="training",
    owners=OWNERS,
    kinds={"metaflow", "pytorch"},
)
def fraud_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    lakehouse: LakehouseResource,
    training: Training,
) -> dg.MaterializeResult:
    """A candidate model: FraudTrainingFlow's bundle, its Metaflow run and held-out metrics."""
    lh = lakehouse.get()
    versions = {k: int(v) for k, v in json.loads(config.as_of).items()} if config.as_of else {}
    versions = versions or lh.table_versions()
    batches = lh.pinned(versions).batches(FEATURES)
    if not batches:
        raise dg.Failure("no claim_features batches in the lakehouse: ingest claims first")
    context.log.info(f"training on {len(batches)} feature batches, table versions {versions}")
    run = training.train(
        lh.uri,
        batches,
        seed=config.seed,
        max_epochs=config.max_epochs,
        resume_from=config.resume_from,
        log=context.log.info,
        as_of=versions,
    )
    lh.write_json(
        CANDIDATE_POINTER,
        {
            "version": run.model_version,
            "bundle_uri": run.bundle_uri,
            "metaflow_run": run.pathspec,
            "dagster_run_id": context.run_id,
            "trained_at": datetime.now(UTC).isoformat(),
        },
    )
    model, lgbm = run.test_metrics["model"], run.test_metrics["lightgbm"]
    bayes = run.test_metrics.get("bayes_optimal", {})
    candidates = pd.DataFrame(run.candidates)
    metadata: dict[str, Any] = {
        "model_version": run.model_version,
        "metaflow_run": run.pathspec,
        "bundle_uri": dg.MetadataValue.path(run.bundle_uri),
        "test_average_precision": model["average_precision"],
        "test_roc_auc": model["roc_auc"],
        "test_precision_at_k": model["precision_at_k"],
        "test_recall_at_1pct_fpr": model["recall_at_1pct_fpr"],
        "lightgbm_average_precision": lgbm["average_precision"],
        "candidates": dg.MetadataValue.md(candidates.to_markdown(index=False)),
        "pr_curve": dg.MetadataValue.md(markdown_image(run.pr_png, "PR curves")),
        "split": dg.MetadataValue.json(run.split),
        # the Delta version of every table the run read (config as_of trains on them again)
        "table_versions": dg.MetadataValue.json(versions),
    }
    if bayes:
        metadata["bayes_optimal_average_precision"] = bayes["average_precision"]
    if run.card_path:
        metadata["metaflow_card"] = dg.MetadataValue.path(run.card_path)
    if run.execution_arn:
        metadata["step_functions_execution"] = run.execution_arn
        metadata["step_functions_console"] = dg.MetadataValue.url(run.console_url)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(deps=["fraud_model"], group_name="model", owners=OWNERS, kinds={"pytorch", "json"})
def champion_model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    """The promoted model: the pointer the scoring assets and the API follow."""
    lh = lakehouse.get()
    candidate = lh.read_json(CANDIDATE_POINTER)
    pointer = promote(lh, {**candidate, "promoted_by_run": context.run_id})
    return dg.MaterializeResult(
        metadata={
            "model_version": pointer["version"],
            "previous_version": str(pointer["previous_version"]),
            "metaflow_run": pointer["metaflow_run"],
        }
    )
