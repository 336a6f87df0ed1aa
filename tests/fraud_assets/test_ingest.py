"""Landing sensor and per-batch ingestion through Dagster, on real files in a local folder.

The same code serves S3 and ADLS (tests/integration/test_object_stores.py runs it there); the
bad-file cases live here because they do not depend on the store.
"""

import io
import json
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_assets.assets import claim_features, claims_batch
from fraud_assets.definitions import build_definitions
from fraud_assets.resources import (
    ADLSLanding,
    LakehouseResource,
    LandingZone,
    LocalLanding,
    S3Landing,
)
from fraud_assets.sensors import FILE_TAG, VERSION_TAG, landing_sensor_for
from fraud_core.lakehouse import Lakehouse
from fraud_core.landing import LandedFile, LandingCursor, rejections
from fraud_core.layout import DATA_DOCS, FEATURES, QUARANTINE, RAW
from fraud_core.schema import INPUT_COLUMNS, REQUIRED_COLUMNS
from fraud_core.simulate import SimulationConfig, inject_bad_rows, simulate_claims


@pytest.fixture
def landing(tmp_path) -> LocalLanding:
    path = tmp_path / "landing"
    path.mkdir()
    return LocalLanding(path=str(path))


def _claims(n: int = 2_000, seed: int = 1) -> pd.DataFrame:
    config = SimulationConfig(n_claims=n, seed=seed, id_prefix=f"S{seed}-")
    return simulate_claims(config).drop(columns="scenario")


def _ingest(tmp_path, landing: LandingZone, batch: str, run_config=None):
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


def _contract(result) -> dg.AssetCheckEvaluation:
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "claims_contract"
    ]
    return check


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


# --- good and dirty files ------------------------------------------------------------------------
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
    check = _contract(result)
    assert check.passed
    assert check.metadata["failure_rate"].value == pytest.approx(len(quarantined) / len(dirty))
    assert check.description.startswith(f"{len(quarantined)} of 2,000 rows rejected (")
    assert rejections(lh, "claims_jan") == []


def test_a_batch_over_the_failure_limit_stops_downstream(tmp_path, landing: LocalLanding) -> None:
    dirty = inject_bad_rows(_claims(), 0.2, seed=4)
    dirty.to_csv(os.path.join(landing.path, "bad.csv"), index=False)
    result = _ingest(tmp_path, landing, "bad")
    check = _contract(result)
    assert not check.passed and not result.success
    assert "rows rejected" in check.description and "limit 5.00%" in check.description
    lh = Lakehouse(str(tmp_path / "lake"))
    assert lh.batches(QUARANTINE) == ["bad"]  # the bad rows are kept with their reasons
    assert lh.batches(FEATURES) == []  # blocking check: claim_features did not run
    # 20% bad rows also make ~3% of claimed_amount unreadable and of policyholder_id missing.
    assert check.metadata["batch_failures"].value == {
        "claimed_amount: null_fraction": "3.00% null (plausible at most 1.00%)",
        "policyholder_id: null_fraction": "2.55% null (plausible at most 1.00%)",
    }
    # Looser limits, set in run config, let the good rows go on.
    loose = {
        "ops": {
            "claims_batch": {
                "config": {"max_failure_rate": 0.5, "stop_on_implausible_nulls": False}
            }
        }
    }
    assert _ingest(tmp_path, landing, "bad", loose).success
    assert lh.batches(FEATURES) == ["bad"]


def test_wrong_types_quarantine_those_rows_and_keep_the_good_ones(
    tmp_path, landing: LocalLanding
) -> None:
    claims = _claims(200).astype({"claimed_amount": object})
    claims.loc[::5, "claimed_amount"] = "12,50"  # a European decimal comma: 40 rows
    claims.to_csv(os.path.join(landing.path, "commas.csv"), index=False)
    result = _ingest(tmp_path, landing, "commas")
    assert _contract(result).description == (
        "40 of 200 rows rejected (20.00%; limit 5.00%): "
        "claimed_amount (40 rows, e.g. '12,50' is not a valid number). "
        "Implausible share of nulls: claimed_amount: null_fraction: "
        "20.00% null (plausible at most 1.00%)"
    )
    lh = Lakehouse(str(tmp_path / "lake"))
    assert len(lh.read_batch(RAW, "commas")) == 160
    quarantined = lh.read_batch(QUARANTINE, "commas")
    assert (
        quarantined["quarantine_reasons"] == "claimed_amount: '12,50' is not a valid number"
    ).all()
    assert quarantined["source_row"].tolist() == list(range(0, 200, 5))
    assert "claim_features" not in _materialized(result)


