"""The one Definitions of the code location. Resources are chosen here, once, from FRAUD_ENV.

``FRAUD_ENV=local`` (default): lakehouse and landing zone in local folders, Metaflow's local
runtime, DuckDB as the warehouse. Nothing to configure.

``FRAUD_ENV=prod``: nothing defaults to this machine. Required:

* ``LAKEHOUSE_URI`` on ``s3://`` or ``abfss://`` (``LANDING_URI``, when set, on a remote store
  too; default ``LAKEHOUSE_URI/landing``);
* training on AWS Step Functions + Batch: the Metaflow variables of
  ``fraud_assets.resources.training.STEP_FUNCTIONS_SETTINGS`` (the state machine itself is
  deployed by Jenkins, ``make deploy-training``);
* the Snowflake warehouse: ``SNOWFLAKE_ACCOUNT``, ``SNOWFLAKE_USER``, ``SNOWFLAKE_PASSWORD`` (or
  a key pair), ``SNOWFLAKE_WAREHOUSE``, ``SNOWFLAKE_DATABASE``, ``SNOWFLAKE_SCHEMA``; optional
  ``SNOWFLAKE_TABLE``. Secrets are read through ``dg.EnvVar`` when a run starts.

Anything missing or invalid fails here, at load, with one :class:`SettingsError` that lists
every problem by variable name and says what to set (values are never echoed).

Overrides: an explicit setting wins over the environment's default where both choices are
valid there. ``FRAUD_TRAINING=local`` is honoured in prod (Metaflow's local runtime, e.g. to
resume a failed run); ``FRAUD_WAREHOUSE`` may only name Snowflake in prod (a DuckDB file would
silently keep the BI replica on one machine). In local, ``FRAUD_TRAINING=step-functions`` and
``FRAUD_WAREHOUSE=snowflake`` switch those pieces to their prod versions.

Storage is chosen by URI in every environment: ``LAKEHOUSE_URI`` (a path, ``s3://`` or
``abfss://``/``az://``; local default ``./.lakehouse``) and ``LANDING_URI`` (the same kinds;
default ``LAKEHOUSE_URI/landing``). Credentials come from the standard places (AWS environment
or profile, ``AZURE_STORAGE_CONNECTION_STRING`` or account name + key), never from here.
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
    LandingZone,
    SnowflakeWarehouse,
    WarehouseConfigError,
    landing_for,
    training_for,
    warehouse_for,
)
from fraud_assets.resources.training import STEP_FUNCTIONS_SETTINGS
from fraud_assets.sensors import landing_sensor_for
from fraud_core.lakehouse import REMOTE_SCHEMES, uri_scheme
from fraud_core.landing import DEFAULT_MAX_BYTES
from fraud_core.layout import DEFAULT_LAKEHOUSE_DIR

PROD_LAKEHOUSE_SCHEMES = ("s3", "abfss")
PROD_LAKEHOUSE_HINT = (
    "set it to s3://BUCKET/PREFIX or abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX"
)


# Run tags read by the production instance (deploy/dagster/dagster.yaml): the run queue bounds
# runs by kind, and the daemon reruns a job whose worker crashed only where it opted in,
# because rerunning it is safe (it rewrites what it writes).
RUN_KIND_TAG = "fraud/run-kind"
RERUN_SAFE = {"dagster/max_retries": "2"}


class SettingsError(ValueError):
    """The environment's settings are missing or invalid: every problem, by variable name."""


def lakehouse_uri(env: Mapping[str, str]) -> str:
    """``LAKEHOUSE_URI`` checked: an absolute local path, or an s3:// / ADLS URI as given."""
    uri = env.get("LAKEHOUSE_URI") or os.path.join(os.getcwd(), DEFAULT_LAKEHOUSE_DIR)
    scheme = uri_scheme(uri)
    if scheme == "file":
        return os.path.abspath(uri.removeprefix("file://"))
    if scheme not in REMOTE_SCHEMES:
        raise ValueError(
            f"LAKEHOUSE_URI {uri!r} has an unsupported scheme {scheme!r}: use a local path, "
            "s3://bucket/prefix or abfss://container@account.dfs.core.windows.net/prefix"
        )
    return uri.rstrip("/")


def landing_zone(env: Mapping[str, str], lakehouse: str) -> LandingZone:
    """``LANDING_URI`` (default: the lakehouse's landing/ folder, same store)."""
    return landing_for(
        env.get("LANDING_URI") or f"{lakehouse}/landing",
        endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        max_file_bytes=int(env.get("LANDING_MAX_FILE_BYTES") or DEFAULT_MAX_BYTES),
    )


