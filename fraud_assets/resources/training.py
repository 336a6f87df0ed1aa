"""Training as a resource: FraudTrainingFlow run by Metaflow (local runtime through Runner)."""

import glob
import os
from dataclasses import dataclass
from typing import Any

import dagster as dg

import metaflow_jobs

FLOW_FILE = os.path.join(os.path.dirname(metaflow_jobs.__file__), "fraud_training_flow.py")


@dataclass(frozen=True)
class TrainingRun:
    """What a finished training run produced."""

    pathspec: str
    model_version: str
    bundle_uri: str
    test_metrics: dict[str, Any]
    candidates: list[dict[str, Any]]
    split: dict[str, Any]
    pr_png: bytes
    card_path: str | None


class MetaflowTraining(dg.ConfigurableResource):
    """Runs FraudTrainingFlow with Metaflow's local runtime (``metaflow.Runner``).

    ``datastore_root`` is where Metaflow keeps runs and artifacts (``DIR/.metaflow``); the
    Client API and ``python fraud_training_flow.py resume`` need the same value in
    ``METAFLOW_DATASTORE_SYSROOT_LOCAL``.
    """

    datastore_root: str
    max_workers: int = 2
    user: str = "fraud-pipeline"

    def train(
        self, lakehouse_uri: str, batches: list[str], seed: int = 0, max_epochs: int = 0
    ) -> TrainingRun:
        Runner = _metaflow_runner()
        env = {
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": self.datastore_root,
            "METAFLOW_CARD_LOCALROOT": os.path.join(self.datastore_root, ".metaflow", "mf.cards"),
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
            "USERNAME": os.environ.get("USERNAME") or self.user,
        }
        with Runner(FLOW_FILE, show_output=False, env=env).run(
            lakehouse_uri=lakehouse_uri,
            batches=",".join(batches),
            seed=seed,
            max_epochs=max_epochs,
            max_workers=self.max_workers,
        ) as running:
            if running.status != "successful":
                tail = (running.stderr or "")[-4000:]
                raise dg.Failure(
                    description=f"FraudTrainingFlow failed ({running.status})",
                    metadata={"stderr (tail)": dg.MetadataValue.text(tail)},
                )
            run = running.run
            data = run.data
            return TrainingRun(
                pathspec=run.pathspec,
                model_version=data.model_version,
                bundle_uri=data.bundle_uri,
                test_metrics=data.test_metrics,
                candidates=data.candidates,
                split=data.split_summary,
                pr_png=data.pr_png,
                card_path=_card_path(self.datastore_root, run.pathspec),
            )


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


def _card_path(root: str, pathspec: str) -> str | None:
    """The evaluation card's HTML file in the local datastore, when it was written."""
    flow, run_id = pathspec.split("/")[:2]
    pattern = os.path.join(root, ".metaflow", "**", flow, "runs", run_id, "steps", "evaluate")
    found = sorted(glob.glob(os.path.join(pattern, "**", "*.html"), recursive=True))
    return found[0] if found else None
