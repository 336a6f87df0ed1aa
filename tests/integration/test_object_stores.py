"""The lakehouse, the landing zones and the sensor on a local folder, S3 (moto) and ADLS (Azurite).

Each store is a real local server started by a session fixture (tests/conftest.py). Files are
dropped into the landing zone with the store's own client (as a claims system would), the
landing sensor is evaluated, the run it requests is materialized with the lakehouse on the
same store, and the partitions are read back from there.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.assets import claim_features, claim_scores, claims_batch
from fraud_assets.resources import LakehouseResource, LandingZone
from fraud_assets.sensors import landing_sensor_for
from fraud_core.lakehouse import Lakehouse
from fraud_core.landing import LandedFile, rejections
from fraud_core.layout import DATA_DOCS, FEATURES, QUARANTINE, RAW, SCORES
from fraud_core.simulate import SimulationConfig, inject_bad_rows, simulate_claims
from tests.support.stores import Store, store_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3", "adls"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Store:
    return store_for(request, tmp_path, monkeypatch)


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _claims(n: int, seed: int) -> pd.DataFrame:
    config = SimulationConfig(n_claims=n, seed=seed, id_prefix=f"S{seed}")
    return simulate_claims(config).drop(columns="scenario")


def _ticker(landing: LandingZone, instance: dg.DagsterInstance):
    sensor = landing_sensor_for(dg.define_asset_job("ingest", selection=["raw_claims"]))

    def tick(cursor: str | None):
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"landing": landing}
        )
        return sensor(ctx)

    return tick


def _run(store: Store, instance: dg.DagsterInstance, request: dg.RunRequest, assets: list):
    return dg.materialize(
        assets,
        partition_key=request.partition_key,
        tags=request.tags,
        instance=instance,
        resources={
            "lakehouse": LakehouseResource(uri=store.lakehouse_uri),
            "landing": store.landing,
        },
        raise_on_error=False,
    )


# --- the lakehouse ---------------------------------------------------------------------------
def test_lakehouse_semantics_are_the_same_on_every_store(store: Store) -> None:
    lh = store.lakehouse()
    assert lh.batches(RAW) == [] and lh.listdir(RAW) == [] and lh.champion() is None
    lh.write_batch(RAW, "b1", pd.DataFrame({"x": [1, 2, 3]}))
    lh.write_batch(RAW, "b1", pd.DataFrame({"x": [4]}))  # a rerun replaces, never appends
    assert lh.read_batch(RAW, "b1")["x"].tolist() == [4]
    assert lh.table_version(RAW) == 1  # one commit per write
    assert lh.batches(RAW) == ["b1"] and "_delta_log" in lh.listdir(RAW)
    # Another process adds a batch (and a half-written upload that is not one yet).
    store.lakehouse().write_batch(RAW, "b2", pd.DataFrame({"x": [5]}))
    store.write_beside(f"{RAW}/batch_id=b3/_uploading", b"...")
    assert lh.batches(RAW) == ["b1", "b2"]  # seen at once: the log is read fresh
    assert lh.read_batches(RAW)["x"].tolist() == [4, 5]
    lh.set_champion({"version": "fm-1"})
    lh.set_champion({"version": "fm-2"})
    assert lh.champion() == {"version": "fm-2"}
    assert lh.url(RAW) == f"{store.lakehouse_uri if store.name != 'local' else lh.root}/{RAW}"
    lh.write_batch(RAW, "b2", pd.DataFrame({"x": [6, 7]}))
    assert lh.read_batches(RAW)["x"].tolist() == [4, 6, 7]


# --- drop a file, sense it, run it ---------------------------------------------------------------
def test_a_landed_file_reaches_raw_features_and_scores(
    store: Store, champion_lakehouse: Path
) -> None:
    lh = store.lakehouse()
    champion = Lakehouse(str(champion_lakehouse))
    for rel in champion.find("models"):  # the fixture's promoted champion, on this store
        lh.write_bytes(f"models/{rel}", champion.read_bytes(f"models/{rel}"))
    dirty = inject_bad_rows(_claims(3_000, seed=21), 0.02, seed=5)
    store.drop("2024/claims_feb.csv", dirty.to_csv(index=False).encode())

    instance = dg.DagsterInstance.ephemeral()
    sensed = _ticker(store.landing, instance)(None)
    (request,) = sensed.run_requests
    assert request.partition_key == "2024_claims_feb"
    for add in sensed.dynamic_partitions_requests:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    result = _run(store, instance, request, [claims_batch, claim_features, claim_scores])

    assert result.success
    batch = request.partition_key
    assert (
        batch in lh.batches(RAW) and batch in lh.batches(FEATURES) and batch in lh.batches(SCORES)
    )
    valid, quarantined = lh.read_batch(RAW, batch), lh.read_batch(QUARANTINE, batch)
    assert len(valid) + len(quarantined) == len(dirty) and len(quarantined) > 0
    assert len(lh.read_batch(FEATURES, batch)) == len(valid)
    scores = lh.read_batch(SCORES, batch)
    assert len(scores) == len(valid) and set(scores["model_version"]) == {"fm-test-1"}
    (raw_event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("raw_claims")
    ]
    metadata = raw_event.materialization.metadata
    assert metadata["file"].value == store.landing.file_uri("2024/claims_feb.csv")
    # Each contract's Data Docs page, built locally, is on the store and linked from its check.
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    for check, suite, column in (
        ("claims_contract", "claims", b"claimed_amount"),
        ("features_contract", "features", b"amount_to_limit"),
        ("scores_contract", "scores", b"fraud_score"),
    ):
        page = checks[check].metadata["data_docs"].value
        assert page.startswith(lh.url(DATA_DOCS) + f"/validations/{suite}/{batch}/")
        assert column in lh.read_bytes(page.removeprefix(lh.url("") + "/"))
    assert f"{DATA_DOCS}/static/styles/data_docs_default_styles.css" in {
        f"{DATA_DOCS}/{rel}" for rel in lh.find(DATA_DOCS)
    }
    events = " ".join(str(e) for e in result.all_events)
    for secret in store.secrets:  # credentials never reach logs or metadata
        assert secret not in events


def test_a_rejected_file_is_recorded_on_the_store_and_kept(store: Store) -> None:
    data = b"PAR1 this is not a parquet file"
    store.drop("broken.parquet", data)
    instance = dg.DagsterInstance.ephemeral()
    sensed = _ticker(store.landing, instance)(None)
    (request,) = sensed.run_requests
    instance.add_dynamic_partitions("landing_batches", ["broken"])
    result = _run(store, instance, request, [claims_batch, claim_features])
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "claims_contract"
    ]
    assert not check.passed
    assert check.description.startswith(
        "file rejected: broken.parquet: cannot be read as parquet: "
    )
    (record,) = rejections(store.lakehouse(), "broken")
    assert record["source"] == store.landing.file_uri("broken.parquet") and record["copied"]
    assert [f.name for f in store.landing.list_files()] == ["broken.parquet"]  # still there
    assert store.landing.read("broken.parquet") == data


# --- the sensor ------------------------------------------------------------------------------
def _same_second(a: LandedFile, b: LandedFile) -> bool:
    return int(a.modified) == int(b.modified)


def test_the_sensor_sees_every_file_once_on_every_store(store: Store) -> None:
    instance = dg.DagsterInstance.ephemeral()
    tick = _ticker(store.landing, instance)
    assert isinstance(tick(None), dg.SkipReason)
    cursor = None
    body = _parquet(_claims(20, seed=3))
    same_second = False
    for attempt in range(3):  # S3 and Azure stamp whole seconds: land two in one second
        while time.time() % 1 > 0.3:
            time.sleep(0.02)
        first, second = f"a{attempt}.parquet", f"b{attempt}.parquet"
        store.drop(first, body)
        seen = tick(cursor)
        assert [r.tags["landing/file"] for r in seen.run_requests] == [first]
        store.drop(second, body)  # lands after the tick that saw the first one
        seen_later = tick(seen.cursor)
        assert [r.tags["landing/file"] for r in seen_later.run_requests] == [second]
        cursor = seen_later.cursor
        files = {f.name: f for f in store.landing.list_files()}
        if _same_second(files[first], files[second]):
            same_second = True
            break
    assert same_second, "could not land two files within one second to test it"
    assert isinstance(tick(cursor), dg.SkipReason)  # a repeated tick launches nothing
    time.sleep(1.1)  # so the replacement gets a later stamp on a 1-second store
    store.drop(first, _parquet(_claims(30, seed=4)))  # the sender replaces a file
    replaced = tick(cursor)
    assert [r.tags["landing/file"] for r in replaced.run_requests] == [first]
    everything = {r.run_key for r in tick(None).run_requests}  # a restart without a cursor
    assert replaced.run_requests[0].run_key in everything  # same keys: Dagster drops them
