"""The code location's settings: every environment variable it reads, its default, read once.

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
  ``SNOWFLAKE_TABLE``. Those two sets are the external systems' own variables: Metaflow reads
  the first, Dagster resolves the second (``dg.EnvVar``) when a run starts. They are only
  checked here.

Anything missing or invalid fails at load with one :class:`SettingsError` that lists every
problem by variable name and says what to set (values are never echoed, except the choice
of an enumerated setting such as ``FRAUD_ENV``).

Overrides: an explicit setting wins over the environment's default where both choices are
valid there. ``FRAUD_TRAINING=local`` is honoured in prod (Metaflow's local runtime, e.g. to
resume a failed run); ``FRAUD_WAREHOUSE`` may only name Snowflake in prod (a DuckDB file would
silently keep the BI replica on one machine). In local, ``FRAUD_TRAINING=step-functions`` and
``FRAUD_WAREHOUSE=snowflake`` switch those pieces to their prod versions.

Storage is chosen by URI in every environment: a path, ``s3://`` or ``abfss://``/``az://``.
Credentials come from the standard places (AWS environment or profile,
``AZURE_STORAGE_CONNECTION_STRING`` or account name + key), never from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fraud_assets.resources.training import (
    FLOW_NAME,
    STEP_FUNCTIONS_SETTINGS,
    TRAINING_TIMEOUT_SECONDS,
)
from fraud_assets.resources.warehouse import SnowflakeWarehouse, WarehouseConfigError
from fraud_assets.sensors import DEFAULT_LANDING_INTERVAL_SECONDS
from fraud_core.feeds import FeedsError, load_feeds
from fraud_core.lakehouse import REMOTE_SCHEMES, uri_scheme
from fraud_core.landing import DEFAULT_MAX_BYTES
from fraud_core.layout import DEFAULT_LAKEHOUSE_DIR, LANDING
from fraud_core.readers import DEFAULT_CHUNK_ROWS
from fraud_core.schema import DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS

ENVIRONMENTS = ("local", "prod")
TRAINING_MODES = ("local", "step-functions")
DEFAULT_DUCKDB_PATH = os.path.join(".warehouse", "fraud.duckdb")
PROD_LAKEHOUSE_SCHEMES = ("s3", "abfss")
PROD_LAKEHOUSE_HINT = (
    "set it to s3://BUCKET/PREFIX or abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX"
)


class SettingsError(ValueError):
    """The environment's settings are missing or invalid: every problem, by variable name."""


def _problem(text: str) -> PydanticCustomError:
    """A validation error whose message is ``text`` as written (it names the variable)."""
    return PydanticCustomError("setting", "{problem}", {"problem": text})


def _env(info: ValidationInfo) -> str | None:
    """FRAUD_ENV as validated before this field (None when it is itself invalid)."""
    return info.data.get("env")