def test_wrong_types_in_json_lines(tmp_path, landing: LocalLanding) -> None:
    claims = _claims(100).astype({"witnesses": object})
    claims.loc[:19, "witnesses"] = "two"
    claims.to_json(
        os.path.join(landing.path, "typed.jsonl"), orient="records", lines=True, date_format="iso"
    )
    result = _ingest(tmp_path, landing, "typed")
    assert _contract(result).description == (
        "20 of 100 rows rejected (20.00%; limit 5.00%): "
        "witnesses (20 rows, e.g. 'two' is not a valid whole number). "
        "Implausible share of nulls: witnesses: null_fraction: "
        "20.00% null (plausible at most 1.00%)"
    )
    assert len(Lakehouse(str(tmp_path / "lake")).read_batch(RAW, "typed")) == 80


def test_duplicate_claim_ids_keep_the_first_copy(tmp_path, landing: LocalLanding) -> None:
    claims = _claims(200)
    resent = pd.concat([claims, claims.iloc[:20]], ignore_index=True)  # 20 claims sent twice
    resent.to_parquet(os.path.join(landing.path, "resent.parquet"))
    result = _ingest(tmp_path, landing, "resent")
    check = _contract(result)
    assert not check.passed
    assert check.description == (
        "20 of 220 rows rejected (9.09%; limit 5.00%): "
        "claim_id (20 rows, e.g. duplicate of an earlier row)"
    )
    lh = Lakehouse(str(tmp_path / "lake"))
    valid = lh.read_batch(RAW, "resent")
    assert len(valid) == 200 and valid["claim_id"].is_unique
    quarantined = lh.read_batch(QUARANTINE, "resent")
    assert quarantined["source_row"].tolist() == list(range(200, 220))
    assert quarantined["claim_id"].tolist() == claims["claim_id"].iloc[:20].tolist()


# --- files rejected as a whole -------------------------------------------------------------------
def test_a_column_mostly_lost_upstream_stops_the_batch(tmp_path, landing: LocalLanding) -> None:
    claims = _claims(200)
    claims.loc[:5, "channel"] = None  # 3% of one column: under the 5% limit, over its 1%
    claims.to_csv(os.path.join(landing.path, "nochannel.csv"), index=False)
    result = _ingest(tmp_path, landing, "nochannel")
    check = _contract(result)
    assert not check.passed and "claim_features" not in _materialized(result)
    assert check.metadata["failure_rate"].value == pytest.approx(0.03)
    assert check.metadata["batch_failures"].value == {
        "channel: null_fraction": "3.00% null (plausible at most 1.00%)"
    }
    assert check.description.endswith(
        "Implausible share of nulls: channel: null_fraction: 3.00% null (plausible at most 1.00%)"
    )
    relaxed = {"ops": {"claims_batch": {"config": {"stop_on_implausible_nulls": False}}}}
    assert _ingest(tmp_path, landing, "nochannel", relaxed).success


