"""Training as a resource: FraudTrainingFlow run by Metaflow, behind one interface, two modes.

``MetaflowTraining``       Metaflow's local runtime through ``metaflow.Runner`` (the default).
``StepFunctionsTraining``  the flow deployed as an AWS Step Functions state machine (steps on
                           AWS Batch): the asset triggers it, waits, and reads the finished run
                           through the Client API. Jenkins deploys it (``make deploy-training``).
"""

import glob
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

import metaflow_jobs

FLOW_FILE = os.path.join(os.path.dirname(metaflow_jobs.__file__), "fraud_training_flow.py")
FLOW_NAME = "FraudTrainingFlow"
# What Metaflow needs to deploy and run the flow on Step Functions + Batch. (Metaflow 2.19's
# `create` also asks for the EventBridge role, even for a flow without @schedule.)
STEP_FUNCTIONS_SETTINGS = (
    "METAFLOW_DATASTORE_SYSROOT_S3",
    "METAFLOW_SFN_IAM_ROLE",
    "METAFLOW_ECS_S3_ACCESS_IAM_ROLE",
    "METAFLOW_BATCH_JOB_QUEUE",
    "METAFLOW_SFN_DYNAMO_DB_TABLE",
    "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE",
)


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

    @classmethod
    def from_run(cls, run: Any, card_path: str | None = None) -> "TrainingRun":
        """From a successful ``metaflow.Run`` (Client API)."""
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
    ) -> TrainingRun:
        raise NotImplementedError

    @staticmethod
    def flow_parameters(
        lakehouse_uri: str, batches: list[str], seed: int, max_epochs: int
    ) -> dict[str, Any]:
        return {
            "lakehouse_uri": lakehouse_uri,
            "batches": ",".join(batches),
            "seed": seed,
            "max_epochs": max_epochs,
        }


class MetaflowTraining(Training):
    """Metaflow's local runtime (``metaflow.Runner``); branches run as local processes.

    ``datastore_root`` is where Metaflow keeps runs and artifacts (``DIR/.metaflow``); the
    Client API and ``python fraud_training_flow.py resume`` need the same value in
    ``METAFLOW_DATASTORE_SYSROOT_LOCAL``.
    """

    datastore_root: str
    user: str = "fraud-pipeline"
    config_file: str = ""
    """Training settings to use instead of metaflow_jobs/config/training.json (same schema)."""

    def settings(self) -> dict[str, Any]:
        """The validated training settings this resource runs the flow with."""
        from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings

        with open(self.config_file or DEFAULT_CONFIG) as fh:
            return parse_settings(fh.read())

    def env(self) -> dict[str, str]:
        return {
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": self.datastore_root,
            "METAFLOW_CARD_LOCALROOT": os.path.join(self.datastore_root, ".metaflow", "mf.cards"),
            "METAFLOW_DEFAULT_DATASTORE": "local",
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
    ) -> TrainingRun:
        """Run the flow (or resume ``resume_from``, reusing its finished steps) and wait."""
        options = {"config": [("settings", self.config_file)]} if self.config_file else {}
        runner = _metaflow_runner()(FLOW_FILE, show_output=False, env=self.env(), **options)
        params = self.flow_parameters(lakehouse_uri, batches, seed, max_epochs)
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
    """FraudTrainingFlow deployed on AWS Step Functions + Batch.

    The Metaflow settings (``STEP_FUNCTIONS_SETTINGS``, AWS credentials and region) come from
    the environment of the Dagster deployment, never from code.
    """

    state_machine: str = FLOW_NAME
    timeout_seconds: int = 6 * 3600
    poll_seconds: int = 30

    def deployer(self) -> Any:
        """Metaflow's Step Functions deployer for this flow and state machine."""
        missing = [name for name in STEP_FUNCTIONS_SETTINGS if not os.environ.get(name)]
        if missing:
            raise dg.Failure(
                "Step Functions training needs these variables set: " + ", ".join(missing)
            )
        _metaflow_runner()  # same import-order guard as the local mode
        from metaflow import Deployer

        env = {"USERNAME": os.environ.get("USERNAME") or "fraud-pipeline"}
        return Deployer(FLOW_FILE, show_output=False, env=env).step_functions(
            name=self.state_machine
        )

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
    ) -> TrainingRun:
        if resume_from:
            raise dg.Failure(
                "resume_from runs Metaflow's resume, which is local: resume a Step Functions "
                f"run with FRAUD_TRAINING=local and resume_from={resume_from} against the same "
                "S3 datastore"
            )
        triggered = self.trigger(**self.flow_parameters(lakehouse_uri, batches, seed, max_epochs))
        run = wait_for_completion(
            lambda: triggered.run, timeout=self.timeout_seconds, poll=self.poll_seconds
        )
        return TrainingRun.from_run(run)


def wait_for_completion(
    get_run: Callable[[], Any],
    timeout: float,
    poll: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Poll a triggered run until it has finished; return it if it succeeded.

    ``get_run`` returns None until the run's start step is running (Metaflow's
    ``TriggeredRun.run``), then a ``metaflow.Run`` with ``finished`` and ``successful``.

    Raises:
        dg.Failure: the run finished unsuccessfully (with its pathspec, to resume it).
        TimeoutError: it did not finish within ``timeout`` seconds.
    """
    deadline = clock() + timeout
    while True:
        run = get_run()
        if run is not None and run.finished:
            if run.successful:
                return run
            raise dg.Failure(
                f"training run {run.pathspec} failed; inspect it with the Metaflow Client API "
                f"and resume it with resume_from={run.pathspec.split('/')[-1]}"
            )
        if clock() >= deadline:
            state = "has not started" if run is None else f"{run.pathspec} is still running"
            raise TimeoutError(f"training run {state} after {timeout:.0f} s")
        sleep(poll)


def training_for(env: Mapping[str, str], datastore_root: str) -> Training:
    """The Training resource named by ``FRAUD_TRAINING`` (``local`` or ``step-functions``)."""
    mode = env.get("FRAUD_TRAINING", "local")
    if mode == "local":
        return MetaflowTraining(
            datastore_root=datastore_root, config_file=env.get("FRAUD_TRAINING_CONFIG", "")
        )
    if mode == "step-functions":
        return StepFunctionsTraining(
            state_machine=env.get("FRAUD_STATE_MACHINE", FLOW_NAME),
            timeout_seconds=int(env.get("FRAUD_TRAINING_TIMEOUT", str(6 * 3600))),
        )
    raise ValueError(f"FRAUD_TRAINING={mode!r}: use 'local' or 'step-functions'")


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
