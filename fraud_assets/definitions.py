"""The one Definitions of the code location. Resources are chosen here, once, from FRAUD_ENV.

FRAUD_ENV=local (default): lakehouse and landing zone in local folders, Metaflow's local
runtime, DuckDB as the warehouse. Nothing to configure.

Storage is chosen by URI in every environment: ``LAKEHOUSE_URI`` (a path, ``s3://`` or
``abfss://``/``az://``; default ``./.lakehouse``) and ``LANDING_URI`` (the same kinds; default
``LAKEHOUSE_URI/landing``). Credentials come from the standard places (AWS environment or
profile, ``AZURE_STORAGE_CONNECTION_STRING`` or account name + key), never from here.
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` point S3 at a compatible store,
``LANDING_MAX_FILE_BYTES`` sets the landed-file size limit and
``LANDING_SENSOR_INTERVAL_SECONDS`` how often the landing sensor looks (default 30).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from fraud_assets.assets import ALL_ASSETS
from fraud_assets.checks import model_gate
from fraud_assets.monitoring import retraining_sensor_for
from fraud_assets.resources import (
    LakehouseResource,
    landing_for,
    training_for,
    warehouse_for,
)
from fraud_assets.sensors import landing_sensor_for
from fraud_core.lakehouse import REMOTE_SCHEMES, uri_scheme
from fraud_core.landing import DEFAULT_MAX_BYTES

ENVIRONMENTS = ("local",)


def lakehouse_uri(env: Mapping[str, str]) -> str:
    """``LAKEHOUSE_URI`` checked: an absolute local path, or an s3:// / ADLS URI as given."""
    uri = env.get("LAKEHOUSE_URI") or os.path.join(os.getcwd(), ".lakehouse")
    scheme = uri_scheme(uri)
    if scheme == "file":
        return os.path.abspath(uri.removeprefix("file://"))
    if scheme not in REMOTE_SCHEMES:
        raise ValueError(
            f"LAKEHOUSE_URI {uri!r} has an unsupported scheme {scheme!r}: use a local path, "
            "s3://bucket/prefix or abfss://container@account.dfs.core.windows.net/prefix"
        )
    return uri.rstrip("/")


def local_resources(env: Mapping[str, str]) -> dict[str, Any]:
    """Everything on this machine by default; lakehouse and landing zone wherever their URIs
    say (a local path, S3 or ADLS)."""
    cwd = os.getcwd()
    lakehouse = lakehouse_uri(env)
    return {
        "lakehouse": LakehouseResource(uri=lakehouse),
        "landing": landing_for(
            env.get("LANDING_URI") or f"{lakehouse}/landing",
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            max_file_bytes=int(env.get("LANDING_MAX_FILE_BYTES") or DEFAULT_MAX_BYTES),
        ),
        "training": training_for(env, env.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or cwd),
        "warehouse": warehouse_for(env),  # DuckDB unless FRAUD_WAREHOUSE=snowflake
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
        sensors=[
            landing_sensor_for(ingest, int(env.get("LANDING_SENSOR_INTERVAL_SECONDS") or 30)),
            # Retrain after this many consecutive drifting batches (FRAUD_DRIFT_BATCHES).
            retraining_sensor_for(train, int(env.get("FRAUD_DRIFT_BATCHES", "2"))),
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
        ],
        resources=local_resources(env),
    )


defs = build_definitions(os.environ)