def test_the_contract_links_the_batchs_data_docs_page(tmp_path, landing: LocalLanding) -> None:
    lh = Lakehouse(str(tmp_path / "lake"))
    pages = {}
    for batch, claims in (("docs_a", _claims(300)), ("docs_b", _claims(300, seed=2))):
        claims.loc[7, "region"] = "atlantis"
        claims.to_csv(os.path.join(landing.path, f"{batch}.csv"), index=False)
        result = _ingest(tmp_path, landing, batch)
        check = _contract(result)
        assert check.passed
        link = check.metadata["data_docs"]
        assert isinstance(link, dg.PathMetadataValue)  # a local lakehouse: a path
        pages[batch] = link.value
        (features,) = [
            c for c in result.get_asset_check_evaluations() if c.check_name == "features_contract"
        ]
        features_page = features.metadata["data_docs"].value
        assert features_page.startswith(lh.url(DATA_DOCS) + f"/validations/features/{batch}/")
        assert os.path.exists(features_page)
        if batch == "docs_a":
            static = os.path.join(lh.url(DATA_DOCS), "static/styles/data_docs_default_styles.css")
            first_copy = os.stat(static).st_mtime_ns
    assert os.stat(static).st_mtime_ns == first_copy  # static files are copied once
    for batch, page in pages.items():
        assert page.startswith(lh.url(DATA_DOCS) + f"/validations/claims/{batch}/")
        assert page.endswith(f"/{batch}.html")
        html = Path(page).read_text(encoding="utf-8")
        assert "region" in html and "atlantis" in html  # the failed expectation and its value
    site = lh.find(DATA_DOCS)
    assert {"index.html", "expectations/claims.html", "expectations/features.html"} <= set(site)
    suite_page = Path(lh.url(f"{DATA_DOCS}/expectations/claims.html")).read_text(encoding="utf-8")
    assert "Evaluated by numpy" in suite_page
    assert len([p for p in site if p.startswith("validations/claims/")]) == 2


