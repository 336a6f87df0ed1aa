"""The one Definitions of the code location: assets, checks, jobs, sensors, schedules, and the
resources chosen once from the settings (``fraud_assets/settings.py``: ``FRAUD_ENV`` and the
rest, every variable with its default).

``defs`` is what Dagster loads (``workspace.yaml``, ``dagster api grpc -m
fraud_assets.definitions``, ``dg``); :func:`build_definitions` is the same for any mapping of
environment variables, which is how tests load it.
"""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from fraud_assets.assets import ALL_ASSETS
from fraud_assets.checks import model_gate
from fraud_assets.maintenance import lakehouse_maintenance, maintenance_schedule
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.landing import landing_for
from fraud_assets.resources.training import MetaflowTraining, StepFunctionsTraining, Training
from fraud_assets.resources.warehouse import (
    DuckDBWarehouse,
    SnowflakeWarehouse,
    Warehouse,
    WarehouseConfigError,
)
from fraud_assets.sensors import landing_sensor_for, retraining_sensor_for
from fraud_assets.settings import LocationSettings, SettingsError

# Run tags read by the production instance (deploy/dagster/dagster.yaml): the run queue bounds
# runs by kind, and the daemon reruns a job whose worker crashed only where it opted in,
# because rerunning it is safe (it rewrites what it writes).
RUN_KIND_TAG = "fraud/run-kind"
RERUN_SAFE = {"dagster/max_retries": "2"}
WAREHOUSES = ("duckdb", "snowflake")


def training_for(settings: LocationSettings) -> Training:
    """Metaflow's local runtime, or the Step Functions state machine (``FRAUD_TRAINING``)."""
    if settings.training == "step-functions":
        return StepFunctionsTraining(
            state_machine=settings.state_machine,
            metadata_root=settings.datastore_root,
            timeout_seconds=settings.training_timeout_seconds,
        )
    return MetaflowTraining(
        datastore_root=settings.datastore_root,
        config_file=settings.training_config,
        datastore=settings.metaflow_datastore,
    )


def step_functions_training(environ: Mapping[str, str]) -> StepFunctionsTraining:
    """The Step Functions training ``fraud_model`` gets with these variables (state machine,
    timeout, metadata root), whatever ``FRAUD_ENV`` and ``FRAUD_TRAINING`` say, and without
    checking the settings training does not use: what ``fraud deploy-training`` deploys."""
    training = training_for(
        LocationSettings.from_env(
            {**environ, "FRAUD_ENV": "local", "FRAUD_TRAINING": "step-functions"}
        )
    )
    assert isinstance(training, StepFunctionsTraining)
    return training


def warehouse_for(settings: LocationSettings, environ: Mapping[str, str]) -> Warehouse:
    """DuckDB, or Snowflake configured from the ``SNOWFLAKE_*`` variables of ``environ``
    through ``dg.EnvVar`` (``FRAUD_WAREHOUSE``).

    Raises:
        WarehouseConfigError: an unknown choice, or Snowflake settings missing (all named).
    """
    if settings.warehouse == "duckdb":
        return DuckDBWarehouse(database=settings.duckdb_path)
    if settings.warehouse == "snowflake":
        return SnowflakeWarehouse.from_env(environ)
    raise WarehouseConfigError(
        f"FRAUD_WAREHOUSE={settings.warehouse!r} is not a warehouse: use one of "
        + ", ".join(WAREHOUSES)
    )


def resources_for(settings: LocationSettings, environ: Mapping[str, str]) -> dict[str, Any]:
    """The lakehouse, the landing zone, training and the warehouse the settings name."""
    return {
        "lakehouse": LakehouseResource(uri=settings.lakehouse_uri),
        "landing": landing_for(
            settings.landing_uri,
            endpoint_url=settings.s3_endpoint_url,
            max_file_bytes=settings.landing_max_file_bytes,
            feeds_file=settings.feeds_file,
            claim_date_max_skew_days=settings.claim_date_max_skew_days,
            chunk_rows=settings.landing_chunk_rows,
        ),
        "training": training_for(settings),
        "warehouse": warehouse_for(settings, environ),
    }


def build_definitions(environ: Mapping[str, str]) -> dg.Definitions:
    """The code location for the settings in ``environ`` (only there: never the process's).

    Raises:
        SettingsError: listing every missing or invalid setting (``FRAUD_ENV=prod`` fails here,
            at load, never in a run).
    """
    settings = LocationSettings.from_env(environ)
    resources = resources_for(settings, environ)
    ingest = dg.define_asset_job(
        "ingest_batch",
        selection=dg.AssetSelection.assets(
            "raw_claims", "quarantined_claims", "claim_features", "claim_scores"
        ),
        description="One landed file: validate, quarantine, featurize, score.",
        tags={RUN_KIND_TAG: "ingest", **RERUN_SAFE},  # rewrites its batch's partitions
    )
    train = dg.define_asset_job(
        "train_model",
        selection=dg.AssetSelection.assets("fraud_model", "champion_model"),
        description="Run FraudTrainingFlow; promote the candidate if the gate passes.",
        tags={RUN_KIND_TAG: "training"},  # not rerun: resumed from its Metaflow run instead
    )
    rescore = dg.define_asset_job(
        "score_batch",
        selection=dg.AssetSelection.assets("claim_scores"),
        description="Score one batch again (e.g. with a newly promoted champion).",
        tags={RUN_KIND_TAG: "scoring", **RERUN_SAFE},  # overwrites the batch's scores
    )
    report = dg.define_asset_job(
        "report_metrics",
        selection=dg.AssetSelection.assets("model_metrics", "snowflake_metrics_replica"),
        description="Aggregate model metrics and replicate them to the warehouse.",
        tags={RUN_KIND_TAG: "report", **RERUN_SAFE},  # recomputed; the replica is a MERGE
    )
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=[model_gate],
        jobs=[ingest, train, rescore, report, lakehouse_maintenance],
        sensors=[
            landing_sensor_for(ingest, settings.landing_sensor_interval_seconds),
            retraining_sensor_for(train, settings.drift_batches),
        ],
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
            maintenance_schedule,
        ],
        resources=resources,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, from this process's environment (read here, once, when loaded)."""
    return build_definitions(os.environ)


__all__ = ["RERUN_SAFE", "RUN_KIND_TAG", "SettingsError", "build_definitions", "defs"]
