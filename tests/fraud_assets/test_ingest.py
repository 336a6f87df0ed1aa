"""Landing sensor and per-batch ingestion through Dagster, on real files."""

import json
import os
import time

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.assets import claim_features, claims_batch
from fraud_assets.resources import LakehouseResource, LocalLanding
from fraud_assets.sensors import landing_sensor_for
from fraud_core.lakehouse import FEATURES, QUARANTINE, RAW, Lakehouse
from fraud_core.simulate import SimulationConfig, inject_bad_rows, simulate_claims


@pytest.fixture
def landing(tmp_path) -> LocalLanding:
    path = tmp_path / "landing"
    path.mkdir()
    return LocalLanding(path=str(path))


def _claims(n: int = 2_000, seed: int = 1) -> pd.DataFrame:
    return simulate_claims(SimulationConfig(n_claims=n, seed=seed)).drop(columns="scenario")


def _ingest(tmp_path, landing: LocalLanding, batch: str, run_config=None):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("landing_batches", [batch])
    return dg.materialize(
        [claims_batch, claim_features],
        partition_key=batch,
        instance=instance,
        resources={"lakehouse": LakehouseResource(uri=str(tmp_path / "lake")), "landing": landing},
        run_config=run_config,
        raise_on_error=False,
    )


def test_rows_in_equal_valid_plus_quarantined(tmp_path, landing: LocalLanding) -> None:
    dirty = inject_bad_rows(_claims(), 0.02, seed=3)
    dirty.to_csv(os.path.join(landing.path, "claims_jan.csv"), index=False)
    result = _ingest(tmp_path, landing, "claims_jan")
    assert result.success
    lh = Lakehouse(str(tmp_path / "lake"))
    valid = lh.read_batch(RAW, "claims_jan")
    quarantined = lh.read_batch(QUARANTINE, "claims_jan")
    assert len(valid) + len(quarantined) == len(dirty)
    assert len(quarantined) >= 30
    assert quarantined["quarantine_reasons"].str.len().gt(0).all()
    assert set(valid["claim_id"]).isdisjoint(
        set(quarantined["claim_id"].dropna()) - set(valid["claim_id"])
    )
    assert len(lh.read_batch(FEATURES, "claims_jan")) == len(valid)
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "claims_contract"
    ]
    assert check.passed and check.check_name == "claims_contract"
    assert check.metadata["failure_rate"].value == pytest.approx(len(quarantined) / len(dirty))


def test_a_batch_over_the_failure_limit_stops_downstream(tmp_path, landing: LocalLanding) -> None:
    dirty = inject_bad_rows(_claims(), 0.2, seed=4)
    dirty.to_csv(os.path.join(landing.path, "bad.csv"), index=False)
    result = _ingest(tmp_path, landing, "bad")
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "claims_contract"
    ]
    assert not check.passed
    assert "rows rejected" in check.description and "limit 5.00%" in check.description
    lh = Lakehouse(str(tmp_path / "lake"))
    assert lh.batches(QUARANTINE) == ["bad"]  # the bad rows are kept with their reasons
    assert lh.batches(FEATURES) == []  # blocking check: claim_features did not run
    # A looser limit, set in run config, lets the good rows go on.
    loose = {"ops": {"claims_batch": {"config": {"max_failure_rate": 0.5}}}}
    assert _ingest(tmp_path, landing, "bad", loose).success
    assert lh.batches(FEATURES) == ["bad"]


def test_a_file_without_required_columns_fails_and_is_kept(tmp_path, landing: LocalLanding) -> None:
    path = os.path.join(landing.path, "partial.csv")
    _claims(50).drop(columns=["policy_id", "region"]).to_csv(path, index=False)
    result = _ingest(tmp_path, landing, "partial")
    assert not result.success
    failure = result.failure_data_for_node("claims_batch")
    assert "missing required column(s): policy_id, region" in str(
        failure.user_failure_data.description
    )
    assert os.path.exists(path)


def test_sensor_requests_each_file_version_once(landing: LocalLanding) -> None:
    sensor = landing_sensor_for(dg.define_asset_job("ingest", selection=["raw_claims"]))
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor):
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"landing": landing}
        )
        return sensor(ctx)

    skip = tick(None)
    assert isinstance(skip, dg.SkipReason)
    _claims(10).to_parquet(os.path.join(landing.path, "a.parquet"))
    _claims(10).to_csv(os.path.join(landing.path, "b.csv"), index=False)
    with open(os.path.join(landing.path, "notes.txt"), "w") as fh:
        fh.write("not a claims file: ignored")
    first = tick(None)
    assert sorted(r.partition_key for r in first.run_requests) == ["a", "b"]
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == ["a", "b"]
    assert isinstance(tick(first.cursor), dg.SkipReason)  # a repeated tick launches nothing
    later = time.time() + 5
    os.utime(os.path.join(landing.path, "a.parquet"), (later, later))  # the file is replaced
    again = tick(first.cursor)
    assert [r.partition_key for r in again.run_requests] == ["a"]
    assert again.run_requests[0].run_key != first.run_requests[0].run_key
    assert json.loads(again.cursor).keys() == {"a.parquet", "b.csv"}
