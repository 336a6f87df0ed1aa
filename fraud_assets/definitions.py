"""The one Definitions of the code location. Resources are chosen here, once, from FRAUD_ENV.

FRAUD_ENV=local (default): lakehouse and landing zone in local folders, Metaflow's local
runtime, DuckDB as the warehouse. Nothing to configure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from fraud_assets.assets import ALL_ASSETS
from fraud_assets.checks import model_gate
from fraud_assets.resources import (
    DuckDBWarehouse,
    LakehouseResource,
    LocalLanding,
    training_for,
)
from fraud_assets.sensors import landing_sensor_for

ENVIRONMENTS = ("local",)


def local_resources(env: Mapping[str, str]) -> dict[str, Any]:
    """Everything on this machine, under the working directory unless overridden."""
    cwd = os.getcwd()
    lakehouse_uri = env.get("LAKEHOUSE_URI") or os.path.join(cwd, ".lakehouse")
    if "://" in lakehouse_uri and not lakehouse_uri.startswith("file://"):
        raise ValueError(
            f"FRAUD_ENV=local keeps the lakehouse on this machine, but LAKEHOUSE_URI is "
            f"{lakehouse_uri!r}: use a local path"
        )
    lakehouse_root = os.path.abspath(lakehouse_uri.removeprefix("file://"))
    return {
        "lakehouse": LakehouseResource(uri=lakehouse_root),
        "landing": LocalLanding(
            path=env.get("LANDING_URI") or os.path.join(lakehouse_root, "landing")
        ),
        "training": training_for(env, env.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or cwd),
        "warehouse": DuckDBWarehouse(
            database=env.get("DUCKDB_PATH") or os.path.join(cwd, ".warehouse", "fraud.duckdb")
        ),
    }


def build_definitions(env: Mapping[str, str]) -> dg.Definitions:
    """The code location for an environment (``FRAUD_ENV``, default ``local``)."""
    name = env.get("FRAUD_ENV", "local")
    if name not in ENVIRONMENTS:
        raise ValueError(
            f"FRAUD_ENV={name!r} is not available in this version; use one of: "
            f"{', '.join(ENVIRONMENTS)} (prod backends: S3/ADLS, Step Functions, Snowflake "
            "are being added)"
        )
    ingest = dg.define_asset_job(
        "ingest_batch",
        selection=dg.AssetSelection.assets(
            "raw_claims", "quarantined_claims", "claim_features", "claim_scores"
        ),
        partitions_def=None,
        description="One landed file: validate, quarantine, featurize, score.",
    )
    train = dg.define_asset_job(
        "train_model",
        selection=dg.AssetSelection.assets("fraud_model", "champion_model"),
        description="Run FraudTrainingFlow; promote the candidate if the gate passes.",
    )
    rescore = dg.define_asset_job(
        "score_batch",
        selection=dg.AssetSelection.assets("claim_scores"),
        description="Score one batch again (e.g. with a newly promoted champion).",
    )
    report = dg.define_asset_job(
        "report_metrics",
        selection=dg.AssetSelection.assets("model_metrics", "snowflake_metrics_replica"),
        description="Aggregate model metrics and replicate them to the warehouse.",
    )
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=[model_gate],
        jobs=[ingest, train, rescore, report],
        sensors=[landing_sensor_for(ingest)],
        schedules=[
            dg.ScheduleDefinition(
                job=train,
                cron_schedule="0 3 * * 1",
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Weekly retraining on every labelled batch.",
            ),
            dg.ScheduleDefinition(
                job=report,
                cron_schedule="0 6 * * *",
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Daily metrics refresh for BI.",
            ),
        ],
        resources=local_resources(env),
    )


defs = build_definitions(os.environ)
