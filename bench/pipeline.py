"""Pipeline benchmarks: what Dagster + Metaflow cost on top of the work and how it scales.

Figures:
  pipeline_overhead   whole graph through Dagster + Metaflow / the same fraud_core functions
                      called directly in one process, same claims, same training config
                      (early stopping: the epochs each path ran are in the notes)
  pipeline_wall       the orchestrated wall time, with a per-asset breakdown in its notes
  pipeline_scaling    time and peak memory at three sizes: exponents of a log-log fit
  peak_memory         peak resident memory of the 1M-claim orchestrated pipeline

The model's quality on the held-out claims of these runs is the ``model_quality`` slot
(bench/model_quality.py): it reuses the runs this slot made in the same benchmark process.

Each measured pipeline runs in a fresh child process (``python -m bench.pipeline child ...``)
so that runs do not share caches and peak memory is the run's own.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.common import failed, figure, peak_rss_mb, run_child

SEED = 20_260  # never used by tests
SIZES = {False: 1_000_000, True: 30_000}  # the measured size of the full and the --quick run
# Training as users run it: the config's early stopping (max_epochs 0) in every run. A fixed
# few epochs leave the network undertrained, and the gate rightly refuses such a model (a full
# run failed it at 3 epochs, the quick one at 4), which stops the graph before scoring.
EARLY_STOPPING = 0
BATCHES = 4


# --- child side: one pipeline run in this process ---------------------------------------------
def _land(workdir: str, claims: int, seed: int) -> pd.DataFrame:
    """Land the claims as the pipeline's input files; return each claim's label and scenario."""
    from fraud_core.simulate import (
        SimulationConfig,
        inject_bad_rows,
        simulate_claims,
        split_into_batches,
        write_landing_files,
    )

    landing = os.path.join(workdir, ".lakehouse", "landing")
    frame = inject_bad_rows(simulate_claims(SimulationConfig(n_claims=claims, seed=seed)), 0.002)
    write_landing_files(split_into_batches(frame, BATCHES), landing, "parquet")
    return frame[["claim_id", "is_fraud", "scenario"]].drop_duplicates("claim_id")


def _scenario_quality(test_scores: dict[str, Any], truth: pd.DataFrame) -> dict[str, Any]:
    """AP per fraud scenario of each model's held-out scores (the simulator's ``scenario``)."""
    from fraud_core.metrics import ap_by_scenario

    frame = pd.DataFrame(test_scores).merge(truth, on="claim_id", validate="one_to_one")
    y = frame["is_fraud"].to_numpy(dtype=bool)
    return {
        name: ap_by_scenario(y, frame[name].to_numpy(), frame["scenario"].to_numpy())
        for name in ("model", "lightgbm")
    }


def _orchestrated(workdir: str, max_epochs: int, seed: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "LAKEHOUSE_URI": os.path.join(workdir, ".lakehouse"),
        "DUCKDB_PATH": os.path.join(workdir, "warehouse.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": workdir,
    }
    # This child process is the run's own: Metaflow's client (read below) and Dagster see the
    # same settings as the jobs.
    os.environ.update(env)
    from fraud_cli.orchestrate import Orchestrator, ensure_dagster_home

    env["DAGSTER_HOME"] = os.environ["DAGSTER_HOME"] = ensure_dagster_home(
        os.path.join(workdir, ".dagster_home")
    )
    jobs: dict[str, float] = {}
    started = time.perf_counter()
    orchestrator = Orchestrator(env)
    for name, step in (
        ("ingest", orchestrator.ingest_new_files),
        ("train", lambda: orchestrator.train(seed=seed, max_epochs=max_epochs)),
        ("score", lambda: orchestrator.score(orchestrator.batches())),
        ("report", orchestrator.report),
    ):
        t0 = time.perf_counter()
        outcome = step()
        jobs[name] = time.perf_counter() - t0
        if name == "train" and not outcome["gate_passed"]:
            raise RuntimeError(f"the model gate failed: {outcome['gate_description']}")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "jobs": jobs,
        "assets": _asset_seconds(orchestrator.instance),
        **_champion_metrics(env["LAKEHOUSE_URI"]),
    }


def _asset_seconds(instance: Any) -> dict[str, float]:
    """Seconds per step (asset or check) summed over all runs, from Dagster's event log."""
    from dagster import DagsterEventType

    totals: dict[str, float] = {}
    for record in instance.get_run_records():
        starts: dict[str, float] = {}
        for entry in instance.all_logs(
            record.dagster_run.run_id,
            of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS},
        ):
            key = entry.step_key or "?"
            if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                starts[key] = entry.timestamp
            elif key in starts:
                totals[key] = totals.get(key, 0.0) + entry.timestamp - starts.pop(key)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _champion_metrics(lakehouse_uri: str) -> dict[str, Any]:
    from metaflow import Run

    from fraud_core.lakehouse import Lakehouse
    from fraud_core.model.bundle import load_champion

    champion = load_champion(Lakehouse(lakehouse_uri))
    metrics = champion.metrics
    run = Run(champion.lineage["metaflow_run"], _namespace_check=False)
    return {
        "test_metrics": dict(metrics.get("test", {})),
        "lightgbm_baseline": metrics.get("lightgbm_baseline", {}),
        "test_scores": run.data.test_scores,
        "epochs": [int(c["epochs_run"]) for c in metrics.get("candidates", [])],
    }


