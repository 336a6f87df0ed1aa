"""The scoring API under load: /v1/score against the framework's ceiling, batches, forward paths.

``python bench/serve.py [--quick] [--out FILE]`` (or ``make bench-serve``) prints JSON figures.

Set-up: a temporary lakehouse with simulated claims (30,000 quick, 200,000 full) and a champion
trained on them; uvicorn with uvloop + httptools, one worker, pinned to CPU 0; wrk
(``bench/serve_wrk.lua``) pinned to CPU 1 with 32 connections and a bounded number of requests
(2,000 quick, 20,000 full per run; 3 runs). httpx is not used as a load generator: it
measures itself here (STACK_NOTES). wrk is installed with apt-get when missing.

Measured in the same server, run after run (alternating): ``POST /v1/score`` with the example
claim (validation, auth, history features, forward + attribution, top 3 features, metrics)
and ``POST /v1/echo``, the framework's ceiling: the same body parsed into the same ``Claim``
by the same function, behind the same key check and middleware, answering a constant. Goals:
/v1/score at least 0.8x the ceiling's throughput and p99 at most 15 ms. Beside them,
``POST /v1/echo-fastapi``: the claim as a FastAPI body parameter (what /v1/score and its
ceiling cost before the hot path was written by hand), as an anchor. Also batch throughput
(claims/s) with 1,000-claim batches, and, in this process, the forward pass of the champion
network four ways (eager torch, frozen TorchScript, vectorised numpy, the numba kernel
/v1/score uses) and the whole per-claim path (ClaimScorer.score_one vs the pandas + DuckDB +
torch path it replaced).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import figure  # noqa: E402
from fraud_cli.servers import scoring_api  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "serve_wrk.lua"
API_KEY = "bench-key-" + "0123456789abcdef"
CONNECTIONS = 32
SERVER_CPU, CLIENT_CPU = 0, 1


# --- set-up -----------------------------------------------------------------------------------
def ensure_wrk() -> str:
    """Path of wrk, installing the Debian package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    install = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(install, check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is missing and apt-get could not install it: apt-get install wrk")
    return found


def build_lakehouse(root: Path, n_claims: int) -> list[dict[str, Any]]:
    """Simulated raw batches and a trained champion in ``root``; returns the last day's claims
    (as API records) for batch requests."""
    from fraud_core.claim_versions import as_raw
    from fraud_core.lakehouse import Lakehouse
    from fraud_core.layout import RAW
    from fraud_core.model.bundle import ModelBundle
    from fraud_core.model.calibration import fit_platt
    from fraud_core.model.train import ensemble_of, fit
    from fraud_core.pipeline import featurize_batch
    from fraud_core.schema import INPUT_COLUMNS, coerce_claims
    from fraud_core.simulate import SimulationConfig, simulate_claims, split_into_batches
    from fraud_core.training import load_labelled_features, time_split
    from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings, train_config

    claims = simulate_claims(SimulationConfig(n_claims=n_claims, seed=2026))
    lh = Lakehouse(str(root))
    batches = [f"b{i}" for i in range(4)]
    for batch_id, batch in zip(batches, split_into_batches(claims, 4), strict=True):
        lh.write_batch(RAW, batch_id, as_raw(coerce_claims(batch).frame))
    for batch_id in batches:
        featurize_batch(lh, batch_id)
    split = time_split(load_labelled_features(lh), 0.2, 0.2)
    # The network the flow's default config trains (its encoding and ensemble), few epochs.
    with open(DEFAULT_CONFIG) as fh:
        settings = parse_settings(fh.read())
    # (on the labels alone: what the network was trained towards costs nothing to serve)
    fits = [
        fit(
            split.train,
            split.val,
            dataclasses.replace(
                train_config(settings["training"], point, 0, 4), distill_weight=0.0
            ),
            threads=1,
        )
        for point in settings["grid"]
    ]
    net, _ = ensemble_of(
        [f.net for f in fits], [f.best_val_ap for f in fits], settings["training"]["ensemble"]
    )
    vocabulary = fits[0].vocabulary
    candidate = ModelBundle(net, vocabulary, (1.0, 0.0), 0.5, "candidate")
    calibration = fit_platt(candidate.logits(split.val), split.val["is_fraud"].to_numpy(bool))
    bundle = ModelBundle(
        net,
        vocabulary,
        calibration,
        threshold=0.05,
        version="fm-bench",
        lineage={"training_batches": batches},
    )
    bundle.save(lh)
    lh.set_champion({"version": bundle.version})
    typed = coerce_claims(claims).frame
    last = typed.sort_values("claim_date", kind="stable").tail(1000)
    records = last[list(INPUT_COLUMNS)].astype(object).to_dict("records")
    return [
        {k: (v.date().isoformat() if hasattr(v, "date") else v) for k, v in r.items()}
        | {"claim_id": f"BATCH-{i}"}
        for i, r in enumerate(records)
    ]


def _pin(cpu: int) -> list[str]:
    return (
        ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
    )


@contextlib.contextmanager
def server(lakehouse: Path, log_path: Path) -> Iterator[int]:
    """uvicorn (1 worker, uvloop + httptools) pinned to SERVER_CPU; yields its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    env.update(
        LAKEHOUSE_URI=str(lakehouse),
        FRAUD_API_KEYS=API_KEY,
        FRAUD_API_BENCH_ECHO="true",
        FRAUD_API_POLL_SECONDS="0",
        FRAUD_API_TORCH_THREADS="1",
    )
    options = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")
    with scoring_api(
        env,
        log_path,
        uvicorn_args=(*options, "--log-level", "warning"),
        prefix=tuple(_pin(SERVER_CPU)),
    ) as url:
        yield int(url.rsplit(":", 1)[1])


def wrk(
    wrk_bin: str, port: int, path: str, body_file: Path, requests: int, connections: int
) -> dict[str, Any]:
    """One bounded wrk run (pinned to CLIENT_CPU): its JSON report plus ``rps``."""
    env = {
        **os.environ,
        "WRK_BODY_FILE": str(body_file),
        "WRK_API_KEY": API_KEY,
        "WRK_REQUESTS": str(requests),
    }
    command = [
        *_pin(CLIENT_CPU),
        wrk_bin,
        "-t1",
        f"-c{connections}",
        "-d300s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, check=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no report:\n{out.stdout}\n{out.stderr}")
    report: dict[str, Any] = json.loads(lines[-1])
    report["rps"] = report["requests"] / (report["duration_us"] / 1e6)
    failed = sum(report["errors"].values())
    if failed:
        raise RuntimeError(f"{path}: {failed} failed requests under load: {report['errors']}")
    return report


def claims_per_pass(port: int) -> tuple[float, float]:
    """``(sum, count)`` of ``fraud_api_score_pass_claims``: single claims scored per pass of
    the server's event loop so far (serving/core/batching.py)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("fraud_api_score_pass_claims_sum", "fraud_api_score_pass_claims_count"):
            values[name] = float(value)
    return values["fraud_api_score_pass_claims_sum"], values["fraud_api_score_pass_claims_count"]


# --- in-process measurements ------------------------------------------------------------------
def _per_call_us(fn: Callable[[], Any], number: int, repeat: int = 5) -> list[float]:
    fn()
    return [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=repeat)]


