"""The code location loads, with the graph, checks, jobs and environment rules we expect."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fraud_assets.definitions import SettingsError, build_definitions, step_functions_training
from fraud_assets.resources import (
    MetaflowTraining,
    S3Landing,
    SnowflakeWarehouse,
    StepFunctionsTraining,
)
from fraud_assets.resources.training import STEP_FUNCTIONS_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_ASSETS = {
    "raw_claims",
    "quarantined_claims",
    "claim_features",
    "fraud_model",
    "champion_model",
    "claim_scores",
    "model_metrics",
    "snowflake_metrics_replica",
}


def test_definitions_load_with_the_whole_graph(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    defs = build_definitions({})
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("raw_claims", "claims_contract"),
        ("fraud_model", "model_gate"),
        ("claim_features", "features_contract"),
        ("claim_features", "feature_drift"),
        ("claim_scores", "scores_contract"),
        ("claim_scores", "score_drift"),
    }
    for key in graph.asset_check_keys:  # contracts and the gate block; drift only warns
        assert graph.get_check_spec(key).blocking == ("drift" not in key.name), key
    assert defs.resources["lakehouse"].uri == str(tmp_path / ".lakehouse")
    names = {job.name for job in defs.resolve_all_job_defs()}
    assert {"ingest_batch", "train_model", "score_batch", "report_metrics"} <= names
    assert defs.resolve_sensor_def("landing_sensor")
    upstream = graph.get(dg.AssetKey("champion_model")).parent_keys
    assert upstream == {dg.AssetKey("fraud_model")}


def test_the_module_level_definitions_load() -> None:
    from fraud_assets import definitions

    assert isinstance(definitions.defs(), dg.Definitions)


def test_loading_the_code_location_imports_no_model_or_validation_library() -> None:
    """Every Dagster process loads the code location (code server, run worker, each step):
    Great Expectations, torch and scikit-learn (~12 s of imports on a slow machine) come in
    with the step that validates, trains or scores, never with the definitions."""
    heavy = ("great_expectations", "torch", "sklearn", "lightgbm", "metaflow")
    code = (
        "import sys\nfrom fraud_assets import definitions\ndefinitions.defs()\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"imported with the definitions: {done.stdout.strip()}"


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(SettingsError, match="FRAUD_ENV='staging' is not an environment: use one"):
        build_definitions({"FRAUD_ENV": "staging"})


@pytest.mark.parametrize(
    ("uri", "landing"),
    [
        ("s3://bucket/lake", "S3Landing"),
        ("abfss://lake@account.dfs.core.windows.net/fraud", "ADLSLanding"),
        ("az://lake/fraud", "ADLSLanding"),
    ],
)
def test_the_lakehouse_may_be_on_s3_or_adls(uri: str, landing: str) -> None:
    defs = build_definitions({"LAKEHOUSE_URI": uri})
    assert defs.resources["lakehouse"].uri == uri
    # Without LANDING_URI the landing zone is the lakehouse's landing/ folder, same store.
    assert type(defs.resources["landing"]).__name__ == landing
    assert defs.resources["landing"].location == f"{uri}/landing"


def test_an_unknown_lakehouse_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported scheme 'gs': use a local path, s3://"):
        build_definitions({"LAKEHOUSE_URI": "gs://bucket/lake"})


# --- FRAUD_ENV=prod ---------------------------------------------------------------------------
PASSWORD = "pr0d-Sn0wflake-passw0rd-never-shown"
PROD = {
    "FRAUD_ENV": "prod",
    "LAKEHOUSE_URI": "s3://fraud-lake/prod/",
    **{name: f"value-of-{name.lower()}" for name in STEP_FUNCTIONS_SETTINGS},
    "SNOWFLAKE_ACCOUNT": "acme-fraud",
    "SNOWFLAKE_USER": "dagster",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_WAREHOUSE": "BI_WH",
    "SNOWFLAKE_DATABASE": "FRAUD",
    "SNOWFLAKE_SCHEMA": "METRICS",
}


def test_prod_builds_the_cloud_resources(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    defs = build_definitions(PROD)
    resources = defs.resources
    assert resources["lakehouse"].uri == "s3://fraud-lake/prod"
    assert isinstance(resources["landing"], S3Landing)
    assert resources["landing"].location == "s3://fraud-lake/prod/landing"
    assert isinstance(resources["training"], StepFunctionsTraining)
    assert isinstance(resources["warehouse"], SnowflakeWarehouse)
    # Secrets stay dg.EnvVar (read when a run starts): never stored in the Definitions.
    warehouse = resources["warehouse"]
    assert warehouse.password == dg.EnvVar("SNOWFLAKE_PASSWORD")
    assert PASSWORD not in repr(warehouse) + json.dumps(warehouse.model_dump(), default=str)
    assert not list(tmp_path.iterdir())  # nothing local was created
    assert defs.resolve_asset_graph().get_all_asset_keys()


def test_prod_on_adls_and_explicit_overrides(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = "abfss://lake@acct.dfs.core.windows.net/fraud"
    defs = build_definitions({**PROD, "LAKEHOUSE_URI": uri, "FRAUD_WAREHOUSE": "Snowflake"})
    assert type(defs.resources["landing"]).__name__ == "ADLSLanding"
    # FRAUD_TRAINING=local is honoured (e.g. to resume a run); the SFN settings are then moot.
    local_training = {k: v for k, v in PROD.items() if k not in STEP_FUNCTIONS_SETTINGS}
    defs = build_definitions({**local_training, "FRAUD_TRAINING": "local"})
    assert isinstance(defs.resources["training"], MetaflowTraining)
    state_machine = build_definitions({**PROD, "FRAUD_STATE_MACHINE": "fraud-prod"})
    assert state_machine.resources["training"].state_machine == "fraud-prod"


def test_prod_with_nothing_set_names_every_missing_setting() -> None:
    with pytest.raises(SettingsError) as caught:
        build_definitions({"FRAUD_ENV": "prod"})
    message = str(caught.value)
    assert message.startswith("FRAUD_ENV=prod cannot load; fix these settings")
    assert "LAKEHOUSE_URI is not set: set it to s3://" in message
    for name in (
        *STEP_FUNCTIONS_SETTINGS,
        "SNOWFLAKE_ACCOUNT",
        "SNOWFLAKE_USER",
        "SNOWFLAKE_PASSWORD",
        "SNOWFLAKE_WAREHOUSE",
        "SNOWFLAKE_DATABASE",
        "SNOWFLAKE_SCHEMA",
    ):
        assert name in message, name
    assert len(message.splitlines()) == 4  # headline + lakehouse, training, warehouse


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"LAKEHOUSE_URI": "/srv/lakehouse"}, "LAKEHOUSE_URI is a local path: set it to s3://"),
        ({"LAKEHOUSE_URI": "gs://b/lake"}, "LAKEHOUSE_URI is on gs://: set it to s3://"),
        ({"LANDING_URI": "/mnt/landing"}, "LANDING_URI is not on S3 or ADLS"),
        ({"METAFLOW_SFN_IAM_ROLE": ""}, "Step Functions needs METAFLOW_SFN_IAM_ROLE: set"),
        ({"FRAUD_TRAINING": "laptop"}, "FRAUD_TRAINING='laptop': use step-functions"),
        ({"FRAUD_WAREHOUSE": "duckdb"}, "FRAUD_WAREHOUSE='duckdb': FRAUD_ENV=prod replicates"),
        ({"SNOWFLAKE_SCHEMA": ""}, "missing SNOWFLAKE_SCHEMA (set the SNOWFLAKE_* variables)"),
    ],
)
def test_prod_refuses_each_invalid_setting(change: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match="cannot load") as caught:
        build_definitions({**PROD, **change})
    assert expected in str(caught.value)
    assert len(str(caught.value).splitlines()) == 2  # just that one problem


def test_prod_errors_never_show_secret_values() -> None:
    """Secrets set, other settings missing: the message names variables, never values."""
    secrets = {
        "SNOWFLAKE_PASSWORD": PASSWORD,
        "SNOWFLAKE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0B",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "LAKEHOUSE_URI": "ftp://user:hunter2-secret@host/lake",  # a URI may hold credentials
    }
    with pytest.raises(SettingsError) as caught:
        build_definitions({"FRAUD_ENV": "prod", "SNOWFLAKE_USER": "dagster", **secrets})
    message = str(caught.value)
    assert "LAKEHOUSE_URI is on ftp://" in message
    assert "SNOWFLAKE_ACCOUNT" in message and "set only one of SNOWFLAKE_PASSWORD" in message
    for value in (*secrets.values(), "hunter2-secret", "BEGIN PRIVATE KEY"):
        assert value not in message


def test_deploy_training_gets_the_assets_state_machine_whatever_the_environment() -> None:
    """``fraud deploy-training`` deploys what fraud_model triggers: FRAUD_STATE_MACHINE read by
    the same settings, the other settings of the environment left unchecked."""
    assert step_functions_training({}).state_machine == "FraudTrainingFlow"
    env = {"FRAUD_ENV": "prod", "FRAUD_TRAINING": "local", "FRAUD_STATE_MACHINE": "fraud-prod"}
    training = step_functions_training({**env, "FRAUD_TRAINING_TIMEOUT": "60"})
    assert (training.state_machine, training.timeout_seconds) == ("fraud-prod", 60)


@pytest.mark.slow
def test_dg_checks_and_lists_the_code_location(tmp_path) -> None:
    """``dg check defs`` and ``dg list defs`` from the project root ([tool.dg] in pyproject)."""
    dg_cli = os.path.join(os.path.dirname(sys.executable), "dg")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "LAKEHOUSE_URI": str(tmp_path / "lake")}

    def run(*args: str) -> str:
        done = subprocess.run(
            [dg_cli, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    assert "All definitions loaded successfully" in run("check", "defs")
    listed = json.loads(run("list", "defs", "--json"))
    assets = {asset["asset_key"]: asset for asset in listed["assets"]}
    assert set(assets) == EXPECTED_ASSETS
    assert all(asset["kinds"] and asset["owners"] for asset in assets.values())
