"""Materialize a selection of the asset graph: on a Dagster deployment, or in this process.

With ``DAGSTER_URL`` set, the selection is launched on that deployment through its GraphQL API
(dagster-graphql's client), each run is followed to its end, and its URL is printed. Without
it, the selection runs in this process against the Dagster instance of ``DAGSTER_HOME``, through
:class:`fraud_cli.orchestrate.Orchestrator` (the same Definitions, sensor and jobs).

Settings (each has a flag of the same meaning; the flag wins):

==========================  ======================================================================
``DAGSTER_URL``             ``http://host:3000`` (a path prefix is kept); unset: in-process
``DAGSTER_API_TOKEN``       optional token, sent as ``Dagster-Cloud-Api-Token`` (Dagster+)
``MATERIALIZE_SELECTION``   a job name (``report_metrics``), or asset keys separated by commas or
                            spaces (``a/b`` for a key with several parts). Empty: in-process, the
                            whole cycle of ``fraud materialize``; with ``DAGSTER_URL``, an error.
``MATERIALIZE_PARTITIONS``  partition keys (comma separated) or ``all``; one run per partition.
                            Required when the selection holds partitioned assets (the in-process
                            ``ingest_batch`` job alone evaluates the landing sensor instead).
``MATERIALIZE_RUN_CONFIG``  a YAML or JSON run-config file, e.g. to pick the in-process executor
``MATERIALIZE_TIMEOUT``     seconds to wait for each run (default 3600)
==========================  ======================================================================

Exit codes: 0 every run succeeded; 1 a run failed or was canceled; 2 the selection, settings or
deployment are not usable (nothing was launched); 3 a run did not finish in time (it is
terminated).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

ASSET_JOB = "__ASSET_JOB"
PARTITION_TAG = "dagster/partition"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3

REPOSITORIES_QUERY = """
{ repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name }
        jobs { name }
        assetNodes { assetKey { path } isPartitioned partitionKeys jobNames } } }
    ... on PythonError { message } } }
"""

LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message } } }
"""

FAILURES_QUERY = """
query Failures($runId: ID!) { logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename
        ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
        ... on RunFailureEvent { message }
        ... on AssetCheckEvaluationEvent { message } } } } }
"""


class UsageError(Exception):
    """The selection or a setting cannot be used; nothing was launched."""


@dataclass(frozen=True)
class AssetInfo:
    """What the planner needs to know about one asset of the code location."""

    partitioned: bool
    partitions: Sequence[str] = ()
    """Known partition keys (for a partitioned asset)."""
    jobs: Sequence[str] = ()
    """Jobs that materialize the asset."""


@dataclass
class Plan:
    """What to launch: a job, or asset keys in the implicit asset job; per partition or once."""

    job: str
    asset_keys: list[list[str]] | None = None
    partitioned: bool = False
    partitions: list[str | None] = field(default_factory=lambda: [None])

    def describe(self) -> str:
        if self.asset_keys is None:
            return f"job {self.job}"
        return ", ".join("/".join(k) for k in self.asset_keys)