class _Variables(PydanticBaseSettingsSource):
    """Environment variables as the settings' input: every one that is not blank.

    Each field is read from its own variable (its ``validation_alias``); the other systems'
    variables the settings check (Metaflow's, Snowflake's) are read from the same mapping.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = {name: value for name, value in environ.items() if value != ""}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Not used: __call__ hands pydantic every variable, and each field picks its own.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.environ)


class LocationSettings(BaseSettings):
    """Every setting of the code location, from the process's environment variables
    (``LocationSettings()``) or from a given mapping (:meth:`from_env`).

    Fields are validated in order, ``FRAUD_ENV`` first: the defaults of the others depend on it.
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", validate_default=True)

    step_functions_unset: tuple[str, ...] = Field(
        (), exclude=True, description="Metaflow's Step Functions variables that are not set"
    )
    snowflake_problem: str = Field(
        "", exclude=True, description="what the SNOWFLAKE_* variables lack ('' when complete)"
    )
    env: str = Field(
        "local", validation_alias="FRAUD_ENV", description="the resource set: local or prod"
    )
    lakehouse_uri: str = Field(
        "",
        validation_alias="LAKEHOUSE_URI",
        description="root of the lakehouse: a path, s3:// or abfss:// (local default: "
        f"./{DEFAULT_LAKEHOUSE_DIR}; prod: required, on s3:// or abfss://)",
    )
    landing_uri: str = Field(
        "",
        validation_alias="LANDING_URI",
        description="where claims files land: a path, s3:// or abfss:// (default: "
        f"LAKEHOUSE_URI/{LANDING})",
    )
    s3_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        description="an S3-compatible store for the landing zone (moto, MinIO)",
    )
    landing_max_file_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        ge=1,
        validation_alias="LANDING_MAX_FILE_BYTES",
        description="what one landed file (one batch) may hold, as landed; larger files are "
        "rejected unread (files are read in chunks: this is not a memory guard)",
    )
    landing_chunk_rows: int = Field(
        DEFAULT_CHUNK_ROWS,
        ge=1_000,
        validation_alias="LANDING_CHUNK_ROWS",
        description="rows of a landed file read, validated and written at a time: what bounds "
        "an ingest's memory, whatever the file's size",
    )
    feeds_file: str = Field(
        "",
        validation_alias="FEEDS_FILE",
        description="the feed contracts (YAML): per source, which files and how to read them "
        "(default: none, every file read with the default contract)",
    )
    claim_date_max_skew_days: int = Field(
        DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS,
        ge=0,
        validation_alias="CLAIM_DATE_MAX_SKEW_DAYS",
        description="days past today a claim may be dated (clock skew); later ones are quarantined",
    )
    landing_sensor_interval_seconds: int = Field(
        DEFAULT_LANDING_INTERVAL_SECONDS,
        validation_alias="LANDING_SENSOR_INTERVAL_SECONDS",
        description="how often the landing sensor looks",
    )
    drift_batches: int = Field(
        2,
        ge=1,
        validation_alias="FRAUD_DRIFT_BATCHES",
        description="consecutive drifting batches after which the drift sensor retrains",
    )
    training: str = Field(
        "",
        validation_alias="FRAUD_TRAINING",
        description="local (Metaflow's local runtime) or step-functions (default in prod)",
    )
    training_config: str = Field(
        "",
        validation_alias="FRAUD_TRAINING_CONFIG",
        description="training settings to use instead of metaflow_jobs/config/training.json",
    )
    metaflow_datastore: str = Field(
        "local",
        validation_alias="METAFLOW_DEFAULT_DATASTORE",
        description="s3 to resume a Step Functions run locally from its S3 datastore",
    )
    datastore_root: str = Field(
        "",
        validation_alias="METAFLOW_DATASTORE_SYSROOT_LOCAL",
        description="where Metaflow's local runtime keeps runs (default: the working directory)",
    )
    state_machine: str = Field(
        FLOW_NAME,
        validation_alias="FRAUD_STATE_MACHINE",
        description="the Step Functions state machine Jenkins deployed",
    )
    training_timeout_seconds: int = Field(
        TRAINING_TIMEOUT_SECONDS,
        validation_alias="FRAUD_TRAINING_TIMEOUT",
        description="how long a Step Functions execution may run before it is stopped",
    )
    warehouse: str = Field(
        "",
        validation_alias="FRAUD_WAREHOUSE",
        description="duckdb (local default) or snowflake (prod: the only choice)",
    )
    duckdb_path: str = Field(
        "",
        validation_alias="DUCKDB_PATH",
        description=f"the local BI warehouse (default: ./{DEFAULT_DUCKDB_PATH})",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Variables(settings_cls, os.environ))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LocationSettings:
        """The settings in ``environ`` alone (``os.environ`` for the code location, a dict in
        tests); a blank variable counts as unset.

        Raises:
            SettingsError: listing every missing or invalid setting.
        """
        variables = _Variables(cls, environ)
        try:
            # _build_sources: pydantic-settings' option to read these sources instead
            return cls(_build_sources=((variables,), {}))  # type: ignore[call-arg]
        except ValidationError as exc:
            raise _settings_error(variables.environ.get("FRAUD_ENV"), exc) from None

    @model_validator(mode="before")
    @classmethod
    def _other_systems(cls, data: Any) -> Any:
        """What the variables of Metaflow's Step Functions deployment and of Snowflake lack
        (checked here when prod needs them; those systems read them when a run starts)."""
        if not isinstance(data, Mapping):
            return data
        try:
            SnowflakeWarehouse.from_env(data)
            snowflake = ""
        except WarehouseConfigError as exc:  # names variables only, never their values
            snowflake = str(exc)
        return {
            **data,
            "step_functions_unset": tuple(n for n in STEP_FUNCTIONS_SETTINGS if not data.get(n)),
            "snowflake_problem": snowflake,
        }

    @field_validator("env")
    @classmethod
    def _known_env(cls, value: str) -> str:
        if value not in ENVIRONMENTS:
            raise _problem(
                f"FRAUD_ENV={value!r} is not an environment: use one of {', '.join(ENVIRONMENTS)}"
            )
        return value

    @field_validator("lakehouse_uri")
    @classmethod
    def _lakehouse(cls, value: str, info: ValidationInfo) -> str:
        scheme = uri_scheme(value) if value else "file"
        if _env(info) == "prod":
            if not value:
                raise _problem(f"LAKEHOUSE_URI is not set: {PROD_LAKEHOUSE_HINT}")
            if scheme not in PROD_LAKEHOUSE_SCHEMES:
                where = "a local path" if scheme == "file" else f"on {scheme}://"
                raise _problem(f"LAKEHOUSE_URI is {where}: {PROD_LAKEHOUSE_HINT}")
        if scheme == "file":
            return os.path.abspath(value.removeprefix("file://") or DEFAULT_LAKEHOUSE_DIR)
        if scheme not in REMOTE_SCHEMES:
            raise _problem(
                f"LAKEHOUSE_URI {value!r} has an unsupported scheme {scheme!r}: use a local "
                "path, s3://bucket/prefix or abfss://container@account.dfs.core.windows.net/prefix"
            )
        return value.rstrip("/")

    @field_validator("landing_uri")
    @classmethod
    def _landing(cls, value: str, info: ValidationInfo) -> str:
        if _env(info) == "prod" and value and uri_scheme(value) not in REMOTE_SCHEMES:
            raise _problem(
                "LANDING_URI is not on S3 or ADLS: set it to s3://... or abfss://..., or unset "
                "it (the landing zone is then LAKEHOUSE_URI/landing)"
            )
        lakehouse = info.data.get("lakehouse_uri")
        return value or (f"{lakehouse}/{LANDING}" if lakehouse else "")

    @field_validator("feeds_file")
    @classmethod
    def _feeds(cls, value: str) -> str:
        if not value:
            return value
        path = os.path.abspath(value)
        try:
            load_feeds(path)
        except FeedsError as exc:
            raise _problem(f"FEEDS_FILE: {exc}") from None
        return path

    @field_validator("training")
    @classmethod
    def _training(cls, value: str, info: ValidationInfo) -> str:
        default = "step-functions" if _env(info) == "prod" else "local"
        mode = value or default
        if mode not in TRAINING_MODES:
            raise _problem(
                f"FRAUD_TRAINING={mode!r}: use step-functions or local (default: {default})"
            )
        missing = info.data.get("step_functions_unset", ())
        if _env(info) == "prod" and mode == "step-functions" and missing:
            raise _problem(
                f"training on Step Functions needs {', '.join(missing)}: set them to the "
                "Metaflow AWS deployment's values, the image being this project's (Dockerfile) "
                "pushed where AWS Batch pulls from (as for `make deploy-training`)"
            )
        return mode

    @field_validator("metaflow_datastore")
    @classmethod
    def _datastore(cls, value: str) -> str:
        return "s3" if value == "s3" else "local"

    @field_validator("datastore_root")
    @classmethod
    def _datastore_root(cls, value: str) -> str:
        return value or os.getcwd()

    @field_validator("warehouse")
    @classmethod
    def _warehouse(cls, value: str, info: ValidationInfo) -> str:
        choice = value.lower() or ("snowflake" if _env(info) == "prod" else "duckdb")
        if _env(info) != "prod":
            return choice  # an unknown choice is refused where the warehouse is built
        if choice != "snowflake":
            raise _problem(
                f"FRAUD_WAREHOUSE={choice!r}: FRAUD_ENV=prod replicates to Snowflake only; "
                "unset FRAUD_WAREHOUSE"
            )
        if info.data.get("snowflake_problem"):
            raise _problem(f"{info.data['snowflake_problem']} (set the SNOWFLAKE_* variables)")
        return choice

    @field_validator("duckdb_path")
    @classmethod
    def _duckdb_path(cls, value: str) -> str:
        return value or os.path.abspath(DEFAULT_DUCKDB_PATH)


def _settings_error(env: str | None, exc: ValidationError) -> SettingsError:
    """One error naming every problem (pydantic's own messages never hold the input)."""
    problems = [
        e["msg"] if e["type"] == "setting" else f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    ]
    fix = "fix these settings" + (" (or use FRAUD_ENV=local)" if env == "prod" else "")
    where = "FRAUD_ENV=prod" if env == "prod" else "the code location"
    return SettingsError(f"{where} cannot load; {fix}:\n" + "\n".join(f"  - {p}" for p in problems))
