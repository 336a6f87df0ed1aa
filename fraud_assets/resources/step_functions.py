"""Following a FraudTrainingFlow execution on AWS Step Functions, for the Training resource.

Metaflow's deployer starts an execution and names its run (``sfn-<execution name>``); what it
does not give is the execution's own state, its error when a step fails, or a way to stop it
from the orchestrator. This module asks Step Functions directly (boto3, credentials and region
from the environment), and brings the run's metadata back when Metaflow keeps it locally.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fraud_core.polling import poll_until

RUNNING = "RUNNING"


def _entered(event: dict[str, Any]) -> bool:
    return "stateEnteredEventDetails" in event


def sfn_client() -> Any:
    """A Step Functions client from the standard AWS settings (``AWS_ENDPOINT_URL`` honoured)."""
    import boto3

    return boto3.client("stepfunctions")


def state_machine_arn(client: Any, name: str) -> str:
    """The ARN of the state machine called ``name``.

    Raises:
        LookupError: there is none (deploy it first: ``make deploy-training``).
    """
    for page in client.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
    raise LookupError(
        f"no Step Functions state machine named {name!r} in this account and region: "
        "deploy it with `make deploy-training` (FRAUD_STATE_MACHINE names it)"
    )


@dataclass
class StepFunctionsExecution:
    """One execution of the training state machine."""

    arn: str
    client: Any = field(repr=False)
    _seen_events: int = field(default=0, repr=False)

    @classmethod
    def of_run(cls, client: Any, state_machine: str, run_id: str) -> StepFunctionsExecution:
        """The execution behind Metaflow run ``sfn-<name>`` of ``state_machine``."""
        machine = state_machine_arn(client, state_machine)
        name = run_id.removeprefix("sfn-")
        return cls(machine.replace(":stateMachine:", ":execution:") + f":{name}", client)

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def console_url(self) -> str:
        """The execution's page in the AWS console."""
        return (
            f"https://{self.region}.console.aws.amazon.com/states/home?region={self.region}"
            f"#/v2/executions/details/{self.arn}"
        )

    def describe(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.describe_execution(executionArn=self.arn)
        return answer

    def _history(self) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("get_execution_history").paginate(
            executionArn=self.arn, includeExecutionData=False
        )
        for page in pages:
            yield from page["events"]

    def new_states(self) -> list[str]:
        """Names of the states entered since the last call (a step, or the foreach's Map)."""
        events = list(self._history())
        fresh, self._seen_events = events[self._seen_events :], len(events)
        return [e["stateEnteredEventDetails"]["name"] for e in fresh if _entered(e)]

    def wait(
        self,
        timeout: float,
        poll: float,
        on_state: Callable[[str], None] = lambda name: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Poll until the execution ends; return its last description.

        Raises:
            TimeoutError: still running after ``timeout`` seconds (it is left running: the
                caller decides whether to stop it).
        """

        def ended() -> dict[str, Any] | None:
            described = self.describe()
            for name in self.new_states():
                on_state(name)
            return described if described["status"] != RUNNING else None

        try:
            return poll_until(
                ended, what=self.arn, timeout=timeout, interval=poll, sleep=sleep, clock=clock
            )
        except TimeoutError:
            raise TimeoutError(
                f"Step Functions execution {self.arn} still running after {timeout:.0f} s"
            ) from None

    def stop(self, cause: str) -> None:
        """Stop the execution (Step Functions then terminates its running Batch jobs)."""
        if self.describe()["status"] == RUNNING:
            self.client.stop_execution(
                executionArn=self.arn, error="Fraud.TrainingCancelled", cause=cause[:32_000]
            )

    def failed_step(self) -> str | None:
        """The name of the last state whose task failed (a Metaflow step), if any."""
        entered: str | None = None
        failed: str | None = None
        for event in self._history():
            if _entered(event):
                entered = event["stateEnteredEventDetails"]["name"]
            if event["type"] in ("TaskFailed", "TaskTimedOut") and entered:
                failed = entered
        return failed


def failure_summary(described: dict[str, Any], limit: int = 600) -> str:
    """``status: error: cause`` of an ended execution; a Batch job's JSON cause (Step
    Functions gives the job's description, in PascalCase) shortened to its name, status
    reason, exit code and attempts."""
    error = described.get("error") or ""
    cause = described.get("cause") or ""
    try:
        job = _lower_keys(json.loads(cause))
    except ValueError:
        job = None
    if isinstance(job, dict) and "jobId" in job:
        container = job.get("container") or {}
        cause = (
            f"Batch job {job.get('jobName', job['jobId'])} {job.get('status', '')}: "
            f"{job.get('statusReason', 'no reason given')}, exit code "
            f"{container.get('exitCode', 'unknown')}, {len(job.get('attempts') or [])} attempt(s)"
        )
    text = ": ".join(part for part in (described["status"], error, cause) if part)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lower_keys(value: Any) -> Any:
    """``{"JobName": ..}`` -> ``{"jobName": ..}``, recursively (boto's names)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def sync_local_metadata(flow_name: str, run_id: str, s3_root: str, local_root: str) -> int:
    """Bring a remote run's metadata back into the local metadata store under ``local_root``
    (``local_root/.metaflow``); returns the number of task attempts synced.

    With local metadata (no Metaflow metadata service), a task on AWS Batch saves its metadata
    as a tarball in the S3 datastore and nothing brings it back: Metaflow's Client cannot see
    the run. This does what Metaflow's own ``batch`` command does after a task
    (``sync_local_metadata_from_datastore``) for every task and attempt of the run, into an
    explicit folder rather than the one this process' Metaflow configuration found at import.
    """
    import tarfile
    import tempfile
    from io import BytesIO

    from metaflow import util
    from metaflow.datastore import FlowDataStore
    from metaflow.metadata_provider.util import copy_tree
    from metaflow.metaflow_config import DATASTORE_LOCAL_DIR
    from metaflow.plugins import DATASTORES

    (storage,) = [d for d in DATASTORES if d.TYPE == "s3"]
    datastore = FlowDataStore(flow_name, storage_impl=storage, ds_root=s3_root)
    synced = 0
    for task in datastore.get_task_datastores(run_id, allow_not_done=True, include_prior=True):
        key = task.load_metadata(["local_metadata"]).get("local_metadata")
        if not key:  # the attempt died before uploading its metadata
            continue
        _, blob = next(task.parent_datastore.load_data([key]))
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=BytesIO(blob)) as tar:
            util.tar_safe_extract(tar, tmp)
            copy_tree(
                os.path.join(tmp, DATASTORE_LOCAL_DIR),
                os.path.join(local_root, DATASTORE_LOCAL_DIR),
                update=True,
            )
        synced += 1
    return synced