def _direct(workdir: str, max_epochs: int, seed: int) -> dict[str, Any]:
    """The same work as the graph, as a hand-written script would do it: fraud_core calls."""
    import duckdb

    from expectations.claims import validate_claims
    from fraud_core import drift, plots
    from fraud_core.claim_versions import as_raw
    from fraud_core.features import NUMERIC_FEATURES
    from fraud_core.lakehouse import Lakehouse, batch_id_for_file
    from fraud_core.landing import read_claims_file
    from fraud_core.layout import QUARANTINE, RAW
    from fraud_core.metrics import cost_optimal_threshold, pr_curve
    from fraud_core.model.bundle import ModelBundle
    from fraud_core.model.calibration import fit_platt
    from fraud_core.model.train import fit
    from fraud_core.pipeline import aggregate_metrics, featurize_batch, score_batch
    from fraud_core.training import (
        compare_on_test,
        lightgbm_baseline,
        load_labelled_features,
        out_of_fold_teacher,
        time_split,
    )
    from fraud_core.warehouse import create_table_sql, merge_sql
    from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings, train_config

    with open(DEFAULT_CONFIG) as fh:
        settings = parse_settings(fh.read())
    threads = os.cpu_count() or 1
    lh = Lakehouse(os.path.join(workdir, ".lakehouse"))
    landing = os.path.join(workdir, ".lakehouse", "landing")
    started = time.perf_counter()
    batches = []
    for name in sorted(os.listdir(landing)):
        with open(os.path.join(landing, name), "rb") as fh:
            result = validate_claims(read_claims_file(name, fh.read()))
        batch = batch_id_for_file(name)
        lh.write_batch(RAW, batch, as_raw(result.valid))
        lh.write_batch(QUARANTINE, batch, result.quarantined)
        featurize_batch(lh, batch)
        batches.append(batch)
    split = time_split(
        load_labelled_features(lh),
        settings["split"]["val_fraction"],
        settings["split"]["test_fraction"],
    )
    # As the flow: the baseline tuned first, and with distillation the network's teacher
    tuned = lightgbm_baseline(
        split, settings["lightgbm"]["params"], settings["lightgbm"]["search"], threads
    )
    teacher = None
    if settings["training"].get("distill_weight", 0.0):
        teacher = out_of_fold_teacher(
            split.train,
            dict(settings["lightgbm"]["params"]),
            tuned.params,
            tuned.rounds,
            folds=settings["training"]["teacher_folds"],
            threads=threads,
            seed=seed,
        ).for_rows(split.train)
    fits = [
        fit(
            split.train,
            split.val,
            train_config(settings["training"], point, seed, max_epochs),
            threads=threads,
            teacher=teacher,
        )
        for point in settings["grid"]
    ]
    best = max(fits, key=lambda f: f.best_val_ap)
    y_val = split.val["is_fraud"].to_numpy(dtype=bool)
    candidate = ModelBundle(best.net, best.vocabulary, (1.0, 0.0), 0.5, "candidate")
    calibration = fit_platt(candidate.logits(split.val), y_val)
    bundle = ModelBundle(best.net, best.vocabulary, calibration, 0.5, "direct-1")
    bundle.threshold = cost_optimal_threshold(
        y_val,
        bundle.predict_proba(split.val),
        split.val["claimed_amount"].to_numpy(),
        settings["decision"]["investigation_cost"],
    )
    scores = bundle.predict_proba(split.test)
    baseline = tuned.test_scores
    test_metrics = compare_on_test(
        split.test, {"model": scores, "lightgbm": baseline}, settings["decision"]["precision_k"]
    )
    y_test = split.test["is_fraud"].to_numpy(dtype=bool)
    curves = {}
    for name, s in (("model", scores), ("lightgbm", baseline)):
        precision, recall = pr_curve(y_test, s)
        curves[name] = (precision, recall, test_metrics[name]["average_precision"])
    plots.pr_curves_png(curves, "precision-recall")
    plots.calibration_png(scores, y_test)
    bundle.reference_profile = drift.profile(split.train, NUMERIC_FEATURES)
    bundle.reference_profile["score"] = drift.profile(split.test.assign(score=scores), ["score"])[
        "score"
    ]
    bundle.metrics = {"test": test_metrics}
    bundle.lineage = {"training_batches": batches, "split": split.describe()}
    bundle.save(lh)
    lh.set_champion({"version": bundle.version})
    for batch in batches:
        score_batch(lh, batch, bundle)
    table = aggregate_metrics(lh, {bundle.version: bundle})
    con = duckdb.connect(os.path.join(workdir, "warehouse.duckdb"))
    try:
        con.execute(create_table_sql("FRAUD_MODEL_METRICS"))
        con.register("staging", table)
        con.execute(merge_sql("FRAUD_MODEL_METRICS", "staging"))
    finally:
        con.close()
    return {
        "seconds": time.perf_counter() - started,
        "test_metrics": test_metrics,
        "lightgbm_baseline": tuned.describe(),
        "test_scores": {
            "claim_id": split.test["claim_id"].to_numpy(),
            "model": scores,
            "lightgbm": baseline,
        },
        "epochs": [f.epochs_run for f in fits],
    }


