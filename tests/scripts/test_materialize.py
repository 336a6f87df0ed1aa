"""scripts/materialize.py (fraud_cli.materialize): selections planned against the code location,
runs launched on a real ``dagster dev`` through GraphQL and followed to their end, and the
in-process mode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraud_cli import servers
from fraud_cli.materialize import EXIT_FAILED, EXIT_TIMEOUT, UsageError
from fraud_cli.materialize.cli import build_parser
from fraud_cli.materialize.cli import main as materialize_main
from fraud_cli.materialize.plan import AssetInfo, Plan, plan_selection
from fraud_cli.materialize.remote import materialize_remote
from fraud_cli.servers import DagsterDev
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import SCORES

ROOT = Path(__file__).resolve().parents[2]
IN_PROCESS_EXECUTOR = "execution:\n  config:\n    in_process: {}\n"
RUN_URL = re.compile(r"(http://127\.0\.0\.1:\d+/runs/([0-9a-f-]{36}))")
# The daemon dequeues runs every second (default 5 s): the queue is kept, only faster.
INSTANCE_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


# --- the planner (no server) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def location() -> tuple[list[str], dict[str, Any]]:
    info = AssetInfo
    assets = {
        "raw_claims": info(True, ["b0", "b1"], ["ingest_batch"]),
        "claim_scores": info(True, ["b0", "b1"], ["ingest_batch", "score_batch"]),
        "model_metrics": info(False, [], ["report_metrics"]),
        "snowflake_metrics_replica": info(False, [], ["report_metrics"]),
    }
    return ["ingest_batch", "score_batch", "report_metrics"], assets


def test_a_job_name_plans_that_job(location: Any) -> None:
    plan = plan_selection("report_metrics", "", *location)
    assert (plan.job, plan.asset_keys, plan.partitions) == ("report_metrics", None, [None])


def test_asset_keys_plan_the_asset_job_per_partition(location: Any) -> None:
    plan = plan_selection("raw_claims, claim_scores", "all", *location)
    assert plan.job == "__ASSET_JOB"
    assert plan.asset_keys == [["raw_claims"], ["claim_scores"]]
    assert plan.partitions == ["b0", "b1"]
    assert plan_selection("score_batch", "b1", *location).partitions == ["b1"]


@pytest.mark.parametrize(
    ("selection", "partitions", "message"),
    [
        ("", "", "MATERIALIZE_SELECTION is empty"),
        ("nope", "", "not a job or asset of the code location: nope"),
        ("claim_scores", "", "is partitioned: set MATERIALIZE_PARTITIONS"),
        ("claim_scores", "b7", "unknown partition(s) b7"),
        ("model_metrics", "b0", "is not partitioned"),
        ("raw_claims model_metrics", "b0", "mixes partitioned and unpartitioned"),
    ],
)
def test_unusable_selections_are_refused_before_launching(
    location: Any, selection: str, partitions: str, message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        plan_selection(selection, partitions, *location)


class NeverEndingRun:
    """A deployment whose run stays STARTED until it is terminated (for the timeout path)."""

    base_url, location = "http://dagster.test", "loc"

    def __init__(self) -> None:
        self.statuses = ["QUEUED", "STARTING", "STARTED"]
        self.terminated: list[str] = []

    def plan(self, selection: str, partitions: str) -> Any:
        return Plan(job=selection)

    def launch(self, plan: Any, partition: str | None, run_config: dict[str, Any]) -> str:
        return "run-1"

    def status(self, run_id: str) -> str:
        return "CANCELED" if self.terminated else self.statuses[-1]

    def terminate(self, run_id: str) -> str:
        self.terminated.append(run_id)
        return self.status(run_id)

    def run_url(self, run_id: str) -> str:
        return f"{self.base_url}/runs/{run_id}"


def test_a_run_that_outlives_the_timeout_is_terminated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployment = NeverEndingRun()
    args = build_parser().parse_args(
        ["--selection", "report_metrics", "--timeout", "0.3", "--poll", "0.1"]
    )
    assert materialize_remote(args, deployment) == EXIT_TIMEOUT
    assert deployment.terminated == ["run-1"]
    out = capsys.readouterr().out
    assert "http://dagster.test/runs/run-1" in out and "did not finish within 0.3 s" in out
    assert "canceled" in out


class Unreachable(NeverEndingRun):
    """The webserver stops answering after the launch."""

    def status(self, run_id: str) -> str:
        raise ConnectionError("connection refused")


def test_losing_the_deployment_while_following_fails_the_build(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["--selection", "x", "--poll", "0.01"])
    assert materialize_remote(args, Unreachable()) == EXIT_FAILED
    out = capsys.readouterr().out
    assert out.count("WARNING: status of run run-1 unknown") == 5
    assert "lost contact with Dagster; run run-1 may still be running" in out


# --- against a real dagster dev ---------------------------------------------------------------


@dataclass
class Deployment:
    """A ``dagster dev`` over a private lakehouse, and the run config the scripts use."""

    server: DagsterDev
    lakehouse: Path
    run_config: Path

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, run_id: str) -> dict[str, Any]:
        query = """query($id: ID!) { runOrError(runId: $id) { ... on Run {
            status jobName tags { key value } } } }"""
        run: dict[str, Any] = self.server.graphql(query, {"id": run_id})["runOrError"]
        return run


@pytest.fixture(scope="module")
def dagster_dev(
    tmp_path_factory: pytest.TempPathFactory, champion_lakehouse: Path
) -> Iterator[Deployment]:
    """A ``dagster dev`` over a private copy of the champion lakehouse; batches b0..b2 and b9
    (not in the lakehouse) are known partitions."""
    tmp = tmp_path_factory.mktemp("dagster_dev")
    lakehouse = tmp / "lakehouse"
    shutil.copytree(champion_lakehouse, lakehouse)
    (tmp / "run_config.yaml").write_text(IN_PROCESS_EXECUTOR)
    env = {
        "LAKEHOUSE_URI": str(lakehouse),
        "DUCKDB_PATH": str(tmp / "warehouse.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp),
    }
    with servers.dagster_dev(tmp / "dagster_home", env, INSTANCE_YAML) as server:
        selector = {
            "repositoryLocationName": "fraud_assets.definitions",
            "repositoryName": "__repository__",
        }
        for batch in ("b0", "b1", "b2", "b9"):
            added = server.graphql(
                """mutation($s: RepositorySelector!, $k: String!) {
                    addDynamicPartition(repositorySelector: $s,
                        partitionsDefName: "landing_batches", partitionKey: $k) { __typename } }""",
                {"s": selector, "k": batch},
            )
            assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess"
        yield Deployment(server, lakehouse, tmp / "run_config.yaml")


def remote_env(deployment: Deployment, **settings: str) -> dict[str, str]:
    return {
        "DAGSTER_URL": deployment.url,
        "MATERIALIZE_RUN_CONFIG": str(deployment.run_config),
        "MATERIALIZE_PARTITIONS": "",
        **settings,
    }


def start_script(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``scripts/NAME.py`` started in the background (output captured)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py")],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.integration
def test_runs_are_followed_to_success_or_failure(dagster_dev: Deployment) -> None:
    """Two builds at once on one deployment: a job over a partition that succeeds, and an asset
    selection whose run fails (batch b9 is known to Dagster but not in the lakehouse)."""
    succeeding = start_script(
        "materialize",
        remote_env(
            dagster_dev,
            MATERIALIZE_SELECTION="score_batch",
            MATERIALIZE_PARTITIONS="b0",
            BUILD_URL="https://jenkins.example/job/fraud/7/",
        ),
    )
    failing = start_script(
        "materialize",
        remote_env(dagster_dev, MATERIALIZE_SELECTION="claim_scores", MATERIALIZE_PARTITIONS="b9"),
    )
    out, err = succeeding.communicate(timeout=180)
    assert succeeding.returncode == 0, out + err
    url, run_id = RUN_URL.search(out).groups()  # type: ignore[union-attr]
    assert url.startswith(dagster_dev.url) and "success" in out
    run = dagster_dev.run(run_id)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (run["status"], run["jobName"]) == ("SUCCESS", "score_batch")
    assert tags["dagster/partition"] == "b0"
    assert tags["jenkins/build_url"] == "https://jenkins.example/job/fraud/7/"
    scores = Lakehouse(str(dagster_dev.lakehouse)).read_batch(SCORES, "b0")
    assert set(scores["model_version"]) == {"fm-test-1"}

    out, err = failing.communicate(timeout=180)
    assert failing.returncode == 1, out + err
    _url, run_id = RUN_URL.search(out).groups()  # type: ignore[union-attr]
    assert "ended FAILURE" in out
    assert "batch 'b9' of features/claims is not in the lakehouse" in out  # from the run's logs
    run = dagster_dev.run(run_id)
    assert (run["status"], run["jobName"]) == ("FAILURE", "__ASSET_JOB")


@pytest.mark.integration
def test_unknown_selection_or_unreachable_dagster_exit_2(
    dagster_dev: Deployment, run_script: Any
) -> None:
    result = run_script("materialize", env=remote_env(dagster_dev, MATERIALIZE_SELECTION="nope"))
    assert result.returncode == 2 and "not a job or asset" in result.stderr
    result = run_script(
        "materialize",
        env={
            "DAGSTER_URL": f"http://127.0.0.1:{servers.free_port()}",
            "MATERIALIZE_SELECTION": "report_metrics",
        },
    )
    assert result.returncode == 2 and "did not answer" in result.stderr


class RecordingProxy(ThreadingHTTPServer):
    """An HTTP proxy on loopback in front of ``upstream`` that records each request's headers
    (a Dagster+ deployment would check the token; dagster dev ignores it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: list[dict[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy.seen.append({k.lower(): v for k, v in self.headers.items()})
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = httpx.post(
                    f"{proxy.upstream}{self.path}",
                    content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                    timeout=60,
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.mark.integration
def test_the_api_token_is_sent_on_every_request_and_never_printed(
    dagster_dev: Deployment,
) -> None:
    """DAGSTER_API_TOKEN reaches the deployment as Dagster-Cloud-Api-Token, on the raw
    GraphQL requests and on dagster-graphql's client (run status) alike."""
    token = "dagster-plus-token-" + "x" * 24
    proxy = RecordingProxy(dagster_dev.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        script = start_script(
            "materialize",
            {
                **remote_env(dagster_dev, MATERIALIZE_SELECTION="score_batch"),
                "DAGSTER_URL": proxy.url,
                "MATERIALIZE_PARTITIONS": "b1",
                "DAGSTER_API_TOKEN": token,
            },
        )
        out, err = script.communicate(timeout=180)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert script.returncode == 0, out + err
    assert token not in out + err
    agents = {headers.get("user-agent", "").split("/")[0] for headers in proxy.seen}
    assert len(proxy.seen) >= 4 and len(agents) == 2, agents  # httpx and requests (the client)
    assert all(h.get("dagster-cloud-api-token") == token for h in proxy.seen), proxy.seen


# --- in-process -------------------------------------------------------------------------------


def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lakehouse: Path) -> Path:
    """No DAGSTER_URL; this test's instance, lakehouse and warehouse. Returns DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    for name, value in {
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_URI": str(lakehouse),
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_URL", raising=False)
    return home


@pytest.mark.integration
def test_in_process_ingests_through_the_landing_sensor(
    tmp_path: Path,
    champion_lakehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without DAGSTER_URL: the Orchestrator's instance and Definitions, in this process."""
    from fraud_core.simulate import SimulationConfig, simulate_claims, write_landing_files

    lakehouse = tmp_path / "lakehouse"
    shutil.copytree(champion_lakehouse, lakehouse)
    claims = simulate_claims(SimulationConfig(n_claims=400, seed=5, id_prefix="NEW"))
    (landed,) = write_landing_files([claims.drop(columns="scenario")], str(lakehouse / "landing"))
    home = in_process(monkeypatch, tmp_path, lakehouse)
    # Nothing scored yet: model_metrics fails, and the script says why (exit 1, no traceback).
    assert materialize_main(["--selection", "report_metrics", "--partitions", ""]) == 1
    out = capsys.readouterr().out
    assert "FAILURE" in out and "no scored batches in the lakehouse" in out
    # No partitions: the landing sensor decides what to ingest (one run per new file).
    assert materialize_main(["--selection", "ingest_batch", "--partitions", ""]) == 0
    assert "ingested 1 new landing file(s)" in capsys.readouterr().out
    assert (home / "dagster.yaml").exists()
    scores = Lakehouse(str(lakehouse)).read_batch(SCORES, Path(landed).stem)
    assert len(scores) > 0 and set(scores["model_version"]) == {"fm-test-1"}


@pytest.mark.integration
def test_no_train_on_a_fresh_lakehouse_ingests_and_says_nothing_is_scored_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fraud materialize --no-train` before any champion: the files are ingested, nothing is
    scored, and the command says so and exits 0 (no traceback, no failed report)."""
    from fraud_cli.main import main as fraud_main
    from fraud_core.layout import RAW
    from fraud_core.simulate import SimulationConfig, simulate_claims, write_landing_files

    lakehouse = tmp_path / "lakehouse"
    claims = simulate_claims(SimulationConfig(n_claims=300, seed=8))
    (landed,) = write_landing_files([claims.drop(columns="scenario")], str(lakehouse / "landing"))
    in_process(monkeypatch, tmp_path, lakehouse)
    assert fraud_main(["materialize", "--no-train"]) == 0
    out, err = capsys.readouterr()
    assert "ingested 1 new landing file(s)" in out
    assert "nothing scored yet: there is no champion model" in out
    assert "Traceback" not in out + err
    lake = Lakehouse(str(lakehouse))
    assert len(lake.read_batch(RAW, Path(landed).stem)) == 300
    assert lake.batches(SCORES) == []


@pytest.mark.integration
def test_a_rejected_file_never_holds_back_the_others(
    tmp_path: Path,
    champion_lakehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One file the contract rejects among good ones: the good ones are ingested in the same
    call, the command exits 1 naming the rejected batch and why; the next call, or one with
    the cursor lost, ingests nothing again (Dagster's run keys)."""
    import dagster as dg

    from fraud_cli.orchestrate import CURSOR_FILE
    from fraud_core.landing import rejections
    from fraud_core.simulate import SimulationConfig, simulate_claims, write_landing_files

    lakehouse = tmp_path / "lakehouse"
    shutil.copytree(champion_lakehouse, lakehouse)
    claims = simulate_claims(SimulationConfig(n_claims=900, seed=6, id_prefix="NEW"))
    parts = [claims.iloc[i * 300 : (i + 1) * 300].drop(columns="scenario") for i in range(3)]
    landed = write_landing_files(parts, str(lakehouse / "landing"), "csv")
    bad = Path(landed[1])  # the middle one: required columns missing
    bad.write_text(bad.read_text().replace("claimed_amount", "amount_claimed"))
    home = in_process(monkeypatch, tmp_path, lakehouse)

    assert materialize_main(["--selection", "ingest_batch", "--partitions", ""]) == 1
    out, err = capsys.readouterr()
    assert "ingested 2 new landing file(s)" in out
    assert "1 landing file(s) failed to ingest" in err
    (line,) = [x for x in err.splitlines() if x.startswith("  - ")]
    assert line.startswith(f"  - {bad.stem} ({bad.name}, run ")
    assert "claimed_amount" in line, line  # the contract's reason
    lake = Lakehouse(str(lakehouse))
    for path in (landed[0], landed[2]):
        assert len(lake.read_batch(SCORES, Path(path).stem)) == 300
    (rejection,) = rejections(lake, bad.stem)
    assert "claimed_amount" in rejection["reason"]
    instance = dg.DagsterInstance.get()
    failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert [r.tags["landing/file"] for r in failed] == [bad.name]  # recorded, with its file

    for lose_cursor in (False, True):
        if lose_cursor:
            (home / CURSOR_FILE).unlink()
        assert materialize_main(["--selection", "ingest_batch", "--partitions", ""]) == 0
        assert "ingested 0 new landing file(s)" in capsys.readouterr().out
    assert len(instance.get_runs()) == 3
