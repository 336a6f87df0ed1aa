"""Dagster's production deployment (deploy/dagster), run on this machine.

PostgreSQL (tests/support/postgres.py) holds the instance; the code location is `dagster api
grpc` in a container of the project's image; `dagster-daemon run` and `dagster-webserver` run
as processes against deploy/dagster/dagster.yaml; the DockerRunLauncher starts every run in a
container of the same image. The test's dagster.yaml is the production one with an overlay
(``overlay``): the host network instead of a Docker network, the run containers' bind mount of
this test's folders (lakehouse, landing zone, Metaflow datastore, DAGSTER_HOME for step logs),
local step logs instead of S3, and shorter monitoring intervals. The run queue, pools, run
monitoring and run retries are the production file's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import httpx
import pytest
import yaml

from fraud_assets.definitions import RUN_KIND_TAG
from fraud_cli.servers import free_port, wait_for_port
from fraud_core.lakehouse import Lakehouse
from fraud_core.landing import rejections
from fraud_core.layout import RAW
from fraud_core.simulate import SimulationConfig, simulate_claims, write_landing_files
from tests.support.containers import DockerEngine
from tests.support.postgres import Postgres, postgres_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "dagster"
BIN = Path(sys.executable).parent
LOCATION = "fraud"
T = TypeVar("T")
TRAINING_CONFIG = {
    "search": {"hidden": [[32]], "dropout": [0.1], "lr": [0.003], "batch_size": [1024]},
    "training": {"max_epochs": 50, "patience": 50, "weight_decay": 1e-05, "embedding_dim": 4},
    "split": {"val_fraction": 0.15, "test_fraction": 0.15},
    "decision": {"investigation_cost": 150.0, "precision_k": 100},
    "max_workers": 1,
    "lightgbm": {"params": {"learning_rate": 0.1, "num_leaves": 15, "num_boost_round": 50}},
}
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }
"""


