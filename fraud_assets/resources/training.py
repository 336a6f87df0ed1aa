"""Training as a resource: FraudTrainingFlow run by Metaflow, behind one interface, two modes.

``MetaflowTraining``       Metaflow's local runtime through ``metaflow.Runner`` (the default).
``StepFunctionsTraining``  the flow deployed as an AWS Step Functions state machine (every step
                           an AWS Batch job in the project's image): the asset triggers it,
                           follows the execution, stops it when the Dagster run is terminated,
                           and reads the finished run through the Client API. Jenkins deploys it
                           (``make deploy-training``).
"""

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

import metaflow_jobs
from fraud_assets.resources.step_functions import (
    StepFunctionsExecution,
    failure_summary,
    sfn_client,
    sync_local_metadata,
)

FLOW_FILE = os.path.join(os.path.dirname(metaflow_jobs.__file__), "fraud_training_flow.py")
FLOW_NAME = "FraudTrainingFlow"
# What Metaflow needs to deploy and run the flow on Step Functions + Batch. (Metaflow 2.19's
# `create` also asks for the EventBridge role, even for a flow without @schedule.) The image is
# part of the deployment: the project's image (Dockerfile), pushed to a registry Batch pulls from.
STEP_FUNCTIONS_SETTINGS = (
    "METAFLOW_DATASTORE_SYSROOT_S3",
    "METAFLOW_SFN_IAM_ROLE",
    "METAFLOW_ECS_S3_ACCESS_IAM_ROLE",
    "METAFLOW_BATCH_JOB_QUEUE",
    "METAFLOW_SFN_DYNAMO_DB_TABLE",
    "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE",
    "METAFLOW_BATCH_CONTAINER_IMAGE",
)
IMAGE_SETTING = "METAFLOW_BATCH_CONTAINER_IMAGE"
TRAINING_TIMEOUT_SECONDS = 6 * 3600
# Metaflow refuses to run without a user: the one runs are recorded under when USERNAME is unset.
PIPELINE_USER = "fraud-pipeline"
# The packages every remote task must get from the code package rather than from the image.
PACKAGED_MODULES = ("fraud_core", "metaflow_jobs")


@dataclass(frozen=True)
class TrainingRun:
    """What a finished training run produced (read from its Metaflow artifacts)."""

    pathspec: str
    model_version: str
    bundle_uri: str
    test_metrics: dict[str, Any]
    candidates: list[dict[str, Any]]
    split: dict[str, Any]
    pr_png: bytes
    card_path: str | None
    execution_arn: str = ""
    """The Step Functions execution that ran it (empty for a local run)."""
    console_url: str = ""

    @classmethod
    def from_run(cls, run: Any, card_path: str | None = None, **where: str) -> "TrainingRun":
        """From a successful ``metaflow.Run`` (Client API); ``where``: execution_arn and
        console_url of a Step Functions run."""
        data = run.data
        return cls(
            pathspec=run.pathspec,
            model_version=data.model_version,
            bundle_uri=data.bundle_uri,
            test_metrics=data.test_metrics,
            candidates=data.candidates,
            split=data.split_summary,
            pr_png=data.pr_png,
            card_path=card_path,
            **where,
        )