def _assert_rejected(tmp_path, landing: LocalLanding, name: str, batch: str, message: str):
    """Ingest a file that cannot be read as claims: failed check, nothing lost, file kept."""
    path = os.path.join(landing.path, name)
    with open(path, "rb") as fh:
        before = fh.read()
    result = _ingest(tmp_path, landing, batch)
    assert not result.success  # the run fails visibly (blocking check), it does not crash
    check = _contract(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description == message
    assert "claim_features" not in _materialized(result)
    with open(path, "rb") as fh:
        assert fh.read() == before  # the landed file is untouched
    lh = Lakehouse(str(tmp_path / "lake"))
    (record,) = rejections(lh, batch)
    assert record["reason"] == message.removeprefix("file rejected: ")
    assert record["source"] == path
    return lh, record, check


def test_a_corrupt_parquet_file_is_rejected_and_kept(tmp_path, landing: LocalLanding) -> None:
    data = b"PAR1" + b"\x00" * 64 + b"not really parquet"
    with open(os.path.join(landing.path, "corrupt.parquet"), "wb") as fh:
        fh.write(data)
    with pytest.raises(pa.ArrowInvalid) as arrow:
        pq.ParquetFile(io.BytesIO(data))
    lh, record, check = _assert_rejected(
        tmp_path,
        landing,
        "corrupt.parquet",
        "corrupt",
        f"file rejected: corrupt.parquet: cannot be read as parquet: {arrow.value}",
    )
    assert record["copied"] and record["rows_quarantined"] == 0
    folder = check.metadata["rejection"].value.removeprefix(lh.url("") + "/")
    assert lh.read_bytes(f"{folder}/corrupt.parquet") == data  # a copy beside the reason
    assert (
        len(lh.read_batch(RAW, "corrupt")) == 0 and len(lh.read_batch(QUARANTINE, "corrupt")) == 0
    )


def test_an_empty_file_is_rejected(tmp_path, landing: LocalLanding) -> None:
    open(os.path.join(landing.path, "empty.csv"), "wb").close()
    _assert_rejected(
        tmp_path, landing, "empty.csv", "empty", "file rejected: empty.csv: the file is empty"
    )


def test_a_file_with_a_header_and_no_rows_is_rejected(tmp_path, landing: LocalLanding) -> None:
    _claims(5).iloc[:0].to_csv(os.path.join(landing.path, "header.csv"), index=False)
    _assert_rejected(
        tmp_path, landing, "header.csv", "header", "file rejected: header.csv: the file has no rows"
    )


def test_unreadable_json_lines_are_rejected(tmp_path, landing: LocalLanding) -> None:
    data = b'{"claim_id": "a"}\n{not json\n'
    with open(os.path.join(landing.path, "broken.jsonl"), "wb") as fh:
        fh.write(data)
    with pytest.raises(ValueError) as pandas_error:
        pd.read_json(io.BytesIO(data), lines=True, dtype=False)
    message = f"file rejected: broken.jsonl: cannot be read as jsonl: {pandas_error.value}"
    _assert_rejected(tmp_path, landing, "broken.jsonl", "broken", message)


def test_missing_columns_quarantine_every_row_with_the_reason(
    tmp_path, landing: LocalLanding
) -> None:
    partial = _claims(50).drop(columns=["policy_id", "region"])
    partial.to_csv(os.path.join(landing.path, "partial.csv"), index=False)
    message = (
        "file rejected: partial.csv: claims file is missing required column(s): policy_id, "
        f"region. Expected columns: {', '.join(INPUT_COLUMNS)}. The file has: "
        f"{', '.join(partial.columns)} (feed 'default'; map other names onto the claim's in a "
        "feed contract, see docs/data-intake.md#feed-contracts)."
    )
    lh, record, _ = _assert_rejected(tmp_path, landing, "partial.csv", "partial", message)
    quarantined = lh.read_batch(QUARANTINE, "partial")
    assert len(quarantined) == 50 and len(lh.read_batch(RAW, "partial")) == 0  # 50 = 0 + 50
    assert (quarantined["quarantine_reasons"] == record["reason"]).all()
    assert quarantined["source_row"].tolist() == list(range(50))
    assert record["rows_quarantined"] == 50 and record["copied"]


def test_a_file_from_another_system_is_rejected(tmp_path, landing: LocalLanding) -> None:
    # Right data, wrong column names (an export in the claims system's own naming).
    renamed = _claims(20).rename(columns=lambda c: "".join(p.title() for p in c.split("_")))
    renamed.to_parquet(os.path.join(landing.path, "export.parquet"))
    # Names are matched without regard to case: single words (Region) are found.
    missing = [c for c in REQUIRED_COLUMNS if "_" in c]
    message = (
        "file rejected: export.parquet: claims file is missing required column(s): "
        f"{', '.join(missing)}. Expected columns: {', '.join(INPUT_COLUMNS)}. The "
        f"file has: {', '.join(renamed.columns)} (feed 'default'; map other names onto the "
        "claim's in a feed contract, see docs/data-intake.md#feed-contracts)."
    )
    lh, _, _ = _assert_rejected(tmp_path, landing, "export.parquet", "export", message)
    assert len(lh.read_batch(QUARANTINE, "export")) == 20


def test_a_file_over_the_size_limit_is_rejected_unread(tmp_path, landing: LocalLanding) -> None:
    small = LocalLanding(path=landing.path, max_file_bytes=1_000)
    path = os.path.join(landing.path, "big.csv")
    _claims(50).to_csv(path, index=False)
    size = os.path.getsize(path)
    message = (
        f"file rejected: big.csv: {size:,} bytes is over the 1,000-byte limit of one batch "
        "(LANDING_MAX_FILE_BYTES); split the file"
    )
    lh, record, _ = _assert_rejected(tmp_path, small, "big.csv", "big", message)
    assert not record["copied"] and record["size"] == size  # recorded, left where it landed
    assert lh.find("rejected") == [f"claims/batch=big/version={record['version']}/rejection.json"]


def test_two_files_for_one_batch_are_not_guessed_between(tmp_path, landing: LocalLanding) -> None:
    _claims(10).to_csv(os.path.join(landing.path, "a.csv"), index=False)
    _claims(10, seed=2).to_json(os.path.join(landing.path, "a.jsonl"), orient="records", lines=True)
    message = (
        "file rejected: batch 'a' is ambiguous: a.csv, a.jsonl all map to it; rename or remove "
        "all but one of them"
    )
    result = _ingest(tmp_path, landing, "a")
    assert _contract(result).description == message
    lh = Lakehouse(str(tmp_path / "lake"))
    assert lh.batches(RAW) == [] and lh.batches(QUARANTINE) == []  # nothing overwritten
    assert [r["reason"] for r in rejections(lh, "a")] == [message.removeprefix("file rejected: ")]


def test_a_file_gone_before_its_run_is_reported(tmp_path, landing: LocalLanding) -> None:
    result = _ingest(tmp_path, landing, "gone")
    assert _contract(result).description == (
        f"file rejected: no landing file for batch 'gone' in {landing.location}: the file was "
        "moved or renamed after its partition was added"
    )
    assert _materialized(result) == set()


def test_a_fixed_file_replaces_the_rejected_batch(tmp_path, landing: LocalLanding) -> None:
    path = os.path.join(landing.path, "fixme.csv")
    _claims(30).drop(columns="region").to_csv(path, index=False)
    assert not _ingest(tmp_path, landing, "fixme").success
    _claims(30).to_csv(path, index=False)  # the sender fixes the file and lands it again
    assert _ingest(tmp_path, landing, "fixme").success
    lh = Lakehouse(str(tmp_path / "lake"))
    assert len(lh.read_batch(RAW, "fixme")) == 30 and len(lh.read_batch(QUARANTINE, "fixme")) == 0
    assert len(rejections(lh, "fixme")) == 1  # the rejected version stays on record


# --- the sensor --------------------------------------------------------------------------------
def _sensor_ticks(landing: LandingZone, **settings):
    job = dg.define_asset_job("ingest", selection=["raw_claims"])
    sensor = landing_sensor_for(job, **settings)
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor):
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"landing": landing}
        )
        return sensor(ctx)

    return tick


