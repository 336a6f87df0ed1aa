"""The asset graph materialized in this process, recorded in the Dagster instance of
``DAGSTER_HOME``: the whole cycle (``fraud materialize``), or a selection."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from fraud_cli.materialize import EXIT_FAILED
from fraud_cli.materialize.plan import (
    ASSET_JOB,
    AssetInfo,
    load_run_config,
    plan_selection,
    run_tags,
    split_tokens,
)
from fraud_cli.orchestrate import QUIET, Ingestion, Orchestrator, ensure_dagster_home


def local_orchestrator() -> Orchestrator:
    """The Orchestrator on ``DAGSTER_HOME`` (default ``./.dagster_home``, created), printing
    each step."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = ensure_dagster_home(
        env.get("DAGSTER_HOME") or os.path.abspath(".dagster_home")
    )
    return Orchestrator(env, on_step=lambda label: print(f"- {label}", flush=True))


def ingest(orchestrator: Orchestrator) -> Ingestion:
    """Ingest every new landing file (the landing sensor decides which)."""
    ingestion = orchestrator.ingest_new_files()
    print(f"ingested {len(ingestion.ingested)} new landing file(s)")
    return ingestion


def ingestion_exit_code(ingestion: Ingestion) -> int:
    """1, listing each failed batch with its reason, when a landing file failed; else 0."""
    if ingestion.failed:
        print(ingestion.failure_report(), file=sys.stderr)
        return 1
    return 0


def run_cycle(train: bool = True, seed: int = 0) -> int:
    """Ingest new landing files, (re)train, score every batch and report (``fraud materialize``).

    A landing file that fails to ingest does not stop the cycle: it runs without it, then the
    exit code is 1 with each failed batch listed.
    """
    orchestrator = local_orchestrator()
    ingestion = ingest(orchestrator)
    if train:
        outcome = orchestrator.train(seed=seed)
        print(
            f"model gate: {'passed' if outcome['gate_passed'] else 'FAILED'}: "
            f"{outcome['gate_description']}"
        )
        orchestrator.score(orchestrator.batches())
    if orchestrator.scored_batches():
        orchestrator.report()
        print("materialized; `make ui` shows the runs")
    else:
        print(
            "nothing scored yet: there is no champion model, so model_metrics and the "
            "warehouse are not refreshed; train one with `fraud materialize` (without "
            "--no-train); `make ui` shows the runs"
        )
    return ingestion_exit_code(ingestion)


def materialize_in_process(args: argparse.Namespace) -> int:
    """Run the selection here (none: the whole cycle)."""
    if not split_tokens(args.selection):
        print("no MATERIALIZE_SELECTION: running the whole cycle (fraud materialize)")
        return run_cycle()

    import dagster as dg

    orchestrator = local_orchestrator()
    if split_tokens(args.selection) == ["ingest_batch"] and not split_tokens(args.partitions):
        return ingestion_exit_code(ingest(orchestrator))
    defs = orchestrator.defs
    job_defs = [j for j in defs.resolve_all_job_defs() if j.name != ASSET_JOB]
    graph = defs.resolve_asset_graph()
    batches = orchestrator.batches()
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
    home = orchestrator.env["DAGSTER_HOME"]
    print(f"materializing {plan.describe()} in-process (DAGSTER_HOME={home})")
    for partition in plan.partitions:
        result = job.execute_in_process(
            instance=orchestrator.instance,
            partition_key=partition,
            asset_selection=selection,
            run_config=run_config,
            tags=run_tags(),
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