def datastore_root(env: Mapping[str, str]) -> str:
    """Where Metaflow's local runtime keeps runs (``METAFLOW_DATASTORE_SYSROOT_LOCAL``)."""
    return env.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or os.getcwd()


def local_resources(env: Mapping[str, str]) -> dict[str, Any]:
    """Everything on this machine by default; lakehouse and landing zone wherever their URIs
    say (a local path, S3 or ADLS)."""
    lakehouse = lakehouse_uri(env)
    return {
        "lakehouse": LakehouseResource(uri=lakehouse),
        "landing": landing_zone(env, lakehouse),
        "training": training_for(env, datastore_root(env)),
        "warehouse": warehouse_for(env),  # DuckDB unless FRAUD_WAREHOUSE=snowflake
    }


def prod_problems(env: Mapping[str, str]) -> list[str]:
    """Everything missing or invalid for ``FRAUD_ENV=prod`` (empty when it can load).

    Each problem names the variable and what to set; no value is ever included (the scheme
    of a URI at most).
    """
    problems: list[str] = []
    lakehouse = env.get("LAKEHOUSE_URI", "")
    if not lakehouse:
        problems.append(f"LAKEHOUSE_URI is not set: {PROD_LAKEHOUSE_HINT}")
    elif (scheme := uri_scheme(lakehouse)) not in PROD_LAKEHOUSE_SCHEMES:
        where = "a local path" if scheme == "file" else f"on {scheme}://"
        problems.append(f"LAKEHOUSE_URI is {where}: {PROD_LAKEHOUSE_HINT}")
    landing = env.get("LANDING_URI", "")
    if landing and uri_scheme(landing) not in REMOTE_SCHEMES:
        problems.append(
            "LANDING_URI is not on S3 or ADLS: set it to s3://... or abfss://..., or unset it "
            "(the landing zone is then LAKEHOUSE_URI/landing)"
        )
    training = env.get("FRAUD_TRAINING") or "step-functions"
    if training == "step-functions":
        missing = [name for name in STEP_FUNCTIONS_SETTINGS if not env.get(name)]
        if missing:
            problems.append(
                f"training on Step Functions needs {', '.join(missing)}: set them to the "
                "Metaflow AWS deployment's values, the image being this project's (Dockerfile) "
                "pushed where AWS Batch pulls from (as for `make deploy-training`)"
            )
    elif training != "local":
        problems.append(f"FRAUD_TRAINING={training!r}: use step-functions (default) or local")
    warehouse = (env.get("FRAUD_WAREHOUSE") or "snowflake").lower()
    if warehouse != "snowflake":
        problems.append(
            f"FRAUD_WAREHOUSE={warehouse!r}: FRAUD_ENV=prod replicates to Snowflake only; "
            "unset FRAUD_WAREHOUSE"
        )
    else:
        try:
            SnowflakeWarehouse.from_env(env)
        except WarehouseConfigError as exc:  # names variables only, never their values
            problems.append(f"{exc} (set the SNOWFLAKE_* variables)")
    return problems


def prod_resources(env: Mapping[str, str]) -> dict[str, Any]:
    """S3/ADLS lakehouse and landing zone, Step Functions training, Snowflake.

    Raises:
        SettingsError: listing every missing or invalid setting (see :func:`prod_problems`).
    """
    problems = prod_problems(env)
    if problems:
        raise SettingsError(
            "FRAUD_ENV=prod cannot load; fix these settings (or use FRAUD_ENV=local):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    lakehouse = env["LAKEHOUSE_URI"].rstrip("/")
    training = env.get("FRAUD_TRAINING") or "step-functions"
    return {
        "lakehouse": LakehouseResource(uri=lakehouse),
        "landing": landing_zone(env, lakehouse),
        "training": training_for({**env, "FRAUD_TRAINING": training}, datastore_root(env)),
        "warehouse": SnowflakeWarehouse.from_env(env),
    }


RESOURCES = {"local": local_resources, "prod": prod_resources}
ENVIRONMENTS = tuple(RESOURCES)


def build_definitions(env: Mapping[str, str]) -> dg.Definitions:
    """The code location for an environment (``FRAUD_ENV``, default ``local``)."""
    name = env.get("FRAUD_ENV", "local")
    if name not in RESOURCES:
        raise SettingsError(
            f"FRAUD_ENV={name!r} is not an environment: use one of {', '.join(ENVIRONMENTS)}"
        )
    resources = RESOURCES[name](env)  # first: a missing setting fails before anything else
    ingest = dg.define_asset_job(
        "ingest_batch",
        selection=dg.AssetSelection.assets(
            "raw_claims", "quarantined_claims", "claim_features", "claim_scores"
        ),
        partitions_def=None,
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
        resources=resources,
    )


defs = build_definitions(os.environ)
