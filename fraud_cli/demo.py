"""``fraud demo``: land simulated claims and materialize the whole asset graph in-process.

It runs the same Definitions, sensor and jobs as ``dagster dev`` and records into the same
Dagster instance (``DAGSTER_HOME``), so ``make ui`` afterwards shows every materialization.

Order: land the first batches -> the landing sensor adds their partitions -> ingest runs
(validate, quarantine, featurize) -> train_model (Metaflow flow, gate, champion) -> land the
remaining batches -> ingest runs score them with the champion -> earlier batches are scored ->
metrics and the warehouse replica.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from fraud_cli.orchestrate import Orchestrator, ensure_dagster_home
from fraud_core.layout import DEFAULT_LAKEHOUSE_DIR

GENERATED = (DEFAULT_LAKEHOUSE_DIR, ".warehouse", ".dagster_home", ".metaflow")


@dataclass(frozen=True)
class DemoOptions:
    claims: int = 120_000
    batches: int = 6
    initial_batches: int = 4
    bad_fraction: float = 0.003
    drift: float = 0.0
    seed: int = 7
    workdir: str = "."
    max_epochs: int = 0


@dataclass
class DemoSummary:
    """What the demo produced, rendered for a person."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        return "\n".join(self.lines)


def _prepare(options: DemoOptions) -> dict[str, str]:
    """Fresh demo folders and the environment the Definitions and the instance read."""
    workdir = os.path.abspath(options.workdir)
    os.makedirs(workdir, exist_ok=True)
    for name in GENERATED:
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    env = dict(os.environ)
    env.setdefault("USERNAME", "fraud-demo")
    os.environ.setdefault("USERNAME", env["USERNAME"])
    env["LAKEHOUSE_URI"] = os.path.join(workdir, DEFAULT_LAKEHOUSE_DIR)
    env["DUCKDB_PATH"] = os.path.join(workdir, ".warehouse", "fraud.duckdb")
    env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = workdir
    if options.drift > 0:
        # Only two batches arrive after training in the demo: retrain on the first that drifts.
        env.setdefault("FRAUD_DRIFT_BATCHES", "1")
    env["DAGSTER_HOME"] = ensure_dagster_home(
        env.get("DAGSTER_HOME") or os.path.join(workdir, ".dagster_home")
    )
    return env


def run_demo(options: DemoOptions) -> DemoSummary:
    """Simulate, land, materialize everything, and summarise."""
    if not 0 < options.initial_batches < options.batches:
        raise ValueError("initial_batches must be at least 1 and fewer than batches")
    env = _prepare(options)
    from fraud_core.simulate import (
        SimulationConfig,
        inject_bad_rows,
        simulate_claims,
        split_into_batches,
        write_landing_files,
    )

    total = (
        options.batches
        + options.initial_batches
        + 2
        + (options.batches + 2 if options.drift else 0)
    )
    steps = tqdm(total=total, desc="demo", unit="step")

    def step(label: str) -> None:
        steps.set_postfix_str(label)
        steps.update(1)

    orchestrator = Orchestrator(env, on_step=step)
    landing_path = orchestrator.defs.resources["landing"].path
    claims = simulate_claims(
        SimulationConfig(n_claims=options.claims, seed=options.seed, drift=options.drift)
    )
    claims = inject_bad_rows(claims, options.bad_fraction, seed=options.seed)
    batches = split_into_batches(claims, options.batches)
    first, rest = batches[: options.initial_batches], batches[options.initial_batches :]

    write_landing_files(first, landing_path, "mixed", prefix="claims_a")
    ingestion = orchestrator.ingest_new_files()
    gate = orchestrator.train(seed=options.seed, max_epochs=options.max_epochs)
    if not gate["gate_passed"]:
        steps.close()
        return DemoSummary(ok=False, lines=[f"model gate failed: {gate['gate_description']}"])
    write_landing_files(rest, landing_path, "mixed", prefix="claims_b")
    ingestion += orchestrator.ingest_new_files()  # scored by the new champion in the same runs
    orchestrator.score(orchestrator.batches()[: options.initial_batches])
    retrained = None
    if options.drift > 0:
        first_champion = orchestrator.defs.resources["lakehouse"].get().champion()["version"]
        retrained = orchestrator.retrain_on_drift(seed=options.seed, max_epochs=options.max_epochs)
        if retrained and retrained["gate_passed"]:
            orchestrator.score(orchestrator.batches())
        if retrained:
            retrained["replaced"] = first_champion
    orchestrator.report()
    steps.close()
    summary = summarize(
        orchestrator.defs, orchestrator.instance, env, claims_landed=len(claims), files=len(batches)
    )
    if options.drift > 0:
        summary.facts["drift_retraining"] = retrained
        summary.lines.insert(-1, _drift_line(retrained))
    if ingestion.failed:
        summary.ok = False
        summary.lines.append(ingestion.failure_report())
    return summary


def _drift_line(retrained: dict[str, Any] | None) -> str:
    if retrained is None:
        return "drift: no persistent drift, no retraining requested"
    verdict = (
        "promoted"
        if retrained["gate_passed"]
        else f"not promoted ({retrained['gate_description']})"
    )
    return (
        f"drift: batches {retrained['drifting_batches']} drifted from champion "
        f"{retrained['replaced']}; the drift sensor retrained: new model {verdict}"
    )