def forward_figures(lakehouse: Path, quick: bool) -> list[dict[str, Any]]:
    """The champion's forward pass four ways, and the whole per-claim path two ways."""
    import numpy as np
    import torch

    from fraud_core.features import build_features
    from fraud_core.lakehouse import Lakehouse
    from fraud_core.layout import RAW
    from fraud_core.model.fast import NumpyForward
    from fraud_core.model.train import encode
    from fraud_core.schema import claims_frame
    from fraud_core.scoring import ClaimScorer
    from serving.api.models import Claim, load_example

    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    torch.set_num_threads(1)
    lh = Lakehouse(str(lakehouse))
    scorer = ClaimScorer.from_lakehouse(lh)
    net = scorer.bundle.net.eval()
    history = lh.read_batches(RAW)
    sample = history.sample(1000, random_state=0).drop(columns="batch_id").reset_index(drop=True)
    sample["claim_id"] = "F-" + sample["claim_id"].astype(str)
    numeric, codes = encode(build_features(sample, history), scorer.bundle.vocabulary)
    fast = NumpyForward.from_bundle(scorer.bundle)
    with torch.inference_mode():
        # traced, not scripted: the modules use postponed annotations, which script rejects
        traced = torch.jit.trace(net, (numeric[:1], codes[:1]))
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        scripted(numeric[:1], codes[:1])
    n1, c1 = numeric[:1], codes[:1]
    n1_np, c1_np = n1.numpy(), c1.numpy()
    row, row_codes = n1_np[0].astype(float).tolist(), c1_np[0].tolist()
    nk_np, ck_np = numeric.numpy(), codes.numpy()
    if not np.allclose(
        fast.logits(nk_np, ck_np), scripted(numeric, codes).detach().numpy(), atol=1e-4
    ):
        raise AssertionError("numpy and TorchScript forward passes disagree: not comparable")

    def eager(x: Any, c: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return net(x, c)

        return call

    def script(x: Any, c: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return scripted(x, c)

        return call

    number = 500 if quick else 3000
    one = {
        "eager torch": _per_call_us(eager(n1, c1), number),
        "TorchScript (frozen)": _per_call_us(script(n1, c1), number),
        "numpy": _per_call_us(lambda: fast.logits(n1_np, c1_np), number),
        "numpy + attribution": _per_call_us(lambda: fast.explain(n1_np, c1_np), number),
        "numba kernel": _per_call_us(lambda: fast.logit_one(row, row_codes), number),
        "numba kernel + attribution": _per_call_us(
            lambda: fast.explain_one(row, row_codes), number
        ),
    }
    thousand = {
        "eager torch": _per_call_us(eager(numeric, codes), number // 20),
        "TorchScript (frozen)": _per_call_us(script(numeric, codes), number // 20),
        "numpy": _per_call_us(lambda: fast.logits(nk_np, ck_np), number // 20),
        "numpy + attribution": _per_call_us(lambda: fast.explain(nk_np, ck_np), number // 20),
    }
    figures = []
    for label, runs in one.items():
        slug = label.split(" (")[0].replace(" + ", "_").replace(" ", "_").lower()
        figures.append(
            figure(
                f"forward_1_claim_{slug}",
                runs,
                "us",
                anchor=f"eager torch {statistics.median(one['eager torch']):.1f} us",
                notes=f"champion network, 1 row, 1 thread; medians of 5 x {number} calls. "
                + (
                    f"1,000 rows: {statistics.median(thousand[label]):.0f} us"
                    if label in thousand
                    else "One claim at a time only (the API's /v1/score path)."
                ),
                warmup=1,
            )
        )
    example = Claim.model_validate(load_example())
    record = vars(example)
    frame = claims_frame([example.model_dump()])
    fast_path = _per_call_us(lambda: scorer.score_one(record, top_k=3), number)
    pandas_path = _per_call_us(lambda: scorer.score(frame), max(number // 20, 20))
    figures.append(
        figure(
            "claim_fast_path",
            fast_path,
            "us",
            anchor=f"pandas + DuckDB + torch path: {statistics.median(pandas_path):,.0f} us",
            notes="one validated claim to score + top 3 features by gradient x input: history "
            "windows from the scorer's index and the network, both compiled kernels "
            "(ClaimScorer.score_one), vs ClaimScorer.score (claims_frame, build_features on "
            "the window's history in DuckDB, torch)",
            warmup=1,
        )
    )
    return figures


# --- the run ----------------------------------------------------------------------------------
def run(quick: bool) -> list[dict[str, Any]]:
    """Every figure of this benchmark (see the module docstring)."""
    from serving.api.models import load_example

    wrk_bin = ensure_wrk()
    requests = 2_000 if quick else 20_000
    runs = 3  # alternating echo / score pairs: the median pair resists a noisy neighbour
    batches = 10 if quick else 40
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmpdir = Path(tmp)
        lakehouse = tmpdir / "lakehouse"
        batch_records = build_lakehouse(lakehouse, 30_000 if quick else 200_000)
        one_file = tmpdir / "claim.json"
        one_file.write_text(json.dumps(load_example()))
        batch_file = tmpdir / "batch.json"
        batch_file.write_text(json.dumps({"claims": batch_records}))
        figures = forward_figures(lakehouse, quick)
        score_runs: list[dict[str, Any]] = []
        echo_runs: list[dict[str, Any]] = []
        fastapi_runs: list[dict[str, Any]] = []
        with server(lakehouse, tmpdir / "uvicorn.log") as port:
            for path in ("/v1/echo", "/v1/echo-fastapi", "/v1/score"):  # warm-up: not measured
                wrk(wrk_bin, port, path, one_file, max(requests // 4, 500), CONNECTIONS)
            before = claims_per_pass(port)
            for _ in range(runs):
                echo_runs.append(wrk(wrk_bin, port, "/v1/echo", one_file, requests, CONNECTIONS))
                score_runs.append(wrk(wrk_bin, port, "/v1/score", one_file, requests, CONNECTIONS))
                fastapi_runs.append(
                    wrk(wrk_bin, port, "/v1/echo-fastapi", one_file, requests, CONNECTIONS)
                )
            after = claims_per_pass(port)
            # One caller at a time (a claims system filing one claim): latency, not throughput.
            alone = {
                path: wrk(wrk_bin, port, path, one_file, requests // 4, 1)
                for path in ("/v1/echo", "/v1/score")
            }
            wrk(wrk_bin, port, "/v1/score/batch", batch_file, 2, 2)  # warm-up
            batch_runs = [
                wrk(wrk_bin, port, "/v1/score/batch", batch_file, batches, 2) for _ in range(runs)
            ]
    setup = (
        f"uvicorn 1 worker (uvloop + httptools) on CPU {SERVER_CPU}, wrk -t1 -c{CONNECTIONS} on "
        f"CPU {CLIENT_CPU}, {requests:,} requests per run, runs alternate"
    )
    echo_rps = statistics.median(r["rps"] for r in echo_runs)
    echo_p50 = statistics.median(r["p50_us"] for r in echo_runs) / 1000
    echo_p99 = statistics.median(r["p99_us"] for r in echo_runs) / 1000
    fastapi_rps = statistics.median(r["rps"] for r in fastapi_runs)
    per_pass = (after[0] - before[0]) / max(after[1] - before[1], 1)
    figures += [
        figure(
            "score_throughput",
            [r["rps"] for r in score_runs],
            "req/s",
            anchor=f"ceiling (/v1/echo, same body and auth): {echo_rps:,.0f} req/s",
            notes=f"POST /v1/score, example claim, top 3 features; {setup}; "
            f"{per_pass:.1f} claims scored per pass of the event loop on average",
            warmup=1,
        ),
        figure(
            "score_vs_ceiling",
            [s["rps"] / e["rps"] for s, e in zip(score_runs, echo_runs, strict=True)],
            "x",
            goal=">= 0.8",
            anchor=f"/v1/echo {echo_rps:,.0f} req/s",
            notes="throughput of /v1/score over /v1/echo, each pair measured back to back",
            warmup=1,
        ),
        figure(
            "score_p50",
            [r["p50_us"] / 1000 for r in score_runs],
            "ms",
            anchor=f"/v1/echo p50 {echo_p50:.2f} ms",
            notes=setup,
            warmup=1,
        ),
        figure(
            "score_p99",
            [r["p99_us"] / 1000 for r in score_runs],
            "ms",
            goal="<= 15",
            anchor=f"/v1/echo p99 {echo_p99:.2f} ms",
            notes=f"{setup}; max {max(r['max_us'] for r in score_runs) / 1000:.1f} ms",
            warmup=1,
        ),
        figure(
            "score_p50_one_connection",
            [alone["/v1/score"]["p50_us"] / 1000],
            "ms",
            anchor=f"/v1/echo {alone['/v1/echo']['p50_us'] / 1000:.3f} ms",
            notes=f"one connection, {requests // 4:,} requests one after another (a pass of the "
            "event loop holds one claim: micro-batching adds a pass); p99 "
            f"{alone['/v1/score']['p99_us'] / 1000:.3f} ms (/v1/echo "
            f"{alone['/v1/echo']['p99_us'] / 1000:.3f} ms)",
        ),
        figure(
            "echo_throughput",
            [r["rps"] for r in echo_runs],
            "req/s",
            anchor="STACK_NOTES: ~7,200 req/s parsing a 30-field body on an idle machine",
            notes="the framework's ceiling: POST /v1/echo parses the same Claim, answers a "
            "constant",
            warmup=1,
        ),
        figure(
            "echo_fastapi_throughput",
            [r["rps"] for r in fastapi_runs],
            "req/s",
            anchor=f"/v1/echo (the hand-written read of the same claim): {echo_rps:,.0f} req/s",
            notes="POST /v1/echo-fastapi: the same claim as a FastAPI body parameter and a "
            "response_model; p99 "
            f"{statistics.median(r['p99_us'] for r in fastapi_runs) / 1000:.2f} ms",
            warmup=1,
        ),
        figure(
            "score_vs_fastapi_body",
            [s["rps"] / f["rps"] for s, f in zip(score_runs, fastapi_runs, strict=True)],
            "x",
            anchor=f"/v1/echo-fastapi {fastapi_rps:,.0f} req/s",
            notes="throughput of /v1/score (scoring included) over an endpoint that only "
            "parses the claim the FastAPI way: above 1 when the hand-written path saves more "
            "than scoring costs",
            warmup=1,
        ),
        figure(
            "batch_throughput",
            [r["rps"] * len(batch_records) for r in batch_runs],
            "claims/s",
            anchor=f"single claims: {statistics.median(r['rps'] for r in score_runs):,.0f} "
            "claims/s",
            notes=f"POST /v1/score/batch with {len(batch_records):,} claims of one day "
            f"(validation, features, scores; no attribution), {batches} batches per run over "
            f"2 connections; p50 {statistics.median(r['p50_us'] for r in batch_runs) / 1000:.0f}"
            " ms per batch",
            warmup=1,
        ),
    ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2,000 requests per run (20,000 without)"
    )
    parser.add_argument("--out", help="also write the JSON figures to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("USERNAME", "fraud-bench")
    figures = run(args.quick)
    text = json.dumps(figures, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