def test_sensor_requests_each_file_version_once(landing: LocalLanding) -> None:
    tick = _sensor_ticks(landing)
    skip = tick(None)
    assert isinstance(skip, dg.SkipReason)
    _claims(10).to_parquet(os.path.join(landing.path, "a.parquet"))
    _claims(10).to_csv(os.path.join(landing.path, "b.csv"), index=False)
    with open(os.path.join(landing.path, "notes.txt"), "w") as fh:
        fh.write("not a claims file: its run records why")
    with open(os.path.join(landing.path, ".b.csv.uploading"), "w") as fh:
        fh.write("an upload in progress: ignored")
    first = tick(None)
    assert sorted(r.partition_key for r in first.run_requests) == ["a", "b", "notes.txt"]
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == ["a", "b", "notes.txt"]
    a = next(r for r in first.run_requests if r.partition_key == "a")
    assert a.tags[FILE_TAG] == "a.parquet" and a.run_key == f"a.parquet@{a.tags[VERSION_TAG]}"
    assert a.run_config == {"execution": {"config": {"in_process": {}}}}  # one process per run
    assert isinstance(tick(first.cursor), dg.SkipReason)  # a repeated tick launches nothing
    later = time.time() + 5
    os.utime(os.path.join(landing.path, "a.parquet"), (later, later))  # the file is replaced
    again = tick(first.cursor)
    assert [r.partition_key for r in again.run_requests] == ["a"]
    assert again.run_requests[0].run_key != a.run_key
    assert json.loads(again.cursor)["recent"].keys() == {"a.parquet", "b.csv", "notes.txt"}
    # A restarted sensor (cursor lost) asks again with the same run keys: Dagster drops them.
    assert {r.run_key for r in tick(None).run_requests} == {
        again.run_requests[0].run_key,
        *(r.run_key for r in first.run_requests if r.partition_key != "a"),
    }


def test_sensor_does_not_read_files_so_broken_ones_get_their_run(landing: LocalLanding) -> None:
    tick = _sensor_ticks(landing)
    open(os.path.join(landing.path, "empty.csv"), "wb").close()
    with open(os.path.join(landing.path, "corrupt.parquet"), "wb") as fh:
        fh.write(b"PAR1 garbage")
    os.makedirs(os.path.join(landing.path, "2024", "01"))
    _claims(5).to_csv(os.path.join(landing.path, "2024", "01", "claims.csv"), index=False)
    result = tick(None)
    assert sorted(r.partition_key for r in result.run_requests) == [
        "2024_01_claims",
        "corrupt",
        "empty",
    ]


def test_the_sensor_works_off_a_backlog_over_several_ticks(landing: LocalLanding) -> None:
    tick = _sensor_ticks(landing, max_files_per_tick=2)
    for name in ("c", "a", "b"):
        _claims(5).to_csv(os.path.join(landing.path, f"{name}.csv"), index=False)
    first = tick(None)
    second = tick(first.cursor)
    assert [r.partition_key for r in first.run_requests] == ["c", "a"]  # oldest first
    assert [r.partition_key for r in second.run_requests] == ["b"]
    assert isinstance(tick(second.cursor), dg.SkipReason)