def summarize(
    defs: Any, instance: Any, env: dict[str, str], claims_landed: int, files: int
) -> DemoSummary:
    """Read back what the graph produced and say it plainly."""
    import dagster as dg
    import duckdb

    from fraud_core.lakehouse import Lakehouse
    from fraud_core.layout import CHAMPION_POINTER, METRICS, QUARANTINE, RAW
    from fraud_core.model.bundle import load_champion
    from fraud_core.schema import ID_COLUMN

    lh = Lakehouse(env["LAKEHOUSE_URI"])
    valid = len(lh.read_batches(RAW, columns=[ID_COLUMN]))
    quarantined = lh.read_batches(QUARANTINE)
    champion = load_champion(lh)
    test = champion.metrics["test"]
    model, lgbm, bayes = test["model"], test["lightgbm"], test.get("bayes_optimal", {})
    table = lh.read_table(METRICS)
    batches = table.drop_duplicates(["model_version", "batch_id"])  # rows are per day
    fresh = batches[~batches["in_training_data"] & batches["batch_average_precision"].notna()]
    event = instance.get_latest_materialization_event(dg.AssetKey("fraud_model"))
    meta = event.asset_materialization.metadata if event else {}
    card = meta.get("metaflow_card")
    db = defs.resources["warehouse"]
    con = duckdb.connect(db.database, read_only=True)
    try:
        replica_rows = con.execute(f"SELECT count(*) FROM {db.table}").fetchone()[0]
    finally:
        con.close()
    reasons = (
        quarantined["quarantine_reasons"]
        .str.split("; ")
        .explode()
        .str.split(":")
        .str[0]
        .value_counts()
        .head(4)
    )
    k = model["k"]
    test_period = champion.lineage["split"]["test"]
    bundle_url = lh.url(lh.model_path(champion.version))
    lines = [
        "",
        "=== fraud demo: summary ===",
        f"claims landed      {claims_landed:>9,}  in {files} files (parquet, csv, jsonl)",
        f"validated          {valid:>9,}",
        f"quarantined        {len(quarantined):>9,}  (top reasons: "
        + ", ".join(f"{r} {n}" for r, n in reasons.items())
        + ")",
        f"champion model     {champion.version}  (Metaflow run {champion.lineage['metaflow_run']})",
        f"held-out claims    {model['n']:,} with {model['positives']} frauds "
        f"({test_period['from']} .. {test_period['to']})",
        "                     AP      ROC-AUC  precision@{k:<4} recall@1%FPR".replace(
            "{k:<4}", f"{k:<4}"
        ),
        _row("champion (torch)", model),
        _row("LightGBM (tuned)", lgbm),
    ]
    if bayes:
        lines.append(_row("Bayes-optimal", bayes))
        lines.append(
            f"champion AP is {model['average_precision'] / bayes['average_precision']:.0%} of the "
            f"Bayes-optimal AP and {model['average_precision'] / lgbm['average_precision']:.0%} "
            "of the tuned LightGBM's"
        )
    tuned = champion.metrics.get("lightgbm_baseline")
    if tuned:
        lines.append(
            f"LightGBM: best of {len(tuned['candidates'])} grid points by validation AP "
            f"({', '.join(f'{k} {v}' for k, v in tuned['params'].items())})"
        )
    if len(fresh):
        lines.append(
            f"new batches scored after training: {len(fresh)}, AP "
            + ", ".join(f"{r.batch_id} {r.batch_average_precision:.3f}" for r in fresh.itertuples())
        )
    lines += [
        "",
        "where everything lives:",
        f"  lakehouse        {lh.url('')}",
        "    Delta tables: raw/claims, quarantine/claims, features/claims, outputs/scores "
        "(by batch_id), lineage/batches, metrics/model_metrics",
        f"    champion       {lh.url(CHAMPION_POINTER)} -> {bundle_url}",
        f"    metrics table  {lh.table_url(METRICS)} ({len(table)} rows)",
        f"  warehouse        {db.location()} ({replica_rows} rows)",
        f"  Metaflow         {env['METAFLOW_DATASTORE_SYSROOT_LOCAL']}/.metaflow"
        + (f"; card {card.value}" if card else ""),
        f"  Dagster          {env['DAGSTER_HOME']} (make ui)",
        "next: make serve  (FastAPI on 127.0.0.1:8080), make ui  (Dagster on 127.0.0.1:3000)",
    ]
    return DemoSummary(
        ok=True,
        lines=lines,
        facts={
            "claims_landed": claims_landed,
            "validated": valid,
            "quarantined": len(quarantined),
            "champion_version": champion.version,
            "test": test,
            "replica_rows": replica_rows,
            "metrics_rows": len(table),
        },
    )


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"  {name:<18} {m['average_precision']:.4f}   {m['roc_auc']:.4f}   "
        f"{m['precision_at_k']:.4f}         {m['recall_at_1pct_fpr']:.4f}"
    )
