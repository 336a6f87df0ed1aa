"""FraudTrainingFlow: parallel hyperparameter search for the fraud network, evaluated and
registered in the lakehouse.

Steps:
    start     load labelled features from the lakehouse; split by time (train / val / test);
              with training.distill_weight, tune LightGBM and score the training rows out of
              fold with it (the network's teacher)
    train     one branch per grid point (foreach), retried on failure
    join      keep every candidate's metrics; pick the best by validation AP; calibrate;
              fit the cost-based decision threshold
    evaluate  held-out AP, ROC-AUC, precision@k, recall at 1% FPR, next to the Bayes-optimal
              score and a LightGBM baseline on the same features and split (card with plots)
    register  write the model bundle to the lakehouse
    end       nothing left but the artifacts
"""

from __future__ import annotations

import os
import time

from metaflow import Config, FlowSpec, Parameter, card, current, resources, retry, step, timeout

# Imported here, at the top, so Metaflow's code package carries both packages (their
# METAFLOW_PACKAGE_POLICY): remote steps run this commit's code, not the image's copy.
import fraud_core
import metaflow_jobs
from metaflow_jobs.settings import DEFAULT_CONFIG, FAIL_ALWAYS, FAIL_FIRST_ATTEMPT, parse_settings


def _cores() -> int:
    """The cores of the machine this task runs on."""
    return os.cpu_count() or 1


def _injected_failure(step_name: str) -> None:
    """Raise if the environment asks this step to fail (metaflow_jobs.settings: fault
    injection)."""
    first = os.environ.get(FAIL_FIRST_ATTEMPT, "").split(",")
    if step_name in first and current.retry_count == 0:
        raise RuntimeError(f"injected failure: first attempt of {step_name}")
    if step_name in os.environ.get(FAIL_ALWAYS, "").split(","):
        raise RuntimeError(f"injected failure: {step_name}")


