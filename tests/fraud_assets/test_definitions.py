"""The code location loads, with the graph, checks, jobs and environment rules we expect."""

import dagster as dg
import pytest

from fraud_assets.definitions import build_definitions

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

    assert isinstance(definitions.defs, dg.Definitions)


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="FRAUD_ENV='staging' is not available"):
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
