"""Real claim feeds (#18): every kind of file an insurer's systems export, each alone in a fresh
landing zone, ingested through Dagster with the feed contracts of config/feeds.example.yaml (the
worked example of docs/data-intake.md), on a local folder and on S3 (moto's server).

Each file ends ingested with its feed's contract, or rejected with a reason that says what to
fix; every row read is accounted for: rows in = valid + quarantined + re-delivered.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from fraud_assets.assets import claim_features, claims_batch
from fraud_assets.definitions import SettingsError, build_definitions
from fraud_assets.resources import LakehouseResource
from fraud_core.claim_versions import CONTENT_HASH, SUPERSEDES, batch_lineage
from fraud_core.feeds import load_feeds
from fraud_core.landing import LandedFile, rejections
from fraud_core.layout import FEATURES, QUARANTINE, RAW
from fraud_core.simulate import SimulationConfig, simulate_claims
from tests.support.stores import Store, store_for

ROOT = Path(__file__).resolve().parents[2]
FEEDS_FILE = str(ROOT / "config" / "feeds.example.yaml")
N = 250


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Store:
    # 100-row chunks: most files here are read, validated and written in several.
    return store_for(request, tmp_path, monkeypatch, feeds_file=FEEDS_FILE, chunk_rows=100)


def _claims(n: int = N, seed: int = 7) -> pd.DataFrame:
    config = SimulationConfig(n_claims=n, seed=seed, id_prefix=f"F{seed}")
    return simulate_claims(config).drop(columns="scenario")


# --- the files -----------------------------------------------------------------------------------
def _csv(frame: pd.DataFrame, **options) -> bytes:
    encoding = options.pop("encoding", "utf-8")
    options.setdefault("date_format", "%Y-%m-%d")
    return frame.to_csv(index=False, **options).encode(encoding)


def _parquet(frame: pd.DataFrame, compression: str = "snappy") -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression=compression)
    return buf.getvalue()


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def _zip(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, data)
    return buf.getvalue()


def _grouped(values: pd.Series, thousands: str = ",", decimal: str = ".") -> pd.Series:
    """Amounts as a person writes them: 4,120.50 (or 4.120,50)."""
    text = values.map(lambda v: f"{v:,.2f}")
    return text.str.replace(",", "\0").str.replace(".", decimal).str.replace("\0", thousands)


def _broker(frame: pd.DataFrame) -> bytes:
    """The broker portal's export: claim names, 06/01/2025, 4,120.50."""
    amounts = {c: _grouped(frame[c]) for c in ("claimed_amount", "coverage_limit", "deductible")}
    return _csv(frame.assign(**amounts), date_format="%d/%m/%Y")


def _legacy(frame: pd.DataFrame) -> bytes:
    """The legacy_core export: its own column names, ';', cp1252, 06.01.2025, 4.120,50, no
    channel column, and a free-text column in the export's accents."""
    mapping = load_feeds(FEEDS_FILE).for_file("legacy/x.csv").columns
    out = frame.drop(columns="channel").rename(columns={v: k for k, v in mapping.items()})
    for column in ("AMOUNT", "COVER", "EXCESS"):
        out[column] = _grouped(out[column], thousands=".", decimal=",")
    out["true_fraud_probability"] = out["true_fraud_probability"].map(lambda v: f"{v:.6f}")
    out["true_fraud_probability"] = out["true_fraud_probability"].str.replace(".", ",")
    out["NOTE"] = "Schäden gemeldet"
    return _csv(out, sep=";", encoding="cp1252", date_format="%d.%m.%Y")


def _jsonl(frame: pd.DataFrame) -> bytes:
    return frame.to_json(orient="records", lines=True, date_format="iso").encode()


def _json_array(frame: pd.DataFrame) -> bytes:
    return frame.to_json(orient="records", date_format="iso").encode()


def _tz_parquet(frame: pd.DataFrame) -> bytes:
    # Noon in New York: the same day in UTC, which dates are taken in.
    noon = pd.to_datetime(frame["claim_date"]) + pd.Timedelta(hours=12)
    return _parquet(frame.assign(claim_date=noon.dt.tz_localize("America/New_York")))


@dataclass(frozen=True)
class Case:
    """A landed file and its outcome: ingested (``valid`` rows, ``feed``) or rejected."""

    name: str
    content: Callable[[pd.DataFrame], bytes]
    valid: int = N
    feed: str = "default@1"
    rejected: str = ""  # the start of the reason, after the file name
    quarantined: int = 0
    failed: str = ""  # the contract fails on rows: a reason every quarantined row has