class FraudTrainingFlow(FlowSpec):
    """Train, compare and register a fraud model from the lakehouse's labelled features."""

    settings = Config("settings", default=DEFAULT_CONFIG, parser=parse_settings)
    lakehouse_uri = Parameter("lakehouse_uri", required=True, help="LAKEHOUSE_URI to read/write")
    batches = Parameter(
        "batches", default="", help="comma-separated feature batches (empty: all in the lakehouse)"
    )
    seed = Parameter("seed", default=0, type=int, help="random seed of every branch")
    max_epochs = Parameter("max_epochs", default=0, type=int, help="0: the config's max_epochs")
    as_of = Parameter(
        "as_of",
        default="",
        help='Delta version of each table to read, JSON {"features/claims": 12, ...} '
        "(empty or {}: the current versions, recorded in the bundle's lineage)",
    )

    def _lakehouse(self):  # type: ignore[no-untyped-def]
        """The lakehouse as this run reads it: every table at its recorded Delta version."""
        from fraud_core.lakehouse import Lakehouse

        return Lakehouse(self.lakehouse_uri).pinned(self.table_versions)

    def _split(self):  # type: ignore[no-untyped-def]
        from fraud_core.training import load_labelled_features, time_split

        frame = load_labelled_features(self._lakehouse(), self.batch_list or None)
        split = self.settings.split
        return time_split(frame, split.val_fraction, split.test_fraction)

    @step
    def start(self) -> None:
        """Load labelled features and split them by time; fan out over the grid."""
        import json

        from fraud_core.lakehouse import Lakehouse
        from fraud_core.layout import FEATURES

        # Where this task's code came from: the code package (.mf_code) on a remote task.
        self.code_origin = {m.__name__: m.__file__ for m in (fraud_core, metaflow_jobs)}
        # Every step reads the tables at these versions, so later batches change nothing.
        pinned = json.loads(self.as_of) if self.as_of.strip() else {}
        self.table_versions = pinned or Lakehouse(self.lakehouse_uri).table_versions()
        requested = [b.strip() for b in self.batches.split(",") if b.strip()]
        self.batch_list = requested or self._lakehouse().batches(FEATURES)
        self.split_summary = self._split().describe()
        self.grid = [dict(point) for point in self.settings.grid]
        workers = min(self.settings.max_workers, len(self.grid))
        # Branches run side by side: give each a share of the cores, never more. The steps
        # before and after the search run alone and use every core.
        self.threads_per_branch = max(1, _cores() // workers)
        self._fit_teacher()
        self.next(self.train, foreach="grid")

    def _tune_lightgbm(self, split):  # type: ignore[no-untyped-def]
        from fraud_core.training import lightgbm_baseline

        lightgbm = self.settings.lightgbm
        return lightgbm_baseline(
            split,
            dict(lightgbm.params),
            {name: list(values) for name, values in lightgbm.search.items()},
            threads=_cores(),  # tuned in start or evaluate: no branch runs beside it
        )

    def _fit_teacher(self) -> None:
        """With ``training.distill_weight``: tune the LightGBM baseline here, before the
        search (``evaluate`` reuses it), and score the training rows out of fold with its
        parameters: the soft targets every branch is distilled towards."""
        self.tuned_lightgbm, self.teacher, self.teacher_seconds = None, None, 0.0
        if not self.settings.training.distill_weight:
            return
        from fraud_core.training import out_of_fold_teacher

        started = time.perf_counter()
        split = self._split()
        self.tuned_lightgbm = self._tune_lightgbm(split)
        self.teacher = out_of_fold_teacher(
            split.train,
            dict(self.settings.lightgbm.params),
            self.tuned_lightgbm.params,
            self.tuned_lightgbm.rounds,
            folds=self.settings.training.teacher_folds,
            threads=_cores(),
            seed=self.seed,
        )
        self.teacher_seconds = time.perf_counter() - started

    @retry(times=2, minutes_between_retries=0)
    @resources(cpu=1, memory=4096)
    @timeout(minutes=60)
    @step
    def train(self) -> None:
        """Fit one candidate; keep its weights, vocabulary and learning curve."""
        from safetensors.torch import save as save_safetensors

        from fraud_core.model.train import fit
        from metaflow_jobs.settings import train_config

        self.started_at = time.time()  # wall-clock span of the branch (the search's timeline)
        self.attempt = current.retry_count
        _injected_failure("train")
        self.hparams = dict(self.input)
        config = train_config(
            dict(self.settings.training), self.hparams, self.seed, self.max_epochs
        )
        split = self._split()
        started = time.perf_counter()
        distilled = getattr(self, "teacher", None)  # None: off, or a start from before it
        teacher = distilled.for_rows(split.train) if distilled is not None else None
        result = fit(
            split.train, split.val, config, threads=self.threads_per_branch, teacher=teacher
        )
        self.fit_seconds = time.perf_counter() - started
        self.train_rows = len(split.train)
        self.val_ap = result.best_val_ap
        self.best_epoch = result.best_epoch
        self.epochs_run = result.epochs_run
        self.learning_curve = result.history
        self.net_config = result.net.config.as_dict()
        self.vocabulary = result.vocabulary.values
        self.weights = save_safetensors(
            {k: v.contiguous() for k, v in result.net.state_dict().items()}
        )
        self.finished_at = time.time()
        self.next(self.join)

    @step
    def join(self, inputs) -> None:  # type: ignore[no-untyped-def]
        """Keep every candidate's metrics; average the best with the next best of its
        architecture (``training.ensemble``), calibrate it and fit its threshold."""
        from safetensors.torch import save as save_safetensors

        from fraud_core.metrics import average_precision, cost_optimal_threshold
        from fraud_core.model.bundle import ModelBundle
        from fraud_core.model.calibration import fit_platt, sigmoid
        from fraud_core.model.train import ensemble_of

        self.merge_artifacts(
            inputs,
            include=[
                "batch_list",
                "split_summary",
                "threads_per_branch",
                "lakehouse_uri",
                "table_versions",
            ],
        )
        # Not in include: a run resumed from one whose start step predates the teacher lacks
        # them (evaluate then tunes the baseline itself).
        self.tuned_lightgbm = getattr(inputs[0], "tuned_lightgbm", None)
        self.teacher_seconds = getattr(inputs[0], "teacher_seconds", 0.0)
        self.candidates = [
            {
                **inp.hparams,
                "val_ap": inp.val_ap,
                "best_epoch": inp.best_epoch,
                "epochs_run": inp.epochs_run,
                "attempt": inp.attempt,
            }
            for inp in inputs
        ]
        # The best candidate, averaged with the next best of its architecture (training.ensemble).
        nets = [
            ModelBundle.from_weights(inp.weights, inp.net_config, inp.vocabulary).net
            for inp in inputs
        ]
        net, members = ensemble_of(
            nets, [inp.val_ap for inp in inputs], self.settings.training.ensemble
        )
        best = inputs[members[0]]
        if any(inputs[i].vocabulary != best.vocabulary for i in members):
            raise ValueError("the candidates saw different categories: not one training set")
        self.best_hparams = best.hparams
        self.ensemble_members = [dict(inputs[i].hparams) for i in members]
        self.net_config, self.vocabulary = net.config.as_dict(), best.vocabulary
        self.weights = save_safetensors({k: v.contiguous() for k, v in net.state_dict().items()})
        candidate = ModelBundle.from_weights(self.weights, self.net_config, self.vocabulary)
        val = self._split().val
        logits = candidate.logits(val)
        labels = val["is_fraud"].to_numpy(dtype=bool)
        self.ensemble_val_ap = average_precision(labels, logits)
        self.calibration = fit_platt(logits, labels)
        a, b = self.calibration
        self.threshold = cost_optimal_threshold(
            labels,
            sigmoid(a * logits + b),
            val["claimed_amount"].to_numpy(),
            self.settings.decision.investigation_cost,
        )
        self.next(self.evaluate)

    @card(type="blank", id="evaluation")
    @step
    def evaluate(self) -> None:
        """Held-out metrics beside the Bayes-optimal score and a LightGBM baseline."""
        import numpy as np

        from fraud_core import metrics, plots
        from fraud_core.model.calibration import expected_calibration_error
        from fraud_core.training import compare_on_test, oracle_scores

        split = self._split()
        bundle = self._bundle(version="evaluation")
        model_scores = bundle.predict_proba(split.test)
        # Tuned before the search when it was the network's teacher, else here.
        tuned = self.tuned_lightgbm or self._tune_lightgbm(split)
        self.lightgbm_baseline = tuned.describe()
        baseline = tuned.test_scores
        # Per held-out claim, for analyses the metrics don't cover (e.g. AP per scenario).
        self.test_scores = {
            "claim_id": split.test["claim_id"].to_numpy(),
            "model": model_scores,
            "lightgbm": baseline,
        }
        k = self.settings.decision.precision_k
        self.test_metrics = compare_on_test(
            split.test, {"model": model_scores, "lightgbm": baseline}, k
        )
        labels = split.test["is_fraud"].to_numpy(dtype=bool)
        self.test_metrics["model"]["expected_calibration_error"] = expected_calibration_error(
            model_scores, labels
        )
        self.test_metrics["model"]["alert_rate"] = float(bundle.decide(model_scores).mean())
        curves = {}
        for name, scores in (("model", model_scores), ("lightgbm", baseline)):
            precision, recall = metrics.pr_curve(labels, scores)
            curves[name] = (precision, recall, self.test_metrics[name]["average_precision"])
        oracle = oracle_scores(split.test)
        if oracle is not None:
            # One random order among tied probabilities (the AP beside it is the mean of many).
            ranked = metrics.break_ties(oracle, np.random.default_rng(0))
            precision, recall = metrics.pr_curve(labels, ranked)
            curves["bayes_optimal"] = (
                precision,
                recall,
                self.test_metrics["bayes_optimal"]["average_precision"],
            )
        self.pr_png = plots.pr_curves_png(curves, "precision-recall on held-out claims")
        self.calibration_png = plots.calibration_png(model_scores, labels)
        self.reference_scores = model_scores
        self._card(bundle)
        self.next(self.register)

    def _bundle(self, version: str):  # type: ignore[no-untyped-def]
        from fraud_core.model.bundle import ModelBundle

        return ModelBundle.from_weights(
            self.weights,
            net_config=self.net_config,
            vocabulary=self.vocabulary,
            calibration=self.calibration,
            threshold=self.threshold,
            version=version,
        )

    def _card(self, bundle) -> None:  # type: ignore[no-untyped-def]
        from metaflow.cards import Image, Markdown, Table

        current.card["evaluation"].append(Markdown("# Fraud model: search and evaluation"))
        keys = ["hidden", "seed", "dropout", "lr", "batch_size", "val_ap", "best_epoch"]
        rows = [[str(c.get(k)) for k in keys] for c in self.candidates]
        current.card["evaluation"].append(Markdown("## Candidates (validation AP)"))
        current.card["evaluation"].append(Table(rows, headers=keys))
        current.card["evaluation"].append(
            Markdown(
                f"Model: the mean logit of {len(self.ensemble_members)} candidate(s) (seeds "
                f"{[m.get('seed', 0) for m in self.ensemble_members]}), validation AP "
                f"{self.ensemble_val_ap:.4f}"
            )
        )
        current.card["evaluation"].append(Markdown("## Held-out claims"))
        names = list(self.test_metrics)
        stats = ["average_precision", "roc_auc", "precision_at_k", "recall_at_1pct_fpr"]
        current.card["evaluation"].append(
            Table(
                [[n] + [f"{self.test_metrics[n][s]:.4f}" for s in stats] for n in names],
                headers=["score"] + stats,
            )
        )
        tuned = self.lightgbm_baseline
        current.card["evaluation"].append(
            Markdown(
                f"LightGBM baseline: best of {len(tuned['candidates'])} grid points by "
                f"validation AP: `{tuned['params']}`, {tuned['rounds']} rounds "
                f"(validation AP {tuned['val_ap']:.4f})"
            )
        )
        current.card["evaluation"].append(Image(self.pr_png, label="PR curves"))
        current.card["evaluation"].append(Image(self.calibration_png, label="calibration"))

    @step
    def register(self) -> None:
        """Write the bundle (weights, manifest, drift reference) to the lakehouse."""
        _injected_failure("register")
        from fraud_core import drift
        from fraud_core.features import NUMERIC_FEATURES
        from fraud_core.lakehouse import Lakehouse

        split = self._split()
        bundle = self._bundle(version=f"fm-{current.run_id}")
        reference = drift.profile(split.train, NUMERIC_FEATURES)
        reference["score"] = drift.profile(
            split.test.assign(score=self.reference_scores), ["score"]
        )["score"]
        bundle.reference_profile = reference
        bundle.metrics = {
            "test": self.test_metrics,
            "candidates": self.candidates,
            "lightgbm_baseline": self.lightgbm_baseline,
            "ensemble": {"members": self.ensemble_members, "val_ap": self.ensemble_val_ap},
        }
        bundle.lineage = {
            "metaflow_run": f"{current.flow_name}/{current.run_id}",
            "training_batches": self.batch_list,
            "table_versions": self.table_versions,
            "split": self.split_summary,
            "hyperparameters": self.best_hparams,
        }
        self.model_version = bundle.version
        self.bundle_uri = bundle.save(Lakehouse(self.lakehouse_uri))
        self.next(self.end)

    @step
    def end(self) -> None:
        """The bundle URI and the metrics are artifacts of this run."""
        print(f"registered {self.model_version} at {self.bundle_uri}")  # noqa: T201


if __name__ == "__main__":
    FraudTrainingFlow()