def _file(name: str, at: float, etag: str = "e") -> LandedFile:
    return LandedFile(name, 10, at, etag=etag)


def test_cursor_sees_files_stamped_in_the_same_second() -> None:
    first, cursor = LandingCursor().advance([_file("a.csv", 100.0)], lookback=60)
    assert [f.name for f in first] == ["a.csv"]
    # b landed in the same second as a, but after the tick that saw a.
    new, cursor = cursor.advance([_file("a.csv", 100.0), _file("b.csv", 100.0)], lookback=60)
    assert [f.name for f in new] == ["b.csv"]
    assert cursor.advance([_file("a.csv", 100.0), _file("b.csv", 100.0)], 60)[0] == []


def test_cursor_sees_a_file_stamped_before_the_newest_one_seen() -> None:
    _, cursor = LandingCursor().advance([_file("late.csv", 130.0)], lookback=60)
    # An upload stamped when it started (t=100) became visible after one stamped t=130.
    new, _ = cursor.advance([_file("early.csv", 100.0), _file("late.csv", 130.0)], lookback=60)
    assert [f.name for f in new] == ["early.csv"]


def test_cursor_stays_small_however_many_files_were_seen() -> None:
    files = [_file(f"f{i:05}.csv", float(i)) for i in range(10_000)]
    new, cursor = LandingCursor().advance(files, lookback=600)
    assert len(new) == 10_000 and cursor.since == 9_999.0
    assert len(cursor.recent) == 601  # the window behind the newest file, not all 10,000
    assert len(cursor.dump()) < 30_000
    replaced = [*files[:-1], _file("f09999.csv", 10_050.0, etag="new")]
    again, _ = LandingCursor.parse(cursor.dump()).advance(replaced, lookback=600)
    assert [f.name for f in again] == ["f09999.csv"]


def test_the_first_sensors_cursor_is_still_read() -> None:
    old = json.dumps({"a.csv": _file("a.csv", 5.0).version})
    new, cursor = LandingCursor.parse(old).advance(
        [_file("a.csv", 5.0), _file("b.csv", 6.0)], lookback=60
    )
    assert [f.name for f in new] == ["b.csv"] and cursor.since == 6.0


# --- choosing the landing zone ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "kind", "location"),
    [
        ("/data/landing", LocalLanding, "/data/landing"),
        ("file:///data/landing", LocalLanding, "/data/landing"),
        ("s3://claims-in/incoming/", S3Landing, "s3://claims-in/incoming"),
        (
            "abfss://claims@acct.dfs.core.windows.net/incoming",
            ADLSLanding,
            "abfss://claims@acct.dfs.core.windows.net/incoming",
        ),
        ("az://claims/incoming", ADLSLanding, "az://claims/incoming"),
    ],
)
def test_landing_uri_picks_the_landing_zone(tmp_path, monkeypatch, uri, kind, location) -> None:
    monkeypatch.chdir(tmp_path)
    defs = build_definitions(
        {
            "LANDING_URI": uri,
            "LANDING_MAX_FILE_BYTES": "1000",
            "LANDING_CHUNK_ROWS": "5000",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        }
    )
    zone = defs.resources["landing"]
    assert isinstance(zone, kind) and zone.location == location and zone.max_file_bytes == 1000
    assert zone.chunk_rows == 5000
    if isinstance(zone, S3Landing):
        assert zone.endpoint_url == "http://127.0.0.1:9"


def test_an_unknown_landing_scheme_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="LANDING_URI 'gs://b/p' has an unsupported scheme 'gs'"):
        build_definitions({"LANDING_URI": "gs://b/p"})


def test_a_backlog_is_taken_oldest_first_a_tick_at_a_time() -> None:
    files = [_file(f"f{i}.csv", 100.0 + i // 2) for i in range(7)]  # pairs stamped alike
    cursor, taken = LandingCursor(), []
    for _ in range(4):
        new, cursor = cursor.advance(files, lookback=60, limit=3)
        taken.append([f.name for f in new])
    assert taken == [["f0.csv", "f1.csv", "f2.csv"], ["f3.csv", "f4.csv", "f5.csv"], ["f6.csv"], []]
