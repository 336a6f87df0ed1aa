"""Landing benchmarks: what a sensor tick costs when the zone already holds many files, and how
fast one big landed file goes through raw_claims + claim_features.

Figures:
  landing_sensor_tick           one tick of the landing sensor, nothing new, 10,000 files already
                                seen in a local folder (quick: 2,000); anchor: the same tick
                                with a cursor of every file seen, diffed on every tick
  landing_sensor_tick_new_file  the same, with one new file landed (its run request and partition)
  landing_sensor_tick_s3        the idle tick on S3 (moto server, loopback) with the same files
  landing_sensor_tick_adls      the idle tick on ADLS (Azurite, loopback), when Azurite is
                                installed in node_modules (the tests install it)
  landing_ingest_throughput     claims/s of raw_claims + claim_features (Dagster, in process) for
                                a 1,000,000-claim Parquet file with 0.2% bad rows on local disk
                                (quick: 100,000); anchor: the same calls without Dagster
  landing_ingest_peak_memory    the peak resident memory of that run
  landing_large_file_throughput claims/s of raw_claims alone (the streaming ingest: read, validate,
                                write a chunk at a time) for one 10,000,000-claim CSV file
                                (quick: 2,000,000); anchor: the same for 1,000,000 (quick: 500,000)
  landing_large_file_memory     peak resident memory of that ingest over the smaller file's: the
                                peak is independent of the file's size when the ratio stays near 1

The ingest is measured in a fresh child process (``python -m bench.landing child ...``) so its
peak memory is its own; the file is written beforehand by the parent, and the rows written are
counted from the partitions' Parquet footers. ``python -m bench.landing [--quick] large``
measures the two large-file figures alone (printed as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import dagster as dg

from bench.common import figure, peak_rss_mb, run_child, timed
from fraud_assets.resources import LandingZone
from fraud_cli.servers import FAKE_AWS, azurite, moto_server

SEED = 20_262  # never used by tests


# --- the sensor tick -----------------------------------------------------------------------------
# The bench lands its files within a few seconds; a zone fills over days. A short lookback,
# waited out once, puts the files the bench landed behind the window, as they would be.
LOOKBACK = 2.0


def _full_diff_sensor(job: Any) -> Any:
    """The anchor: the first landing sensor's design, a cursor naming every file ever seen,
    diffed against a full listing on every tick."""

    @dg.sensor(name="full_diff_sensor", job=job)
    def full_diff_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> Any:
        seen = json.loads(context.cursor) if context.cursor else {}
        new = [f for f in landing.list_files() if seen.get(f.name) != f.version]
        if not new:
            return dg.SkipReason("no new files")
        seen.update({f.name: f.version for f in new})
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f.name, partition_key=f.batch_id) for f in new],
            cursor=json.dumps(seen),
        )

    return full_diff_sensor


def _ticker(landing: Any, full_diff: bool = False) -> Callable[[str | None], Any]:
    from fraud_assets.sensors import landing_sensor_for

    job = dg.define_asset_job("ingest", selection=["raw_claims"])
    sensor = _full_diff_sensor(job) if full_diff else landing_sensor_for(job)
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> Any:
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"landing": landing}
        )
        return sensor(ctx)

    return tick


def _measure_ticks(landing: Any, files: int, drop: Callable[[str], None], runs: int) -> Any:
    """Tick times once ``files`` files were seen and the window moved past them.

    Returns idle ticks (nothing new), ticks with one new file each, the same idle tick with
    the full-diff anchor sensor, and both cursors' sizes.
    """
    tick = _ticker(landing)
    cursor, seen = None, 0
    while not isinstance(result := tick(cursor), dg.SkipReason):  # the backlog, 500 a tick
        seen, cursor = seen + len(result.run_requests), result.cursor
    if seen != files:
        raise AssertionError(f"the sensor saw {seen} of {files} files")
    time.sleep(LOOKBACK + 1.1)  # + 1 s: object stores stamp whole seconds
    drop("later_00.csv")
    steady = tick(cursor)
    if [r.partition_key for r in steady.run_requests] != ["later_00"]:
        raise AssertionError(f"expected one new file, got {steady.run_requests}")
    idle, result = timed(lambda: tick(steady.cursor), runs=runs, warmup=1)
    if result.__class__.__name__ != "SkipReason":
        raise AssertionError(f"an idle tick requested runs: {result}")
    with_new, cursor = [], steady.cursor
    for i in range(runs):
        drop(f"later_{i + 1:02d}.csv")
        started = time.perf_counter()
        result = tick(cursor)
        with_new.append(time.perf_counter() - started)
        if len(result.run_requests) != 1:
            raise AssertionError(f"expected one run request, got {len(result.run_requests)}")
        cursor = result.cursor
    anchor = _ticker(landing, full_diff=True)
    everything = anchor(None).cursor
    full, _ = timed(lambda: anchor(everything), runs=runs, warmup=1)
    return {
        "idle": idle,
        "new": with_new,
        "full_diff": full,
        "cursor_bytes": len(steady.cursor),
        "full_cursor_bytes": len(everything),
    }


def _small_file() -> bytes:
    return b"claim_id\nx\n"  # never read by the sensor: its content does not matter


def _tick_notes(files: int, m: dict[str, Any], where: str) -> str:
    return (
        f"{files:,} files already seen {where}, nothing new; cursor {m['cursor_bytes']:,} bytes "
        f"(the files of the lookback window, {LOOKBACK:.0f} s here, 600 s by default)"
    )


def _anchor(m: dict[str, Any]) -> str:
    return (
        f"a cursor of every file, diffed each tick: {_median_ms(m['full_diff']):.0f} ms, "
        f"{m['full_cursor_bytes']:,}-byte cursor"
    )


def _local_ticks(files: int, runs: int) -> list[dict[str, Any]]:
    from fraud_assets.resources import LocalLanding

    workdir = tempfile.mkdtemp(prefix="bench-landing-")

    def drop(name: str) -> None:
        with open(os.path.join(workdir, name), "wb") as fh:
            fh.write(_small_file())

    try:
        for i in range(files):
            drop(f"claims_{i:05d}.csv")
        landing = LocalLanding(path=workdir, lookback_seconds=LOOKBACK)
        m = _measure_ticks(landing, files, drop, runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return [
        figure(
            "landing_sensor_tick",
            [s * 1000 for s in m["idle"]],
            "ms",
            goal="<= 250",
            anchor=_anchor(m),
            notes=_tick_notes(files, m, "in a local folder"),
            warmup=1,
        ),
        figure(
            "landing_sensor_tick_new_file",
            [s * 1000 for s in m["new"]],
            "ms",
            goal="<= 500",
            notes=f"{files:,} files seen, one new: its run request and dynamic partition",
        ),
    ]


def _median_ms(seconds: list[float]) -> float:
    return sorted(seconds)[len(seconds) // 2] * 1000


def _upload(put: Callable[[str], None], files: int) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, (f"claims_{i:05d}.csv" for i in range(files))))


def _s3_ticks(files: int, runs: int) -> list[dict[str, Any]]:
    import boto3

    from fraud_assets.resources import S3Landing

    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    try:
        with tempfile.TemporaryDirectory() as logs, moto_server(Path(logs, "moto.log")) as endpoint:
            client = boto3.client("s3", endpoint_url=endpoint)
            client.create_bucket(Bucket="landing")
            body = _small_file()

            def drop(name: str) -> None:
                client.put_object(Bucket="landing", Key=f"in/{name}", Body=body)

            _upload(drop, files)
            landing = S3Landing(
                uri="s3://landing/in", endpoint_url=endpoint, lookback_seconds=LOOKBACK
            )
            m = _measure_ticks(landing, files, drop, runs)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return [
        figure(
            "landing_sensor_tick_s3",
            [s * 1000 for s in m["idle"]],
            "ms",
            anchor=_anchor(m),
            notes=_tick_notes(files, m, "in S3 (moto server on loopback)")
            + f"; {-(-files // 1000)} list_objects_v2 pages through get_objects: S3 cannot "
            "filter a listing by time, and moto lists far slower than S3",
            warmup=1,
        )
    ]


def _adls_ticks(files: int, runs: int) -> list[dict[str, Any]]:
    from azure.storage.blob import BlobServiceClient

    from fraud_assets.resources import ADLSLanding

    saved = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    try:
        with (
            tempfile.TemporaryDirectory() as workdir,
            azurite(Path(workdir), Path(workdir, "azurite.log")) as connection,
        ):
            os.environ["AZURE_STORAGE_CONNECTION_STRING"] = connection
            service = BlobServiceClient.from_connection_string(connection)
            container = service.create_container("landing")
            body = _small_file()

            def drop(name: str) -> None:
                container.upload_blob(f"in/{name}", body)

            _upload(drop, files)
            m = _measure_ticks(
                ADLSLanding(uri="az://landing/in", lookback_seconds=LOOKBACK), files, drop, runs
            )
    finally:
        if saved is None:
            os.environ.pop("AZURE_STORAGE_CONNECTION_STRING", None)
        else:
            os.environ["AZURE_STORAGE_CONNECTION_STRING"] = saved
    return [
        figure(
            "landing_sensor_tick_adls",
            [s * 1000 for s in m["idle"]],
            "ms",
            anchor=_anchor(m),
            notes=_tick_notes(files, m, "in ADLS (Azurite on loopback)")
            + f"; {-(-files // 5000)} adlfs listing pages: Azure cannot filter a listing by time",
            warmup=1,
        )
    ]


# --- ingest throughput (child side) ---------------------------------------------------------------
def _child_dagster(landing_dir: str, lake: str) -> dict[str, Any]:
    """raw_claims + claim_features through Dagster (in process), as the sensor's run does."""
    from fraud_assets.assets import claim_features, claims_batch
    from fraud_assets.resources import LakehouseResource, LocalLanding

    landing = LocalLanding(path=landing_dir)
    batch = landing.list_files()[0].batch_id
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("landing_batches", [batch])
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    started = time.perf_counter()
    result = dg.materialize(
        [claims_batch, claim_features],
        partition_key=batch,
        instance=instance,
        resources={"lakehouse": LakehouseResource(uri=lake), "landing": landing},
        run_config=quiet,
    )
    seconds = time.perf_counter() - started
    steps = {
        str(e.step_key): cast(Any, e.event_specific_data).duration_ms / 1000
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    return {"seconds": seconds, "batch": batch, "steps": steps}


def _child_direct(landing_dir: str, lake: str) -> dict[str, Any]:
    """The same work as plain function calls (both GX contracts included; the drift check,
    which has no champion to compare with here, is not): the anchor for what Dagster adds."""
    from expectations.claims import ClaimsValidator
    from expectations.features import validate_features
    from fraud_assets.resources import LocalLanding
    from fraud_core.ingest import ingest_file
    from fraud_core.lakehouse import Lakehouse
    from fraud_core.pipeline import featurize_batch
    from fraud_core.schema import DateWindow

    landing = LocalLanding(path=landing_dir)
    started = time.perf_counter()
    (landed,) = landing.list_files()
    feed = landing.feeds().for_file(landed.name)
    window = DateWindow.until_today(landing.claim_date_max_skew_days)
    validator = ClaimsValidator(feed.value_formats(), window)
    lh = Lakehouse(lake)
    ingest_file(lh, landed.batch_id, landed, landing.opener(landed.name), feed, validator)
    validate_features(featurize_batch(lh, landed.batch_id))
    return {"seconds": time.perf_counter() - started, "batch": landed.batch_id, "steps": {}}


def _child_large(landing_dir: str, lake: str) -> dict[str, Any]:
    """raw_claims alone through Dagster (in process): the sensor's run's first step."""
    from fraud_assets.assets import claims_batch
    from fraud_assets.resources import LakehouseResource, LocalLanding

    landing = LocalLanding(path=landing_dir)
    batch = landing.list_files()[0].batch_id
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("landing_batches", [batch])
    started = time.perf_counter()
    dg.materialize(
        [claims_batch],
        partition_key=batch,
        instance=instance,
        resources={"lakehouse": LakehouseResource(uri=lake), "landing": landing},
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    return {"seconds": time.perf_counter() - started, "batch": batch, "steps": {}}


def child(mode: str, landing_dir: str) -> dict[str, Any]:
    """Ingest the one file in ``landing_dir`` (``dagster``, ``direct`` or ``large``); rows,
    time, memory."""
    from fraud_core.lakehouse import Lakehouse
    from fraud_core.layout import QUARANTINE, RAW

    lake = os.path.join(os.path.dirname(landing_dir), f"lake-{mode}")
    shutil.rmtree(lake, ignore_errors=True)
    children = {"dagster": _child_dagster, "direct": _child_direct, "large": _child_large}
    out = children[mode](landing_dir, lake)
    lh = Lakehouse(lake)
    # From the partitions' footers: reading them back whole would measure the count itself
    # (most of the large file's peak memory was that read, not the ingest).
    valid = lh.batch_rows(RAW, out["batch"])
    quarantined = lh.batch_rows(QUARANTINE, out["batch"])
    (name,) = os.listdir(landing_dir)
    return {
        **out,
        "rows": valid + quarantined,
        "valid": valid,
        "quarantined": quarantined,
        "file_mb": os.path.getsize(os.path.join(landing_dir, name)) / 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }


def _ingest(claims: int, runs: int) -> list[dict[str, Any]]:
    from fraud_core.simulate import (
        SimulationConfig,
        inject_bad_rows,
        simulate_claims,
        write_landing_files,
    )

    workdir = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        frame = inject_bad_rows(
            simulate_claims(SimulationConfig(n_claims=claims, seed=SEED)), 0.002
        )
        landing = os.path.join(workdir, "landing")
        write_landing_files([frame], landing, "parquet")
        del frame
        results = [run_child("bench.landing", ["child", "dagster", landing]) for _ in range(runs)]
        direct = [run_child("bench.landing", ["child", "direct", landing]) for _ in range(runs)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    first = results[0]
    if first["rows"] != claims or direct[0]["rows"] != claims:
        raise AssertionError(f"rows in {first['rows']} != {claims} claims landed")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in first["steps"].items())
    direct_rate = sorted(r["rows"] / r["seconds"] for r in direct)[len(direct) // 2]
    return [
        figure(
            "landing_ingest_throughput",
            [r["rows"] / r["seconds"] for r in results],
            "claims/s",
            anchor=f"the same fraud_core + GX calls without Dagster: {direct_rate:,.0f} claims/s",
            notes=f"{claims:,} claims in one {first['file_mb']:.0f} MB Parquet file on local "
            f"disk, 0.2% bad rows ({first['valid']:,} valid + {first['quarantined']:,} "
            f"quarantined); dg.materialize in process, steps with their checks: {steps}",
        ),
        figure(
            "landing_ingest_peak_memory",
            [r["peak_rss_mb"] for r in results],
            "MB",
            goal="<= 4096",
            anchor=f"without Dagster: {direct[0]['peak_rss_mb']:.0f} MB",
            notes=f"peak resident memory of the child process ingesting {claims:,} claims "
            f"({first['file_mb']:.0f} MB of Parquet)",
        ),
    ]


# --- one large file, bounded memory -----------------------------------------------------------
LARGE_PART_CLAIMS = 500_000


def _write_large_csv(path: str, claims: int) -> None:
    """``claims`` simulated claims in one CSV file, generated and appended a part at a time."""
    from fraud_core.simulate import SimulationConfig, simulate_claims

    with open(path, "wb") as out:
        for part, start in enumerate(range(0, claims, LARGE_PART_CLAIMS)):
            config = SimulationConfig(
                n_claims=min(LARGE_PART_CLAIMS, claims - start),
                seed=SEED + part,
                id_prefix=f"L{part:03d}-",
            )
            frame = simulate_claims(config).drop(columns="scenario")
            text = frame.to_csv(index=False, header=part == 0, date_format="%Y-%m-%d")
            out.write(text.encode())


def _large_file(claims: int) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="bench-large-")
    try:
        landing = os.path.join(workdir, "landing")
        os.makedirs(landing)
        _write_large_csv(os.path.join(landing, "extract.csv"), claims)
        result = run_child("bench.landing", ["child", "large", landing])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if result["rows"] != claims:
        raise AssertionError(f"rows in {result['rows']} != {claims} claims landed")
    return result


def _large_files(small: int, large: int) -> list[dict[str, Any]]:
    from fraud_core.readers import DEFAULT_CHUNK_ROWS

    few, many = _large_file(small), _large_file(large)
    rate = {n: r["rows"] / r["seconds"] for n, r in ((small, few), (large, many))}
    return [
        figure(
            "landing_large_file_throughput",
            [rate[large]],
            "claims/s",
            anchor=f"{small:,} claims ({few['file_mb']:,.0f} MB): {rate[small]:,.0f} claims/s",
            notes=f"raw_claims (dg.materialize in process) for {large:,} claims in one "
            f"{many['file_mb']:,.0f} MB CSV file on local disk, read, validated and written "
            f"{DEFAULT_CHUNK_ROWS:,} rows at a time",
        ),
        figure(
            "landing_large_file_memory",
            [many["peak_rss_mb"] / few["peak_rss_mb"]],
            "x",
            goal="<= 1.5",
            anchor=f"{small:,} claims: {few['peak_rss_mb']:,.0f} MB",
            notes=f"peak resident memory ingesting {large:,} claims "
            f"({many['peak_rss_mb']:,.0f} MB) over that of {small:,} claims: "
            f"{large // small}x the file, the same chunk",
        ),
    ]


def large_sizes(quick: bool) -> tuple[int, int]:
    """The claims in the smaller and the larger file of the large-file figures."""
    return (500_000, 2_000_000) if quick else (1_000_000, 10_000_000)


def run(quick: bool) -> list[dict[str, Any]]:
    files = 2_000 if quick else 10_000
    runs = 5 if quick else 10
    figures = _local_ticks(files, runs)
    figures += _s3_ticks(files, runs)
    figures += _adls_ticks(files, runs)
    figures += _ingest(100_000 if quick else 1_000_000, 1 if quick else 2)
    figures += _large_files(*large_sizes(quick))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="every landing figure; `large`: the large-file figures alone"
    )
    parser.add_argument("--quick", action="store_true")
    sub = parser.add_subparsers(dest="cmd")
    c = sub.add_parser("child")
    c.add_argument("mode", choices=["dagster", "direct", "large"])
    c.add_argument("landing_dir")
    sub.add_parser("large", help="one CSV of 1M and one of 10M claims (--quick: 500k and 2M)")
    args = parser.parse_args()
    if args.cmd == "child":
        print(json.dumps(child(args.mode, args.landing_dir), default=str))
    elif args.cmd == "large":
        print(json.dumps(_large_files(*large_sizes(args.quick)), indent=2, default=str))
    else:
        print(json.dumps(run(args.quick), indent=2, default=str))
