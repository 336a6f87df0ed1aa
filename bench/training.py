"""Training benchmarks: the parallel search and the cost of training inside the flow.

search_speedup       4 candidates, FraudTrainingFlow with 2 workers vs 1 worker: wall time of
                     the search (the foreach's branches), same data, same fixed epochs;
                     goal <= 0.6. flow_run_speedup: the same for the whole run.
training_throughput  rows/s of fit()'s training epochs inside the flow's train step vs a bare
                     torch loop on the same tensors, same network, batch size, epochs and
                     threads; goal >= 0.9. Both sides report the median epoch with the first
                     (warm-up) epoch excluded; the whole fit() wall time, validation and
                     process warm-up included, is quoted beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

from bench.common import figure
from fraud_assets.resources.training import MetaflowTraining
from fraud_core.claim_versions import as_raw
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.pipeline import featurize_batch
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims, split_into_batches
from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings

EPOCHS = 3
BARE_HIDDEN = [64, 32]  # the network of the bare loop


def _lakehouse(root: str, claims: int) -> Lakehouse:
    lh = Lakehouse(root)
    frame = simulate_claims(SimulationConfig(n_claims=claims, seed=20_262))
    for i, batch in enumerate(split_into_batches(frame, 3)):
        lh.write_batch(RAW, f"b{i}", as_raw(coerce_claims(batch).frame))
    for i in range(3):
        featurize_batch(lh, f"b{i}")
    return lh


def _config(root: str, workers: int) -> str:
    with open(DEFAULT_CONFIG) as fh:
        config = json.load(fh)
    config["search"] = {
        "hidden": [[64, 32], [128, 64]],
        "dropout": [0.1],
        "lr": [0.003, 0.001],
        "batch_size": [2048],
    }
    config["max_workers"] = workers
    config["training"]["patience"] = EPOCHS + 1  # every candidate runs exactly EPOCHS epochs
    path = os.path.join(root, f"search-{workers}.json")
    with open(path, "w") as fh:
        json.dump(config, fh)
    return path


def _flow_run(root: str, lh: Lakehouse, workers: int) -> tuple[float, float, list[Any]]:
    """Wall time of the whole run, of its search (first branch start to last branch end), and
    its train tasks (read through the Client API)."""
    from metaflow import Run, namespace

    datastore = os.path.join(root, f"mf{workers}")
    training = MetaflowTraining(datastore_root=datastore, config_file=_config(root, workers))
    started = time.perf_counter()
    result = training.train(lh.uri, [], seed=0, max_epochs=EPOCHS)
    seconds = time.perf_counter() - started
    os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = datastore
    namespace(None)
    tasks = list(Run(result.pathspec)["train"].tasks())
    search = max(t.data.finished_at for t in tasks) - min(t.data.started_at for t in tasks)
    return seconds, search, tasks


def _steady_rate(rows: int, epoch_seconds: list[float]) -> float:
    """rows/s of the median epoch, the first (warm-up) epoch excluded when there are others."""
    steady = epoch_seconds[1:] or epoch_seconds
    return rows / float(np.median(steady))


def _bare_loops(uri: str, threads: int, side_by_side: int) -> list[float]:
    """:func:`_bare_loop` in ``side_by_side`` processes at once, as the flow runs its branches
    (so both sides share the cores the same way, and the ratio is the flow's own cost)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(side_by_side, mp_context=context) as pool:
        runs = [pool.submit(_bare_loop, uri, threads) for _ in range(side_by_side)]
        return [r.result() for r in runs]


def _bare_loop(uri: str, threads: int) -> float:
    """rows/s of the plainest loop over the same tensors (no validation, no early stopping),
    training the same network with the same loss as the flow's default config (its
    piecewise-linear encoding and directional penalty)."""
    from fraud_core.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from fraud_core.model.network import FraudNet, NetConfig
    from fraud_core.model.preprocessing import Vocabulary
    from fraud_core.model.train import direction_violation, encode
    from fraud_core.training import load_labelled_features, time_split

    with open(DEFAULT_CONFIG) as fh:
        knobs = parse_settings(fh.read())["training"]

    split = time_split(load_labelled_features(Lakehouse(uri)), 0.15, 0.15)
    vocab = Vocabulary.fit(split.train, CATEGORICAL_FEATURES)
    x_num, x_cat = encode(split.train, vocab)
    y = torch.from_numpy(split.train["is_fraud"].to_numpy(dtype=np.float32))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cardinalities = [len(v) for v in vocab.values.values()]
    bins, penalty = knobs["piecewise_bins"], knobs["direction_penalty"]
    net = FraudNet(
        NetConfig(list(NUMERIC_FEATURES), cardinalities, BARE_HIDDEN, piecewise_bins=bins)
    )
    net.standardize.fit(x_num)
    if net.piecewise is not None:
        net.piecewise.fit(x_num, y.numpy().astype(bool))
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.003)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(EPOCHS):
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(0, len(y), 2048):
            idx = order[i : i + 2048]
            optimizer.zero_grad(set_to_none=True)
            logits = net(x_num[idx], x_cat[idx])
            loss = loss_fn(logits, y[idx])
            if penalty:
                violation = direction_violation(net, x_num[idx], x_cat[idx], logits, generator)
                loss = loss + penalty * violation
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return _steady_rate(len(y), seconds)