def overlay(shared: Path, app_env: dict[str, str]) -> dict[str, Any]:
    """deploy/dagster/dagster.yaml with this machine's differences (the module's docstring)."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config.pop("compute_logs")  # the default: files under DAGSTER_HOME/storage
    launcher = config["run_launcher"]["config"]
    launcher.pop("network")
    pg = [v for v in launcher["env_vars"] if v.startswith("DAGSTER_PG_")]
    launcher["env_vars"] = pg + sorted(app_env)
    launcher["container_kwargs"] |= {
        "network_mode": "host",
        "volumes": {str(shared): {"bind": str(shared), "mode": "rw"}},
        "stop_timeout": 10,
    }
    config["run_monitoring"] |= {"poll_interval_seconds": 3, "cancel_timeout_seconds": 30}
    return config


@dataclass
class Deployment:
    pg: Postgres
    docker: DockerEngine
    image: str
    home: Path
    lake: Path
    landing: Path
    env: dict[str, str]  # of the daemon and the webserver
    url: str
    log_dir: Path
    daemon: subprocess.Popen[bytes] | None = None
    webserver: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] | None = None

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child holds it)
        return subprocess.Popen(
            [str(BIN / name), *args],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_daemon(self) -> None:
        self.daemon = self.start("dagster-daemon", "run", "-w", str(self.home / "workspace.yaml"))

    def log(self, name: str, tail: int = 4000) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-tail:]

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
        ).json()
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    @functools.cached_property
    def instance(self) -> dg.DagsterInstance:
        """The deployment's instance, read from this process (Postgres)."""
        return dg.DagsterInstance.from_config(str(self.home))

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float, poll: float = 1) -> T:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in (("dagster-daemon", self.daemon), ("webserver", self.webserver)):
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)}")
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n"
                    f"daemon log:\n{self.log('dagster-daemon')}"
                )
            time.sleep(poll)

    def sensor_runs(self) -> list[dg.DagsterRun]:
        tags = {"dagster/sensor_name": "landing_sensor"}
        return list(self.instance.get_runs(dg.RunsFilter(tags=tags)))


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def deployment(
    docker: DockerEngine, project_image: str, champion_lakehouse: Path
) -> Iterator[Deployment]:
    timings: dict[str, float] = {}
    shared = Path(tempfile.mkdtemp(prefix="fraud-dagster-prod-", dir="/tmp"))
    home, lake, landing = shared / "dagster_home", shared / "lake", shared / "landing"
    shutil.copytree(champion_lakehouse, lake)  # a champion, and labelled batches b0..b2
    for folder in (home, landing, shared / "mf", shared / "warehouse"):
        folder.mkdir()
    (shared / "training.json").write_text(json.dumps(TRAINING_CONFIG))
    app_env = {
        "LAKEHOUSE_URI": str(lake),
        "LANDING_URI": str(landing),
        "LANDING_SENSOR_INTERVAL_SECONDS": "2",
        "DUCKDB_PATH": str(shared / "warehouse" / "fraud.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(shared / "mf"),
        "FRAUD_TRAINING_CONFIG": str(shared / "training.json"),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="fraud-dagster-logs-"))
    code_port, web_port = free_port(), free_port()
    with (
        pytest.MonkeyPatch.context() as mp,
        postgres_server() as pg,
        contextlib.ExitStack() as stack,
    ):
        timings["postgres start"] = pg.started_in
        for key, value in pg.env.items():  # this process reads the instance too
            mp.setenv(key, value)
        (home / "dagster.yaml").write_text(yaml.safe_dump(overlay(shared, app_env)))
        workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
        workspace["load_from"][0]["grpc_server"] |= {"host": "127.0.0.1", "port": code_port}
        (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        # Everything in the shared folder is written by the image's user (uid 10001) too.
        subprocess.run(["chmod", "-R", "a+rwX", str(shared)], check=True)
        env = {
            **os.environ,
            **pg.env,
            **app_env,
            "DAGSTER_HOME": str(home),
            "DOCKER_HOST": docker.host,
        }
        deployment = Deployment(
            pg, docker, project_image, home, lake, landing, env, f"http://127.0.0.1:{web_port}",
            log_dir, timings=timings,
        )  # fmt: skip
        started = time.monotonic()
        migrate = subprocess.run(
            [str(BIN / "dagster"), "instance", "migrate"], env=env, capture_output=True, text=True
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        pool = subprocess.run(
            [str(BIN / "dagster"), "instance", "concurrency", "set", "training", "1"],
            env=env,
            capture_output=True,
            text=True,
        )  # the deployment's step (docs): a pool given only default_limit is made lazily
        assert pool.returncode == 0, pool.stdout + pool.stderr
        timings["dagster instance migrate + pool"] = time.monotonic() - started

        started = time.monotonic()
        run = ["run", "-d", "--network", "host", "-v", f"{shared}:{shared}"]
        for key, value in {**pg.env, **app_env, "DAGSTER_CURRENT_IMAGE": project_image}.items():
            run += ["-e", f"{key}={value}"]
        code = docker.docker(
            *run, project_image, "dagster", "api", "grpc", "-m", "fraud_assets.definitions",
            "-h", "127.0.0.1", "-p", str(code_port), "--location-name", LOCATION,
        ).stdout.strip()  # fmt: skip
        stack.callback(docker.docker, "rm", "-f", code, check=False)
        deadline = time.monotonic() + 180
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", code_port), timeout=1),
            ):
                break
            state = docker.docker("inspect", "-f", "{{.State.Running}}", code).stdout.strip()
            logs = docker.docker("logs", code, check=False)
            assert state == "true", f"code location exited:\n{logs.stdout}{logs.stderr}"
            assert time.monotonic() < deadline, f"code location not up:\n{logs.stderr}"
            time.sleep(0.5)
        timings["code location (container) start"] = time.monotonic() - started

        started = time.monotonic()
        deployment.webserver = deployment.start(
            "dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port),
            "-w", str(home / "workspace.yaml"),
        )  # fmt: skip
        stack.callback(lambda: _stop(deployment.webserver))
        deployment.start_daemon()
        stack.callback(lambda: _stop(deployment.daemon))
        wait_for_port(web_port, deployment.webserver, timeout=120)
        timings["webserver start"] = time.monotonic() - started
        stack.callback(lambda: "instance" in vars(deployment) and deployment.instance.dispose())
        yield deployment
        print("timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))


def land(
    deployment: Deployment,
    count: int,
    seed: int,
    prefix: str,
    edit: Callable[[list[Path]], None] = lambda _: None,
) -> list[Path]:
    """``count`` CSV files of 300 claims, written aside, changed by ``edit``, then moved into
    the landing zone (each appears whole, as an upload does)."""
    claims = simulate_claims(SimulationConfig(n_claims=300 * count, seed=seed, id_prefix=prefix))
    parts = [claims.iloc[i * 300 : (i + 1) * 300] for i in range(count)]
    staging = Path(tempfile.mkdtemp(dir=deployment.landing.parent))
    paths = [Path(p) for p in write_landing_files(parts, str(staging), "csv", prefix.lower())]
    edit(paths)
    landed = []
    for path in paths:
        os.chmod(path, 0o666)
        landed.append(Path(shutil.move(path, deployment.landing / path.name)))
    return landed


def rename_a_required_column(paths: list[Path]) -> None:
    """The second file loses ``claimed_amount`` (the contract rejects the whole file)."""
    paths[1].write_text(paths[1].read_text().replace("claimed_amount", "amount_claimed"))


def finished(runs: list[dg.DagsterRun], files: list[Path]) -> list[dg.DagsterRun] | None:
    """The runs of ``files`` when every file has a finished run and none is still going."""
    names = {f.name for f in files}
    mine = [r for r in runs if r.tags.get("landing/file") in names]
    if {r.tags["landing/file"] for r in mine} != names:
        return None
    return mine if all(r.is_finished for r in mine) else None


@dataclass(frozen=True)
class Landed:
    files: list[Path]
    bad: Path
    runs: list[dg.DagsterRun]


@pytest.fixture(scope="module")
def ingested(deployment: Deployment) -> Landed:
    """The landing sensor switched on (it ships stopped), then three good files and one that
    the contract rejects (a required column renamed) land; the daemon's runs, once finished."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "sensorName": "landing_sensor",
    }
    state = deployment.wait(
        "the code location in the webserver",
        lambda: _try(lambda: deployment.graphql(START_SENSOR, {"selector": selector})),
        120,
    )
    assert state["startSensor"]["sensorState"]["status"] == "RUNNING", state
    files = land(deployment, 4, seed=21, prefix="PRODA", edit=rename_a_required_column)
    bad = files[1]
    started = time.monotonic()
    runs = deployment.wait(
        "four finished ingest runs", lambda: finished(deployment.sensor_runs(), files), 300
    )
    print(f"4 files ingested by the daemon in {time.monotonic() - started:.1f} s")
    return Landed(files, bad, runs)


def test_the_daemon_ingests_every_landed_file_in_its_own_container(
    deployment: Deployment, ingested: Landed
) -> None:
    """Every good file is ingested, the rejected one is recorded with its reason and not
    retried; every run ran in its own container of the image; materializations and check
    results are in Postgres."""
    files, bad, runs = ingested.files, ingested.bad, ingested.runs
    by_file = {r.tags["landing/file"]: r for r in runs}
    assert len(runs) == 4, [(r.tags["landing/file"], r.status) for r in runs]  # none retried
    assert by_file.pop(bad.name).status == dg.DagsterRunStatus.FAILURE
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in by_file.values())
    for run in runs:
        assert run.tags["dagster/image"] == deployment.image
        assert run.tags["docker/container_id"]  # the DockerRunLauncher's container
        assert run.tags[RUN_KIND_TAG] == "ingest"
    lake = Lakehouse(str(deployment.lake))
    for name in by_file:
        assert len(lake.read_batch(RAW, Path(name).stem)) == 300
    (rejection,) = rejections(lake, bad.stem)
    assert "claimed_amount" in rejection["reason"]

    counts = dict(
        deployment.pg.query(
            "SELECT dagster_event_type, count(*) FROM event_logs WHERE dagster_event_type IN "
            "('ASSET_MATERIALIZATION', 'ASSET_CHECK_EVALUATION') GROUP BY 1"
        )
    )
    assert counts["ASSET_MATERIALIZATION"] >= 3 * 4  # raw, quarantine, features, scores
    checks = deployment.pg.query(
        "SELECT run_id, execution_status FROM asset_check_executions "
        "WHERE asset_key LIKE '%raw_claims%'"
    )
    file_of = {r.run_id: r.tags["landing/file"] for r in runs}
    statuses = {file_of[run_id]: status for run_id, status in checks if run_id in file_of}
    assert statuses == {f.name: "FAILED" if f == bad else "SUCCEEDED" for f in files}, checks


def _try(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except (httpx.HTTPError, AssertionError, KeyError):
        return None


def test_a_killed_daemon_and_a_dead_run_worker_lose_nothing(deployment: Deployment) -> None:
    """SIGKILL to the daemon while files are being ingested, and one run's container killed
    with it (a worker dying): after the restart, run monitoring marks the dead run FAILURE,
    the daemon reruns it (ingest opts in), and every file has exactly one successful run."""
    files = land(deployment, 3, seed=22, prefix="PRODB")

    def a_running_container() -> dg.DagsterRun | None:
        names = {f.name for f in files}
        return next(
            (
                r
                for r in deployment.sensor_runs()
                if r.tags.get("landing/file") in names
                and r.status == dg.DagsterRunStatus.STARTED
                and "docker/container_id" in r.tags
            ),
            None,
        )

    victim = deployment.wait("a run of the new files started", a_running_container, 240, 0.5)
    assert deployment.daemon is not None
    os.killpg(deployment.daemon.pid, signal.SIGKILL)
    deployment.daemon.wait()
    deployment.docker.docker("kill", victim.tags["docker/container_id"])
    killed = time.monotonic()
    deployment.start_daemon()

    def dead_run_marked() -> dg.DagsterRun | None:
        run = deployment.instance.get_run_by_id(victim.run_id)
        return run if run is not None and run.status == dg.DagsterRunStatus.FAILURE else None

    deployment.wait("run monitoring to mark the killed run", dead_run_marked, 120)
    print(f"dead run marked FAILURE {time.monotonic() - killed:.1f} s after the kill")

    def settled() -> list[dg.DagsterRun] | None:
        runs = finished(deployment.sensor_runs(), files)
        if runs is None:
            return None
        retried = [r for r in runs if r.tags.get("dagster/parent_run_id") == victim.run_id]
        return runs if retried and all(r.is_finished for r in retried) else None

    runs = deployment.wait("the rerun of the killed run and the other files", settled, 300)
    print(f"all settled {time.monotonic() - killed:.1f} s after the kill")
    successes: dict[str, int] = {}
    for run in runs:
        if run.status == dg.DagsterRunStatus.SUCCESS:
            successes[run.tags["landing/file"]] = successes.get(run.tags["landing/file"], 0) + 1
    assert successes == {f.name: 1 for f in files}, [(r.run_id, r.status, r.tags) for r in runs]
    events = deployment.instance.all_logs(victim.run_id)
    messages = " ".join(str(e.message) for e in events)
    assert "run worker" in messages.lower() or "container" in messages.lower(), messages[-2000:]
    lake = Lakehouse(str(deployment.lake))
    for path in files:  # each batch written once: rows not doubled by the rerun
        frame = lake.read_batch(RAW, path.stem)
        assert len(frame) == 300 and frame["claim_id"].is_unique


def test_a_second_training_waits_in_the_queue(deployment: Deployment) -> None:
    """Two train_model runs requested at once: the pool "training" holds one, so the second
    stays QUEUED until the first ends (terminated here), then starts."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=int(deployment.url.rsplit(":", 1)[1]))
    first = client.submit_job_execution("train_model", repository_location_name=LOCATION)
    second = client.submit_job_execution("train_model", repository_location_name=LOCATION)

    def status(run_id: str) -> str:
        return str(client.get_run_status(run_id).value)

    deployment.wait(
        "a training run started", lambda: "STARTED" in {status(first), status(second)}, 180
    )
    running, waiting = (first, second) if status(first) == "STARTED" else (second, first)
    for _ in range(8):  # the queue is looked at every few seconds: it keeps the second back
        assert status(waiting) == "QUEUED", status(waiting)
        time.sleep(1)
    client.terminate_run(running)
    deployment.wait("the first training canceled", lambda: status(running) == "CANCELED", 120)
    deployment.wait("the second training started", lambda: status(waiting) == "STARTED", 120)
    client.terminate_run(waiting)
    deployment.wait("the second training canceled", lambda: status(waiting) == "CANCELED", 120)


def test_the_jenkins_stage_launches_and_follows_a_run(
    deployment: Deployment, ingested: Landed
) -> None:
    """scripts/materialize.py (the Jenkins "Materialize" stage) on this deployment: it launches
    report_metrics (over the batches the daemon scored) through the webserver and follows the
    run, in its container, to success."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "materialize.py")],
        env={
            **os.environ,
            "DAGSTER_URL": deployment.url,
            "MATERIALIZE_SELECTION": "report_metrics",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 run(s) succeeded" in done.stdout, done.stdout
    instance = deployment.instance
    (run,) = instance.get_runs(dg.RunsFilter(job_name="report_metrics"), limit=1)
    events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    materialized = {
        e.dagster_event.asset_key.to_user_string()
        for e in events
        if e.dagster_event is not None and e.dagster_event.asset_key is not None
    }
    assert run.status == dg.DagsterRunStatus.SUCCESS and "docker/container_id" in run.tags
    assert run.run_id in done.stdout  # followed: its URL printed
    assert materialized == {"model_metrics", "snowflake_metrics_replica"}