def split_tokens(text: str) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]``."""
    return [t for t in text.replace(",", " ").split() if t]


def plan_selection(
    selection: str,
    partitions: str,
    jobs: Sequence[str],
    assets: Mapping[str, AssetInfo],
) -> Plan:
    """Resolve a selection against a code location.

    Args:
        selection: a job name, or asset keys (``a/b`` for multi-part keys).
        partitions: comma-separated partition keys, ``all`` or empty.
        jobs: job names of the code location (the implicit asset job excluded).
        assets: every asset of the code location, by ``/``-joined key.

    Raises:
        UsageError: unknown job or asset, mixed partitioned and unpartitioned assets, missing or
            unknown partitions.
    """
    tokens = split_tokens(selection)
    if not tokens:
        raise UsageError("MATERIALIZE_SELECTION is empty: name a job or asset keys")
    if len(tokens) == 1 and tokens[0] in jobs:
        plan = Plan(job=tokens[0])
        selected = [key for key, info in assets.items() if tokens[0] in info.jobs]
    else:
        unknown = [t for t in tokens if t not in assets]
        if unknown:
            raise UsageError(
                f"not a job or asset of the code location: {', '.join(unknown)}. "
                f"Jobs: {', '.join(sorted(jobs))}; assets: {', '.join(sorted(assets))}"
            )
        plan = Plan(job=ASSET_JOB, asset_keys=[t.split("/") for t in tokens])
        selected = tokens
    flags = {assets[k].partitioned for k in selected}
    if len(flags) > 1:
        raise UsageError(
            f"{plan.describe()} mixes partitioned and unpartitioned assets: "
            "materialize them in separate runs"
        )
    plan.partitioned = flags == {True}
    wanted = split_tokens(partitions)
    if not plan.partitioned:
        if wanted:
            raise UsageError(f"{plan.describe()} is not partitioned: unset MATERIALIZE_PARTITIONS")
        return plan
    known = list(assets[selected[0]].partitions)
    if not wanted:
        raise UsageError(
            f"{plan.describe()} is partitioned: set MATERIALIZE_PARTITIONS to partition keys "
            f"or 'all' (known: {_preview(known)})"
        )
    if wanted == ["all"]:
        if not known:
            raise UsageError(f"{plan.describe()} has no partitions yet: ingest a batch first")
        wanted = known
    missing = [p for p in wanted if p not in known]
    if missing:
        raise UsageError(f"unknown partition(s) {', '.join(missing)} (known: {_preview(known)})")
    plan.partitions = list(wanted)
    return plan


def _preview(keys: Sequence[str], n: int = 10) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[-n:])
    return shown if len(keys) <= n else f"... {shown} ({len(keys)} in all)"


def load_run_config(path: str) -> dict[str, Any]:
    """A run config from a YAML or JSON file (empty path: no run config)."""
    if not path:
        return {}
    try:
        with open(path) as fh:
            config = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise UsageError(f"cannot read MATERIALIZE_RUN_CONFIG {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise UsageError(f"run config {path} is not a mapping")
    return config


# --- on a Dagster deployment ----------------------------------------------------------------


class RemoteDagster:
    """A Dagster webserver reached at ``url`` (GraphQL)."""

    def __init__(self, url: str, token: str = "", request_timeout: float = 60.0) -> None:
        from dagster_graphql import DagsterGraphQLClient

        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"DAGSTER_URL must look like http://host:port, got {url!r}")
        self.base_url = url.rstrip("/")
        self.headers = {"Dagster-Cloud-Api-Token": token} if token else {}
        self.client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            timeout=int(request_timeout),
            headers=self.headers or None,
            path_prefix=parts.path,
        )
        self.http = httpx.Client(headers=self.headers, timeout=request_timeout)
        self.location = ""
        self.repository = ""

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a GraphQL query; raises UsageError when the deployment cannot answer it."""
        try:
            response = self.http.post(
                f"{self.base_url}/graphql", json={"query": query, "variables": variables or {}}
            )
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UsageError(f"Dagster at {self.base_url} did not answer: {exc}") from exc
        if body.get("errors"):
            raise UsageError(f"Dagster GraphQL error: {body['errors'][0].get('message')}")
        data: dict[str, Any] = body["data"]
        return data

    def plan(self, selection: str, partitions: str) -> Plan:
        """Resolve the selection against the deployment's code locations."""
        result = self.query(REPOSITORIES_QUERY)["repositoriesOrError"]
        if result["__typename"] != "RepositoryConnection":
            raise UsageError(f"Dagster cannot list its code locations: {result.get('message')}")
        tokens = split_tokens(selection)
        candidates = []
        for repo in result["nodes"]:
            jobs = [j["name"] for j in repo["jobs"] if j["name"] != ASSET_JOB]
            assets = {"/".join(n["assetKey"]["path"]): n for n in repo["assetNodes"]}
            if (len(tokens) == 1 and tokens[0] in jobs) or (
                tokens and all(t in assets for t in tokens)
            ):
                candidates.append((repo, jobs, assets))
        if len(candidates) > 1:
            names = ", ".join(f"{r['name']}@{r['location']['name']}" for r, _j, _a in candidates)
            raise UsageError(f"{selection!r} is ambiguous: it is in {names}")
        if not candidates:
            repo = result["nodes"][0] if result["nodes"] else None
            if repo is None:
                raise UsageError(f"Dagster at {self.base_url} has no code location loaded")
            jobs = [j["name"] for j in repo["jobs"] if j["name"] != ASSET_JOB]
            assets = {"/".join(n["assetKey"]["path"]): n for n in repo["assetNodes"]}
            candidates.append((repo, jobs, assets))
        repo, jobs, nodes = candidates[0]
        self.location, self.repository = repo["location"]["name"], repo["name"]
        assets = {
            key: AssetInfo(bool(n["isPartitioned"]), n["partitionKeys"] or [], n["jobNames"])
            for key, n in nodes.items()
        }
        return plan_selection(selection, partitions, jobs, assets)

    def launch(self, plan: Plan, partition: str | None, run_config: dict[str, Any]) -> str:
        """Submit one run; returns its id.

        Raw ``launchRun`` rather than the client's ``submit_job_execution``: every refusal
        (``InvalidSubsetError``, ``RunConfigValidationInvalid``, ...) then comes back with its
        message (dagster-graphql 1.13's client raises KeyError on some of them).
        """
        tags = {**_context_tags(), **({PARTITION_TAG: partition} if partition else {})}
        selector: dict[str, Any] = {
            "repositoryLocationName": self.location,
            "repositoryName": self.repository,
            "jobName": plan.job,
        }
        if plan.asset_keys:
            selector["assetSelection"] = [{"path": key} for key in plan.asset_keys]
        params = {
            "selector": selector,
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.query(LAUNCH_MUTATION, {"params": params})["launchRun"]
        if result["__typename"] == "LaunchRunSuccess":
            return str(result["run"]["runId"])
        details = "; ".join(e["message"] for e in result.get("errors") or [])
        raise UsageError(
            f"Dagster refused the run ({result['__typename']}): "
            f"{details or result.get('message', '')}".strip()
        )

    def status(self, run_id: str) -> str:
        return str(self.client.get_run_status(run_id).value)

    def terminate(self, run_id: str, grace: float = 60.0) -> str:
        """Terminate a run; a run that is still STARTING is retried until ``grace`` passes.

        Returns the run's status afterwards. Raises DagsterGraphQLClientError when Dagster
        keeps refusing.
        """
        from dagster_graphql import DagsterGraphQLClientError

        deadline = time.monotonic() + grace
        while True:
            try:
                self.client.terminate_run(run_id)
                return self.status(run_id)
            except DagsterGraphQLClientError as exc:
                status = self.status(run_id)
                if status in TERMINAL:
                    return status
                if status != "STARTING" or time.monotonic() >= deadline:
                    raise exc
                time.sleep(1.0)

    def failures(self, run_id: str) -> list[str]:
        """The failure messages of a run (step errors with their cause, the run's verdict)."""
        logs = self.query(FAILURES_QUERY, {"runId": run_id})["logsForRun"]
        lines = []
        for event in logs.get("events", []):
            kind = event["__typename"]
            if kind == "ExecutionStepFailureEvent":
                error = event.get("error") or {}
                cause = (error.get("cause") or {}).get("message", "")
                text = " ".join(filter(None, [error.get("message", "").strip(), cause.strip()]))
                lines.append(f"step {event['stepKey']}: {text}")
            elif kind == "RunFailureEvent" or (
                kind == "AssetCheckEvaluationEvent" and "failed" in event.get("message", "")
            ):
                lines.append(event["message"])
        return lines

    def run_url(self, run_id: str) -> str:
        return f"{self.base_url}/runs/{run_id}"


def _context_tags() -> dict[str, str]:
    """Tags that tell who launched a run (Jenkins' build when there is one)."""
    tags = {"launched_by": "scripts/materialize.py"}
    for env, tag in (("BUILD_URL", "jenkins/build_url"), ("BUILD_TAG", "jenkins/build_tag")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def follow(
    dagster: RemoteDagster, run_id: str, timeout: float, poll: float, max_errors: int = 5
) -> str:
    """Poll a run until it ends or ``timeout`` passes; prints each status change.

    A few failed status requests in a row are tolerated (a webserver restart, a network blip);
    more, and the run is reported as ``LOST`` (it may still be running).
    """
    deadline = time.monotonic() + timeout
    last, errors = "", 0
    while True:
        try:
            status = dagster.status(run_id)
            errors = 0
        except Exception as exc:  # counted and reported; the run itself is not affected
            errors += 1
            print(f"  WARNING: status of run {run_id} unknown ({type(exc).__name__}: {exc})")
            if errors >= max_errors:
                return "LOST"
            time.sleep(poll)
            continue
        if status != last:
            print(f"  {status.lower()}", flush=True)
            last = status
        if status in TERMINAL:
            return status
        if time.monotonic() >= deadline:
            return "TIMEOUT"
        time.sleep(poll)


def materialize_remote(args: argparse.Namespace, dagster: RemoteDagster | None = None) -> int:
    """Launch and follow every run of the plan on ``args.dagster_url`` (or ``dagster``)."""
    if dagster is None:
        dagster = RemoteDagster(args.dagster_url, token=os.environ.get("DAGSTER_API_TOKEN", ""))
    plan = dagster.plan(args.selection, args.partitions)
    run_config = load_run_config(args.run_config)
    print(f"materializing {plan.describe()} on {dagster.base_url} ({dagster.location})")
    for partition in plan.partitions:
        run_id = dagster.launch(plan, partition, run_config)
        label = f" partition {partition}" if partition else ""
        print(f"run {run_id}{label}: {dagster.run_url(run_id)}", flush=True)
        status = follow(dagster, run_id, args.timeout, args.poll)
        if status == "TIMEOUT":
            print(f"ERROR: run {run_id} did not finish within {args.timeout:g} s: terminating it")
            try:
                print(f"  {dagster.terminate(run_id).lower()}")
            except Exception as exc:  # report, the exit code already says it failed
                print(f"WARNING: could not terminate run {run_id}: {exc}")
            return EXIT_TIMEOUT
        if status == "LOST":
            print(f"ERROR: lost contact with Dagster; run {run_id} may still be running")
            return EXIT_FAILED
        if status != "SUCCESS":
            print(f"ERROR: run {run_id} ended {status}: {dagster.run_url(run_id)}")
            for line in dagster.failures(run_id):
                print(f"  {line}")
            return EXIT_FAILED
    print(f"materialized {plan.describe()}: {len(plan.partitions)} run(s) succeeded")
    return 0


# --- in this process ----------------------------------------------------------------------


def materialize_in_process(args: argparse.Namespace) -> int:
    """Run the selection here, recorded in the instance of ``DAGSTER_HOME``."""
    if not split_tokens(args.selection):
        from fraud_cli.main import main as fraud_main

        print("no MATERIALIZE_SELECTION: running the whole cycle (fraud materialize)")
        return fraud_main(["materialize"])

    import dagster as dg

    from fraud_cli.orchestrate import QUIET, Orchestrator, ensure_dagster_home

    env = dict(os.environ)
    env["DAGSTER_HOME"] = ensure_dagster_home(
        env.get("DAGSTER_HOME") or os.path.abspath(".dagster_home")
    )
    orchestrator = Orchestrator(env, on_step=lambda label: print(f"- {label}", flush=True))
    defs = orchestrator.defs
    tokens = split_tokens(args.selection)
    if tokens == ["ingest_batch"] and not split_tokens(args.partitions):
        ingestion = orchestrator.ingest_new_files()
        print(f"ingested {len(ingestion.ingested)} new landing file(s)")
        if ingestion.failed:
            print(ingestion.failure_report(), file=sys.stderr)
            return 1
        return 0
    batches = orchestrator.batches()
    job_defs = [j for j in defs.resolve_all_job_defs() if j.name != ASSET_JOB]
    graph = defs.resolve_asset_graph()
    assets = {
        key.to_user_string(): AssetInfo(
            partitioned=graph.get(key).partitions_def is not None,
            partitions=batches,
            jobs=[j.name for j in job_defs if key in j.asset_layer.executable_asset_keys],
        )
        for key in defs.resolve_all_asset_keys()
    }
    plan = plan_selection(args.selection, args.partitions, [j.name for j in job_defs], assets)
    run_config = {**QUIET, **load_run_config(args.run_config)}
    job = defs.resolve_job_def(plan.job)
    selection = [dg.AssetKey(k) for k in plan.asset_keys] if plan.asset_keys else None
    print(f"materializing {plan.describe()} in-process (DAGSTER_HOME={env['DAGSTER_HOME']})")
    for partition in plan.partitions:
        result = job.execute_in_process(
            instance=orchestrator.instance,
            partition_key=partition,
            asset_selection=selection,
            run_config=run_config,
            tags=_context_tags(),
            raise_on_error=False,
        )
        label = f" partition {partition}" if partition else ""
        print(f"run {result.run_id}{label}: {'success' if result.success else 'FAILURE'}")
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data:
                    print(f"  step {event.step_key}: {_error_chain(event.step_failure_data.error)}")
            print("ERROR: the run failed; `make ui` shows its logs")
            return EXIT_FAILED
    print(f"materialized {plan.describe()}: {len(plan.partitions)} run(s) succeeded")
    return 0


def _error_chain(error: Any) -> str:
    """An error's message and its causes' messages on one line, without stack traces."""
    messages = []
    while error is not None:
        messages.append(str(error.message).strip())
        error = error.cause
    return " <- ".join(messages)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Materialize a selection of the asset graph (on DAGSTER_URL or in-process)."
    )
    parser.add_argument("--dagster-url", default=env("DAGSTER_URL", ""))
    parser.add_argument("--selection", default=env("MATERIALIZE_SELECTION", ""))
    parser.add_argument("--partitions", default=env("MATERIALIZE_PARTITIONS", ""))
    parser.add_argument("--run-config", default=env("MATERIALIZE_RUN_CONFIG", ""))
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(env("MATERIALIZE_TIMEOUT", "3600")),
        help="seconds to wait for each run",
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dagster_url:
            return materialize_remote(args)
        return materialize_in_process(args)
    except UsageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