def run(quick: bool) -> list[dict[str, Any]]:
    claims = 30_000 if quick else 300_000
    root = tempfile.mkdtemp(prefix="bench-training-")
    try:
        lh = _lakehouse(os.path.join(root, "lake"), claims)
        one, search_one, _ = _flow_run(root, lh, workers=1)
        two, search_two, tasks = _flow_run(root, lh, workers=2)
        # The bare loop trains the [64, 32] network: compare with the branches that did too
        # (the grid's [128, 64] branches do twice the arithmetic per row).
        same_net = [t for t in tasks if list(t.data.hparams["hidden"]) == BARE_HIDDEN]
        in_flow = [
            _steady_rate(t.data.train_rows, [e["train_seconds"] for e in t.data.learning_curve])
            for t in same_net
        ]
        whole_fit = [t.data.train_rows * t.data.epochs_run / t.data.fit_seconds for t in same_net]
        threads = tasks[0].data.threads_per_branch
        workers = min(2, len(tasks))  # the 2-worker run's branches ran two at a time
        bare_runs = _bare_loops(lh.uri, threads, workers)
        bare = float(np.median(bare_runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = float(np.median(in_flow)) / bare
    return [
        figure(
            "search_speedup",
            [search_two / search_one],
            "x",
            goal="<= 0.6",
            anchor=f"search with 1 worker: {search_one:.1f} s, 2 workers: {search_two:.1f} s",
            notes=f"4 candidates, {claims:,} claims, {EPOCHS} epochs each; the foreach from its "
            "first branch's start to its last branch's end (train tasks' started_at / "
            "finished_at artifacts)",
        ),
        figure(
            "flow_run_speedup",
            [two / one],
            "x",
            anchor=f"whole run with 1 worker: {one:.1f} s, 2 workers: {two:.1f} s",
            notes="the same runs end to end: start, join, evaluate (LightGBM baseline) and "
            "register run once whatever the workers",
        ),
        figure(
            "training_throughput",
            [ratio],
            "x",
            goal=">= 0.9",
            anchor=f"bare torch loop: {bare:,.0f} rows/s ({threads} thread(s), {workers} "
            "processes side by side like the branches)",
            notes=f"in the flow: {np.median(in_flow):,.0f} rows/s per branch, median epoch after "
            f"the warm-up epoch, the {len(in_flow)} branches with the same {BARE_HIDDEN} "
            f"network (the {len(tasks)} ran two at a time); whole fit() incl. encoding, "
            f"per-epoch validation and process warm-up: {np.median(whole_fit):,.0f} rows/s",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