class Training(dg.ConfigurableResource):
    """Runs FraudTrainingFlow somewhere and returns what it produced."""

    def train(
        self,
        lakehouse_uri: str,
        batches: list[str],
        seed: int = 0,
        max_epochs: int = 0,
        resume_from: str = "",
        log: Callable[[str], None] = print,
        as_of: dict[str, int] | None = None,
    ) -> TrainingRun:
        raise NotImplementedError

    @staticmethod
    def flow_parameters(
        lakehouse_uri: str,
        batches: list[str],
        seed: int,
        max_epochs: int,
        as_of: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """The flow's parameters; ``as_of``: the Delta version of each table to read (empty:
        the flow reads, and records, the tables' current versions)."""
        return {
            "lakehouse_uri": lakehouse_uri,
            "batches": ",".join(batches),
            "seed": seed,
            "max_epochs": max_epochs,
            "as_of": json.dumps(as_of or {}, sort_keys=True),
        }


class MetaflowTraining(Training):
    """Metaflow's local runtime (``metaflow.Runner``); branches run as local processes.

    ``datastore_root`` is where Metaflow keeps runs and artifacts (``DIR/.metaflow``); the
    Client API and ``python fraud_training_flow.py resume`` need the same value in
    ``METAFLOW_DATASTORE_SYSROOT_LOCAL``.
    """

    datastore_root: str
    user: str = PIPELINE_USER
    config_file: str = ""
    """Training settings to use instead of metaflow_jobs/config/training.json (same schema)."""
    datastore: str = "local"
    """``local`` (under datastore_root) or ``s3`` (METAFLOW_DATASTORE_SYSROOT_S3: the Step
    Functions runs' datastore, so a failed Step Functions run can be resumed here)."""

    def settings(self) -> dict[str, Any]:
        """The validated training settings this resource runs the flow with."""
        from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings

        with open(self.config_file or DEFAULT_CONFIG) as fh:
            return parse_settings(fh.read())

    def env(self) -> dict[str, str]:
        return {
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": self.datastore_root,
            "METAFLOW_CARD_LOCALROOT": os.path.join(self.datastore_root, ".metaflow", "mf.cards"),
            "METAFLOW_DEFAULT_DATASTORE": self.datastore,
            "METAFLOW_DEFAULT_METADATA": "local",
            "USERNAME": os.environ.get("USERNAME") or self.user,
        }

    def train(
        self,
        lakehouse_uri: str,
        batches: list[str],
        seed: int = 0,
        max_epochs: int = 0,
        resume_from: str = "",
        log: Callable[[str], None] = print,
        as_of: dict[str, int] | None = None,
    ) -> TrainingRun:
        """Run the flow (or resume ``resume_from``, reusing its finished steps) and wait."""
        # A resume takes the origin run's config (Metaflow refuses --config with resume).
        use_config = self.config_file and not resume_from
        options = {"config": [("settings", self.config_file)]} if use_config else {}
        with keep_interrupt_handlers():
            runner = _metaflow_runner()(FLOW_FILE, show_output=False, env=self.env(), **options)
        params = self.flow_parameters(lakehouse_uri, batches, seed, max_epochs, as_of)
        # Parallel branches: the config file's max_workers, which the flow also uses to give
        # each branch its share of the cores (one source of truth).
        workers = self.settings()["max_workers"]
        if resume_from:
            # Parameters are the origin run's: resume re-runs the failed step and after.
            executing = runner.resume(origin_run_id=resume_from, max_workers=workers)
        else:
            executing = runner.run(max_workers=workers, **params)
        with executing as running:
            if running.status != "successful":
                tail = (running.stderr or "")[-4000:]
                run_id = _run_id(running)
                what = f"resume of {resume_from}" if resume_from else "FraudTrainingFlow"
                raise dg.Failure(
                    description=f"{what} failed ({running.status}) as run {run_id}; resume it "
                    f"with fraud_model config resume_from={run_id}",
                    metadata={
                        "metaflow_run_id": run_id,
                        "stderr (tail)": dg.MetadataValue.text(tail),
                    },
                )
            run = running.run
            return TrainingRun.from_run(run, _card_path(self.datastore_root, run.pathspec))


class StepFunctionsTraining(Training):
    """FraudTrainingFlow deployed on AWS Step Functions, every step an AWS Batch job.

    The Metaflow settings (``STEP_FUNCTIONS_SETTINGS``, AWS credentials and region) come from
    the environment of the Dagster deployment, never from code. Each task runs in the image
    ``METAFLOW_BATCH_CONTAINER_IMAGE`` (the project's Dockerfile: Python and every dependency)
    with the code package Metaflow uploads at deployment, which carries this commit's
    ``fraud_core`` and ``metaflow_jobs`` (their ``METAFLOW_PACKAGE_POLICY``): a code change
    needs a new deployment, not a new image.
    """

    state_machine: str = FLOW_NAME
    timeout_seconds: int = TRAINING_TIMEOUT_SECONDS
    poll_seconds: float = 10
    metadata_root: str = "."
    """Where Metaflow's local metadata lives (``DIR/.metaflow``), when there is no metadata
    service: the finished run's metadata is synced there from the S3 datastore."""

    def _run(self, pathspec: str) -> Any:
        """The ``metaflow.Run`` (Client API), read with this resource's metadata; a Step
        Functions run is in its deployment's production namespace, not this user's."""
        from metaflow import Run

        where = f"local@{self.metadata_root}" if _local_metadata() else None
        return Run(pathspec, _namespace_check=False, _current_metadata=where)

    def _env(self) -> dict[str, str]:
        missing = [name for name in STEP_FUNCTIONS_SETTINGS if not os.environ.get(name)]
        if missing:
            raise dg.Failure(
                "Step Functions training needs these variables set: " + ", ".join(missing)
            )
        return {"USERNAME": os.environ.get("USERNAME") or PIPELINE_USER}

    def deployer(self) -> Any:
        """Metaflow's Step Functions deployer for this flow and state machine.

        Fault injection (``FAULT_INJECTION`` of the flow) reaches the Batch tasks only through
        the deployment: when set here, it is attached to every step as ``@environment``.
        """
        env = self._env()
        _metaflow_runner()  # same import-order guard as the local mode
        from metaflow import Deployer

        from metaflow_jobs.settings import FAULT_INJECTION

        faults = {name: os.environ[name] for name in FAULT_INJECTION if os.environ.get(name)}
        options: dict[str, Any] = (
            {"decospecs": [f"environment:vars={json.dumps(faults)}"]} if faults else {}
        )
        with keep_interrupt_handlers():
            # Metaflow adds one method per deployment target (step_functions, argo_workflows...)
            deployer: Any = Deployer(FLOW_FILE, show_output=False, env=env, **options)
            return deployer.step_functions(name=self.state_machine)

    def code_package(self) -> dict[str, int]:
        """What the code package of a deployment holds: files per top-level package.

        Raises:
            dg.Failure: it lacks one of ``PACKAGED_MODULES`` (the tasks would then run the
                image's copy of the project, or fail to import it).
        """
        listed = subprocess.run(
            [sys.executable, FLOW_FILE, "--quiet", "package", "list", "--archive"],
            env={**os.environ, **self._env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # Metaflow prints the listing on stderr
            text=True,
            check=True,
        ).stdout.splitlines()
        counts: dict[str, int] = {}
        for line in listed:
            path = line.strip()
            if not path or " " in path:
                continue  # not an archive path
            parts = path.removeprefix(".mf_code/").split("/")
            if parts[0].startswith("."):
                continue  # Metaflow's own metadata (.mf_meta/, .mf_install)
            key = parts[0] if len(parts) > 1 else "flow directory"
            counts[key] = counts.get(key, 0) + 1
        missing = [m for m in PACKAGED_MODULES if m not in counts]
        if missing:
            raise dg.Failure(
                f"the code package lacks {', '.join(missing)}: each must set "
                "METAFLOW_PACKAGE_POLICY = 'include' and be imported by the flow file"
            )
        return counts

    def deploy(self) -> str:
        """Create or update the state machine (what ``make deploy-training`` runs)."""
        deployed = self.deployer().create()
        return str(deployed.name)

    def trigger(self, **params: Any) -> Any:
        """Start an execution of the deployed state machine (a StepFunctionsTriggeredRun)."""
        from metaflow.plugins.aws.step_functions.step_functions_deployer_objects import (
            StepFunctionsDeployedFlow,
        )

        impl = self.deployer()
        # Attach to the state machine Jenkins deployed, as create() would have left it.
        impl.name, impl.flow_name, impl.metadata = self.state_machine, FLOW_NAME, None
        return StepFunctionsDeployedFlow(deployer=impl).trigger(**params)

    def train(
        self,
        lakehouse_uri: str,
        batches: list[str],
        seed: int = 0,
        max_epochs: int = 0,
        resume_from: str = "",
        log: Callable[[str], None] = print,
        as_of: dict[str, int] | None = None,
    ) -> TrainingRun:
        """Trigger an execution, follow it to its end and return the run it produced.

        If this call is interrupted (the Dagster run is terminated) or fails while the
        execution runs, the execution is stopped: nothing trains on that nobody waits for.
        """
        if resume_from:
            raise dg.Failure(
                "Step Functions cannot restart an execution. Resume the failed run with "
                f"Metaflow's local runtime against the same S3 datastore: FRAUD_TRAINING=local "
                f"METAFLOW_DEFAULT_DATASTORE=s3 and fraud_model config resume_from={resume_from}"
            )
        triggered = self.trigger(
            **self.flow_parameters(lakehouse_uri, batches, seed, max_epochs, as_of)
        )
        run_id = triggered.pathspec.split("/")[-1]
        execution = StepFunctionsExecution.of_run(sfn_client(), self.state_machine, run_id)
        log(f"started {execution.arn} (Metaflow run {triggered.pathspec}): {execution.console_url}")
        try:
            described = execution.wait(
                self.timeout_seconds,
                self.poll_seconds,
                on_state=lambda s: log(f"entered state {s}"),
            )
        except BaseException as exc:  # interrupted (run terminated), timed out, or broken
            execution.stop(f"the Dagster step following it ended: {type(exc).__name__}: {exc}")
            log(f"stopped {execution.arn}")
            raise
        synced = 0
        if _local_metadata():
            synced = sync_local_metadata(
                FLOW_NAME, run_id, os.environ["METAFLOW_DATASTORE_SYSROOT_S3"], self.metadata_root
            )
        where = {"execution_arn": execution.arn, "console_url": execution.console_url}
        if described["status"] != "SUCCEEDED":
            raise dg.Failure(
                description=f"training execution {execution.arn} ended "
                f"{failure_summary(described)}{self._failed_task(triggered.pathspec, execution)}. "
                f"Console: {execution.console_url}. Resume it: FRAUD_TRAINING=local "
                f"METAFLOW_DEFAULT_DATASTORE=s3 with fraud_model config resume_from={run_id}",
                metadata={**where, "metaflow_run_id": run_id, "status": described["status"]},
            )
        log(f"{execution.arn} succeeded; {synced} task attempts' metadata synced")
        return TrainingRun.from_run(self._run(triggered.pathspec), **where)

    def _failed_task(self, pathspec: str, execution: StepFunctionsExecution) -> str:
        """``; step S failed: <the end of its stderr>`` from Metaflow's logs, when available."""
        step = execution.failed_step()
        if not step:
            return ""
        try:
            task = next(iter(self._run(pathspec)[step].tasks()))
            tail = (task.stderr or "").strip().splitlines()[-3:]
        except Exception:  # logs are a courtesy here: the execution's own error is the report
            tail = []
        return f"; step {step} failed" + (": " + " | ".join(tail) if tail else "")


@contextlib.contextmanager
def keep_interrupt_handlers() -> Iterator[None]:
    """Keep this process' SIGINT/SIGTERM handlers across the creation of a Metaflow Runner or
    Deployer.

    Their subprocess manager installs a SIGINT handler of its own, for good: it kills their
    subprocesses and swallows the signal. In a Dagster step that hides the run's termination
    (Dagster interrupts the step with SIGINT), so a terminated run would go on following its
    training. With the caller's handlers back, the interrupt raises in the step; the local
    Runner's context then stops its subprocess, and a Step Functions execution is stopped.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def _local_metadata() -> bool:
    """True without a Metaflow metadata service (Metaflow's configuration: env or profile)."""
    from metaflow.metaflow_config import DEFAULT_METADATA

    return bool(DEFAULT_METADATA == "local")


def _metaflow_runner() -> Any:
    """``metaflow.Runner``, imported so that it cannot break torch later in this process.

    A Metaflow run replaces ``typing._collect_parameters`` with the copy in Metaflow's vendored
    ``typing_extensions``; a first import of ``torch._dynamo`` after that fails ("Type parameter
    ~_T1 without a default follows type parameter with a default"), e.g. when an optimizer is
    used later in the same process. Importing it first makes the order safe.
    """
    import torch._dynamo  # noqa: F401
    from metaflow import Runner

    return Runner


def _run_id(running: Any) -> str:
    """The Metaflow run id of an executing/finished Runner run ('unknown' if it never started)."""
    try:
        return str(running.run.id)
    except Exception:  # the run may have failed before Metaflow registered it
        return "unknown"


def _card_path(root: str, pathspec: str) -> str | None:
    """The evaluation card's HTML file in the local datastore, when it was written."""
    flow, run_id = pathspec.split("/")[:2]
    pattern = os.path.join(root, ".metaflow", "**", flow, "runs", run_id, "steps", "evaluate")
    found = sorted(glob.glob(os.path.join(pattern, "**", "*.html"), recursive=True))
    return found[0] if found else None
