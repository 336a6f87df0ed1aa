"""Runs launched on a Dagster deployment through its GraphQL API and followed to their end.

dagster-graphql's ``DagsterGraphQLClient`` reads a run's status and terminates runs. Three
requests are raw GraphQL, each because the client lacks it (said at each query).
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import urlsplit

import httpx

from fraud_cli.materialize import EXIT_FAILED, EXIT_TIMEOUT, UsageError
from fraud_cli.materialize.plan import (
    ASSET_JOB,
    AssetInfo,
    Plan,
    load_run_config,
    plan_selection,
    run_tags,
    split_tokens,
)
from fraud_core.polling import poll_until

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

# Raw: the client lists jobs by name only, not assets with their partitions and jobs.
REPOSITORIES_QUERY = """
{ repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name }
        jobs { name }
        assetNodes { assetKey { path } isPartitioned partitionKeys jobNames } } }
    ... on PythonError { message } } }
"""

# Raw: dagster-graphql 1.13's submit_job_execution raises KeyError on refusals it does not
# query a message for (InvalidSubsetError, ...); this mutation returns every refusal's message.
LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message } } }
"""

# Raw: the client reads no run events.
FAILURES_QUERY = """
query Failures($runId: ID!) { logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename
        ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
        ... on RunFailureEvent { message }
        ... on AssetCheckEvaluationEvent { message } } } } }
"""


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
        """Run a raw GraphQL query; raises UsageError when the deployment cannot answer it."""
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
        """Submit one run; returns its id (every refusal raises UsageError with its message)."""
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
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in run_tags(partition).items()]
            },
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

        refusal: DagsterGraphQLClientError | None = None

        def terminated() -> str | None:
            nonlocal refusal
            try:
                self.client.terminate_run(run_id)
                return self.status(run_id)
            except DagsterGraphQLClientError as exc:
                status = self.status(run_id)
                if status in TERMINAL:
                    return status
                if status != "STARTING":
                    raise
                refusal = exc
                return None

        try:
            return poll_until(terminated, what=f"run {run_id}", timeout=grace, interval=1.0)
        except TimeoutError as timeout:
            raise (refusal or timeout) from None  # the last refusal of a STARTING run

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


def follow(
    dagster: RemoteDagster, run_id: str, timeout: float, poll: float, max_errors: int = 5
) -> str:
    """Poll a run until it ends (its status), ``timeout`` passes (``TIMEOUT``) or the
    deployment stops answering (``LOST``); prints each status change.

    A few failed status requests in a row are tolerated (a webserver restart, a network blip);
    more, and the run is reported as ``LOST`` (it may still be running).
    """
    last, errors = "", 0

    def ended() -> str | None:
        nonlocal last, errors
        try:
            status = dagster.status(run_id)
            errors = 0
        except Exception as exc:  # counted and reported; the run itself is not affected
            errors += 1
            print(f"  WARNING: status of run {run_id} unknown ({type(exc).__name__}: {exc})")
            return "LOST" if errors >= max_errors else None
        if status != last:
            print(f"  {status.lower()}", flush=True)
            last = status
        return status if status in TERMINAL else None

    try:
        return poll_until(ended, what=f"run {run_id}", timeout=timeout, interval=poll)
    except TimeoutError:
        return "TIMEOUT"


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
