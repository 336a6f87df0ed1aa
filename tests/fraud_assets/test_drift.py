"""Drift: checks on real batches against the champion's reference, and the retraining loop."""

import asyncio
import os
import shutil

import dagster as dg
import numpy as np
import pytest
from dagster._core.loader import LoadingContextForTest
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionResolvedStatus,
)

from fraud_assets.assets import claim_features, claim_scores, claims_batch
from fraud_assets.resources import LakehouseResource, LocalLanding
from fraud_assets.sensors import retraining_sensor_for
from fraud_core import drift
from fraud_core.drift import drifting_streak
from fraud_core.features import build_features
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import FEATURE_DRIFT
from fraud_core.schema import coerce_claims
from fraud_core.simulate import (
    SimulationConfig,
    simulate_claims,
    split_into_batches,
    write_landing_files,
)


def _features(drift_strength: float, seed: int = 3):
    claims = simulate_claims(SimulationConfig(n_claims=60_000, seed=seed, drift=drift_strength))
    return build_features(coerce_claims(claims.drop(columns="scenario")).frame)


def test_statistics_separate_drift_from_noise() -> None:
    calm, shifted = _features(0.0), _features(1.0)
    parts = np.array_split(np.arange(len(calm)), 10)
    reference = drift.profile(calm.iloc[np.concatenate(parts[:4])], drift.MONITORED_FEATURES)
    for i in range(4, 10):  # same distribution: no alarm on any batch
        table = drift.drift_table(reference, calm.iloc[parts[i]], drift.MONITORED_FEATURES)
        assert not table["drifting"].any(), table
    last = drift.drift_table(reference, shifted.iloc[parts[9]], drift.MONITORED_FEATURES)
    assert last.set_index("column").loc["log_amount", "drifting"]


@pytest.fixture
def lake(champion_lakehouse, tmp_path) -> Lakehouse:
    root = tmp_path / "lake"
    shutil.copytree(champion_lakehouse, root)
    return Lakehouse(str(root))


def _ingest_all(lh: Lakehouse, tmp_path, drift_strength: float) -> list[str]:
    landing = tmp_path / f"landing-{drift_strength}"
    claims = simulate_claims(
        SimulationConfig(n_claims=30_000, seed=13, drift=drift_strength, id_prefix="NEW")
    )
    write_landing_files(split_into_batches(claims, 10), str(landing), "parquet")
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "lakehouse": LakehouseResource(uri=lh.uri),
        "landing": LocalLanding(path=str(landing)),
    }
    batches = sorted(os.path.splitext(f)[0] for f in os.listdir(landing))
    instance.add_dynamic_partitions("landing_batches", batches)
    for batch in batches:
        result = dg.materialize(
            [claims_batch, claim_features],
            partition_key=batch,
            instance=instance,
            resources=resources,
        )
        (check,) = [
            c for c in result.get_asset_check_evaluations() if c.check_name == "feature_drift"
        ]
        assert check.severity == dg.AssetCheckSeverity.WARN  # drift warns, never blocks
    return batches


def _tick(lh: Lakehouse):
    sensor = retraining_sensor_for(dg.define_asset_job("train", selection=["fraud_model"]), 2)
    ctx = dg.build_sensor_context(resources={"lakehouse": LakehouseResource(uri=lh.uri)})
    return sensor(ctx)


@pytest.mark.slow
def test_no_false_alarm_over_ten_calm_batches(lake: Lakehouse, tmp_path) -> None:
    batches = _ingest_all(lake, tmp_path, 0.0)
    records = lake.read_batches(FEATURE_DRIFT)
    assert set(records["batch_id"]) == set(batches)
    assert not records["drifting"].any(), records[records["drifting"]]
    assert isinstance(_tick(lake), dg.SkipReason)


@pytest.mark.slow
def test_persistent_drift_requests_a_retraining(lake: Lakehouse, tmp_path) -> None:
    batches = _ingest_all(lake, tmp_path, 1.0)
    streak = drifting_streak(lake, "fm-test-1")
    assert len(streak) >= 2 and streak[-1] == batches[-1]  # the newest batches drift
    request = _tick(lake)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"drift:fm-test-1:{batches[-1]}"
    assert request.tags["fraud/trigger"] == "drift"


def _check_status(
    instance: dg.DagsterInstance, asset: str, check: str
) -> AssetCheckExecutionResolvedStatus:
    """The status Dagster (UI and GraphQL) shows for the latest execution of a check."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return asyncio.run(record.resolve_status(LoadingContextForTest(instance)))


def test_before_a_champion_the_champion_checks_are_skipped_not_passed(
    tmp_path, small_claims
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    small_claims.head(500).to_csv(landing / "early.csv", index=False)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("landing_batches", ["early"])
    result = dg.materialize(
        [claims_batch, claim_features, claim_scores],
        partition_key="early",
        instance=instance,
        resources={
            "lakehouse": LakehouseResource(uri=str(tmp_path / "lake")),
            "landing": LocalLanding(path=str(landing)),
        },
    )
    assert result.success  # nothing failed: there was nothing to score or compare with
    evaluated = {c.check_name for c in result.get_asset_check_evaluations()}
    assert evaluated == {"claims_contract", "features_contract"}
    for asset, check in (
        ("claim_features", "feature_drift"),
        ("claim_scores", "scores_contract"),
        ("claim_scores", "score_drift"),
    ):
        assert _check_status(instance, asset, check) == AssetCheckExecutionResolvedStatus.SKIPPED
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "claim_scores" not in materialized
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    for check in ("feature_drift", "scores_contract", "score_drift"):
        assert any(m.startswith(f"{check} skipped: no champion model yet") for m in logged), check


def test_the_features_may_be_materialized_without_their_checks(lake: Lakehouse) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("landing_batches", ["b2"])
    result = dg.materialize(
        [claim_features],
        selection=dg.AssetSelection.assets("claim_features").without_checks(),
        partition_key="b2",
        instance=instance,
        resources={"lakehouse": LakehouseResource(uri=lake.uri)},
    )
    assert result.success
    assert result.get_asset_check_evaluations() == []
    assert len(result.get_asset_materialization_events()) == 1
    assert lake.batches(FEATURE_DRIFT) == []  # the drift check did not run