CASES = [
    # Compressed files, and every Parquet codec pyarrow reads.
    Case("claims.csv.gz", lambda f: gzip.compress(_csv(f))),
    Case("claims.csv.bz2", lambda f: bz2.compress(_csv(f))),
    Case("claims.csv.zst", lambda f: _zstd(_csv(f))),
    Case("claims.zip", lambda f: _zip("export/claims_2025.csv", _csv(f))),
    Case("claims.jsonl.gz", lambda f: gzip.compress(_jsonl(f))),
    Case("claims.parquet.gz", lambda f: gzip.compress(_parquet(f))),
    *[
        Case(f"claims_{codec}.parquet", lambda f, c=codec: _parquet(f, c))
        for codec in ("gzip", "brotli", "zstd", "lz4", "none")
    ],
    # The ways exports differ, read with the default contract or the file's feed contract.
    Case("eu_export.csv", lambda f: _csv(f, sep=";")),
    Case("upper.csv", lambda f: _csv(f.rename(columns=str.upper).iloc[:, ::-1])),
    Case("broker/claims_0601.csv", lambda f: _broker(f), feed="broker_portal@3"),
    Case("legacy/extract_20250106.csv", _legacy, feed="legacy_core@2025-06"),
    Case("claims.json", _json_array),
    Case("bom.csv", lambda f: _csv(f, encoding="utf-8-sig")),
    Case("crlf.csv", lambda f: _csv(f, lineterminator="\r\n")),
    Case("extra.csv", lambda f: _csv(f.assign(adjuster_notes="called back"))),
    Case("tz.parquet", _tz_parquet),
    Case("schäden_märz.csv", _csv),
    # Without a contract, British dates and grouped amounts are quarantined with the reason.
    Case(
        "dates.csv",
        lambda f: _csv(f, date_format="%d/%m/%Y"),
        valid=0,
        quarantined=N,
        failed="is not a valid date (YYYY-MM-DD)",
    ),
    # Rejected as a whole, with the reason.
    Case("empty.csv", lambda f: b"", valid=0, rejected="the file is empty"),
    Case("header.csv", lambda f: _csv(f.iloc[:0]), valid=0, rejected="the file has no rows"),
    Case(
        "truncated.parquet",
        lambda f: _parquet(f)[: len(_parquet(f)) // 2],
        valid=0,
        rejected="cannot be read as parquet",
    ),
    Case(
        "claims.xlsx",
        lambda f: b"PK\x03\x04 not claims",
        valid=0,
        rejected="unsupported file type .xlsx",
    ),
    Case(
        "two.zip",
        lambda f: _zip_of_two(f),
        valid=0,
        rejected="a zip archive must hold exactly one claims file",
    ),
]


def _zip_of_two(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("a.csv", _csv(frame))
        archive.writestr("b.csv", _csv(frame))
    return buf.getvalue()


# --- running a file ------------------------------------------------------------------------------
def _run(store: Store, name: str, assets: list | None = None) -> dg.ExecuteInProcessResult:
    batch = LandedFile(name, 0, 0.0).batch_id
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("landing_batches", [batch])
    return dg.materialize(
        assets or [claims_batch],
        partition_key=batch,
        instance=instance,
        resources={
            "lakehouse": LakehouseResource(uri=store.lakehouse_uri),
            "landing": store.landing,
        },
        raise_on_error=False,
    )


def _contract(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "claims_contract"
    ]
    return check


def _raw_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("raw_claims")
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _accounted(metadata: dict) -> None:
    assert metadata["rows_in"] == (
        metadata["dagster/row_count"] + metadata["quarantined"] + metadata["re_delivered"]
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_kind_of_file_is_ingested_or_rejected_with_a_reason(store: Store, case: Case) -> None:
    frame = _claims()
    data = case.content(frame)
    store.drop(case.name, data)
    result = _run(store, case.name)
    check = _contract(result)
    lh = store.lakehouse()
    batch = LandedFile(case.name, 0, 0.0).batch_id
    metadata = _raw_metadata(result)
    _accounted(metadata)
    assert f"{metadata['feed']}@{metadata['feed_version']}" == case.feed
    raw, quarantined = lh.read_batch(RAW, batch), lh.read_batch(QUARANTINE, batch)
    assert len(raw) == case.valid == metadata["dagster/row_count"]
    if case.rejected:
        assert not check.passed
        base = os.path.basename(case.name)
        assert check.description.startswith(f"file rejected: {base}: {case.rejected}")
        (record,) = rejections(lh, batch)
        assert record["reason"].startswith(f"{base}: {case.rejected}")
        assert record["feed"] == case.feed.split("@")[0]
        return
    assert len(quarantined) == case.quarantined
    if case.failed:
        assert not check.passed
        assert quarantined["quarantine_reasons"].str.contains(case.failed, regex=False).all()
        return
    assert check.passed, check.description
    assert metadata["rows_in"] == N and rejections(lh, batch) == []
    assert sorted(raw["claim_id"]) == sorted(frame["claim_id"])
    # The same claims whatever the export: amounts and dates as the claim schema holds them.
    by_id = raw.set_index("claim_id").loc[frame["claim_id"]]
    assert by_id["claimed_amount"].tolist() == pytest.approx(frame["claimed_amount"].tolist())
    assert (by_id["claim_date"].to_numpy() == pd.to_datetime(frame["claim_date"]).to_numpy()).all()
    lineage = batch_lineage(lh, batch)
    assert lineage["feed"] == metadata["feed"] and lineage["feed_hash"] == metadata["feed_hash"]
    assert lineage["file"] == case.name and lineage["valid"] == N


def test_the_legacy_contract_fills_the_channel_and_ignores_free_text(store: Store) -> None:
    store.drop("legacy/extract.csv", _legacy(_claims()))
    result = _run(store, "legacy/extract.csv")
    check = _contract(result)
    assert check.passed
    assert check.metadata["ignored_columns"].value == "NOTE"
    raw = store.lakehouse().read_batch(RAW, "legacy_extract")
    assert set(raw["channel"]) == {"agent"}  # the contract's constant


def test_a_file_read_in_many_chunks_keeps_checks_that_need_the_whole_file(store: Store) -> None:
    frame = _claims(2_000)
    frame.loc[1_900, "claim_id"] = frame.loc[5, "claim_id"]  # repeats a claim of the 1st chunk
    frame.loc[[100, 700, 1_500], "region"] = None  # 3 of 2,000: over no bound; quarantined
    store.drop("big.jsonl", _jsonl(frame))
    result = _run(store, "big.jsonl")
    metadata = _raw_metadata(result)
    _accounted(metadata)
    assert (metadata["rows_in"], metadata["dagster/row_count"], metadata["quarantined"]) == (
        2_000,
        1_996,
        4,
    )
    quarantined = store.lakehouse().read_batch(QUARANTINE, "big")
    assert quarantined["source_row"].tolist() == [100, 700, 1_500, 1_900]
    assert quarantined["quarantine_reasons"].tolist()[-1] == "claim_id: duplicate of an earlier row"
    assert _contract(result).passed


# --- the same claims again ------------------------------------------------------------------------
def test_claims_delivered_again_are_counted_once(store: Store) -> None:
    frame = _claims()
    store.drop("jan.csv", _csv(frame))
    first = _run(store, "jan.csv")
    assert _raw_metadata(first)["dagster/row_count"] == N
    # The same 250 claims under another name and format: nothing new.
    store.drop("jan_resent.parquet", _parquet(frame))
    again = _run(store, "jan_resent.parquet", [claims_batch, claim_features])
    metadata = _raw_metadata(again)
    _accounted(metadata)
    assert (metadata["re_delivered"], metadata["dagster/row_count"]) == (N, 0)
    check = _contract(again)
    assert check.passed and again.success  # downstream ran, on no claims
    assert check.description.endswith(
        f"Claims delivered before: {N} re-delivered unchanged (not ingested again)"
    )
    lh = store.lakehouse()
    assert len(lh.read_batches(RAW)) == N and len(lh.read_batch(FEATURES, "jan_resent")) == 0
    # Later, 20 of them come back with their investigation outcome, and 30 new claims.
    later = frame.iloc[:100].copy()
    later.loc[:19, "is_fraud"] = ~later.loc[:19, "is_fraud"].astype(bool)
    update = pd.concat([later, _claims(30, seed=8)], ignore_index=True)
    store.drop("feb.jsonl", _jsonl(update))
    metadata = _raw_metadata(_run(store, "feb.jsonl"))
    _accounted(metadata)
    assert (metadata["dagster/row_count"], metadata["corrections"], metadata["re_delivered"]) == (
        50,
        20,
        80,
    )
    feb = lh.read_batch(RAW, "feb")
    corrections = feb[feb[SUPERSEDES].notna()]
    assert set(corrections[SUPERSEDES]) == {"jan"} and len(corrections) == 20
    assert feb[CONTENT_HASH].notna().all()
    assert len(lh.read_batches(RAW)) == N + 50  # both versions of the 20 are kept


def test_a_feeds_file_error_names_the_file_the_source_and_the_key(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "feeds.yaml"
    bad.write_text(
        "sources:\n  broker:\n    match: 'broker/*'\n    version: '1'\n"
        "    numbers: {decimal: ',', thousands: ','}\n    columns: {Ref: claim_ref}\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as error:  # the code location refuses to load
        build_definitions({"FEEDS_FILE": str(bad)})
    message = str(error.value)
    assert f"FEEDS_FILE: {bad}: fix these feed contracts:" in message
    assert "source 'broker': numbers: the thousands separator must be one non-digit" in message
    assert (
        "source 'broker': columns: target 'claim_ref' is not a claim column: use one of" in message
    )


def test_the_feeds_file_reaches_the_landing_zone(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    defs = build_definitions({"FEEDS_FILE": FEEDS_FILE, "CLAIM_DATE_MAX_SKEW_DAYS": "3"})
    landing = defs.resources["landing"]
    assert landing.feeds_file == FEEDS_FILE and landing.claim_date_max_skew_days == 3
    assert [c.name for c in landing.feeds().contracts] == ["legacy_core", "broker_portal"]
    assert landing.feeds().for_file("Broker/x.CSV").name == "broker_portal"  # any case
    assert landing.feeds().for_file("2025/01_broker.csv").name == "broker_portal"
    assert landing.feeds().for_file("claims.csv").name == "default"
