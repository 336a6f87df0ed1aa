"""`dagster dev` loads workspace.yaml and serves the asset graph (what `make ui` starts)."""

import pytest

from fraud_cli.servers import dagster_dev

QUERY = """
{ assetNodes { assetKey { path } isPartitioned hasAssetChecks
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


@pytest.mark.integration
def test_dagster_dev_serves_the_graph(tmp_path) -> None:
    env = {"LAKEHOUSE_URI": str(tmp_path / "lake"), "DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    with dagster_dev(tmp_path / "dagster_home", env) as server:
        nodes = server.graphql(QUERY)["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert len(keys) == 8
    assert keys["raw_claims"]["isPartitioned"] and not keys["fraud_model"]["isPartitioned"]
    gate = keys["fraud_model"]["assetChecksOrError"]["checks"]
    assert gate == [{"name": "model_gate", "blocking": True}]