def child(mode: str, claims: int, max_epochs: int, seed: int) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix=f"bench-{mode}-")
    try:
        truth = _land(workdir, claims, seed)
        result = (_orchestrated if mode == "orchestrated" else _direct)(workdir, max_epochs, seed)
        result["by_scenario"] = _scenario_quality(result.pop("test_scores"), truth)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["peak_rss_mb"] = peak_rss_mb()
    result["claims"] = claims
    return result


# --- parent side: the figures -------------------------------------------------------------------
@functools.cache
def once(mode: str, claims: int, seed: int) -> dict[str, Any]:
    """One pipeline run in a child process (early stopping), made once per benchmark process:
    the ``model_quality`` slot reads the runs this slot made (a failed run is not cached)."""
    args = ["child", mode, str(claims), str(EARLY_STOPPING), str(seed)]
    return run_child("bench.pipeline", args, env={"USERNAME": os.environ.get("USERNAME", "bench")})


SCALING_FIGURES = ("pipeline_scaling_time_exponent", "pipeline_scaling_memory_exponent")


def _scaling_figures(sizes: list[int], scaling: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exponents of log-log fits of time and peak memory against the number of claims."""
    x = np.log(np.array(sizes, dtype=float))
    time_exp = float(np.polyfit(x, np.log([s["seconds"] for s in scaling]), 1)[0])
    mem_exp = float(np.polyfit(x, np.log([s["peak_rss_mb"] for s in scaling]), 1)[0])
    points = "; ".join(
        f"{n:,}: {s['seconds']:.1f} s, {s['peak_rss_mb']:.0f} MB, epochs {s['epochs']}"
        for n, s in zip(sizes, scaling, strict=True)
    )
    return [
        figure(SCALING_FIGURES[0], [time_exp], "", goal="<= 1.1", notes=points),
        figure(SCALING_FIGURES[1], [mem_exp], "", goal="<= 1.1", notes=points),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    size = SIZES[quick]
    sizes = [20_000, 30_000, 45_000] if quick else [100_000, 1_000_000, 3_000_000]
    orchestrated = once("orchestrated", size, SEED)
    direct = once("direct", size, SEED)
    breakdown = ", ".join(f"{k} {v:.1f}s" for k, v in list(orchestrated["assets"].items())[:8])
    jobs = ", ".join(f"{k} {v:.1f}s" for k, v in orchestrated["jobs"].items())
    figures = [
        figure(
            "pipeline_overhead",
            [orchestrated["seconds"] / direct["seconds"]],
            "x",
            goal="<= 1.2",
            anchor=f"direct fraud_core calls: {direct['seconds']:.1f} s",
            notes=f"{size:,} claims, {BATCHES} files, side by side in one benchmark run; "
            f"epochs per candidate: orchestrated {orchestrated['epochs']}, direct "
            f"{direct['epochs']} (early stopping on validation AP)",
        ),
        figure(
            "pipeline_wall",
            [orchestrated["seconds"]],
            "s",
            notes=f"{size:,} claims through Dagster + Metaflow; jobs: {jobs}; "
            f"slowest steps: {breakdown}",
        ),
        figure(
            "peak_memory",
            [orchestrated["peak_rss_mb"]],
            "MB",
            goal="<= 4096",
            notes=f"largest single process, {size:,}-claim orchestrated pipeline "
            f"(direct path: {direct['peak_rss_mb']:.0f} MB)",
        ),
    ]
    # The overhead run above is the scaling point of its size: not run twice. A size whose run
    # fails (the gate refusing its model stops the graph) fails the scaling figures only.
    try:
        scaling = [orchestrated if n == size else once("orchestrated", n, SEED) for n in sizes]
        figures += _scaling_figures(sizes, scaling)
    except RuntimeError as exc:
        figures += [failed(name, exc) for name in SCALING_FIGURES]
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child")
    c.add_argument("mode", choices=["orchestrated", "direct"])
    c.add_argument("claims", type=int)
    c.add_argument("max_epochs", type=int)
    c.add_argument("seed", type=int)
    r = sub.add_parser("run")
    r.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.cmd == "child":
        print(json.dumps(child(args.mode, args.claims, args.max_epochs, args.seed), default=str))
    else:
        print(json.dumps(run(args.quick), indent=2, default=str))
