"""The ``fraud`` command: ``simulate``, ``demo``, ``materialize``, ``deploy-training``,
``model rollback``, ``serve``."""

from __future__ import annotations

import argparse
import os
import sys


def _simulate(args: argparse.Namespace) -> int:
    from fraud_core.simulate import (
        SimulationConfig,
        inject_bad_rows,
        simulate_claims,
        split_into_batches,
        write_landing_files,
    )

    claims = simulate_claims(
        SimulationConfig(
            n_claims=args.claims,
            days=args.days,
            seed=args.seed,
            drift=args.drift,
            label_coverage=args.label_coverage,
            id_prefix=args.id_prefix,
        )
    )
    claims = inject_bad_rows(claims, args.bad_fraction, seed=args.seed)
    paths = write_landing_files(split_into_batches(claims, args.batches), args.out, args.format)
    fraud_rate = float(claims["is_fraud"].astype("Float64").mean())
    print(f"wrote {len(claims):,} claims (fraud rate {fraud_rate:.2%}) in {len(paths)} files:")
    for path in paths:
        print(f"  {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fraud_cli.demo import DemoOptions, run_demo

    summary = run_demo(
        DemoOptions(
            claims=args.claims,
            batches=args.batches,
            initial_batches=args.initial_batches,
            bad_fraction=args.bad_fraction,
            drift=args.drift,
            seed=args.seed,
            workdir=args.workdir,
            max_epochs=args.max_epochs,
        )
    )
    print(summary.render())
    return 0 if summary.ok else 1


def _materialize(args: argparse.Namespace) -> int:
    from fraud_cli.materialize.in_process import run_cycle

    return run_cycle(train=args.train, seed=args.seed)


def _deploy_training(args: argparse.Namespace) -> int:
    import dagster as dg

    from fraud_assets.definitions import step_functions_training
    from fraud_assets.resources.training import IMAGE_SETTING

    # The resource the fraud_model asset gets in prod (FRAUD_STATE_MACHINE names it).
    env = dict(os.environ)
    if args.state_machine:
        env["FRAUD_STATE_MACHINE"] = args.state_machine
    training = step_functions_training(env)
    try:
        package = training.code_package()  # fails before deploying when the package is short
        name = training.deploy()
    except dg.Failure as exc:
        print(f"fraud deploy-training: error: {exc.description}", file=sys.stderr)
        return 2
    print(f"state machine {name} deployed (FraudTrainingFlow on Step Functions + Batch)")
    print(f"  image ({IMAGE_SETTING}): {os.environ[IMAGE_SETTING]}")
    print("  code package (files): " + ", ".join(f"{k} {v}" for k, v in sorted(package.items())))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    import os

    from fraud_core.lakehouse import Lakehouse
    from fraud_core.layout import DEFAULT_LAKEHOUSE_DIR
    from fraud_core.registry import rollback

    uri = args.lakehouse or os.environ.get("LAKEHOUSE_URI") or DEFAULT_LAKEHOUSE_DIR
    restored = rollback(Lakehouse(uri))
    print(
        f"champion is {restored['version']} again (rolled back from {restored['rolled_back_from']})"
    )
    return 0


def _lakehouse_uri(args: argparse.Namespace) -> str:
    import os

    from fraud_core.layout import DEFAULT_LAKEHOUSE_DIR

    return str(args.lakehouse or os.environ.get("LAKEHOUSE_URI") or DEFAULT_LAKEHOUSE_DIR)


def _migrate(args: argparse.Namespace) -> int:
    from fraud_core.lakehouse import Lakehouse
    from fraud_core.migrate import migrate

    lakehouse = Lakehouse(_lakehouse_uri(args))
    done = migrate(lakehouse)
    print(f"{lakehouse.url('')}: {done.describe()}")
    return 0


def _maintain(args: argparse.Namespace) -> int:
    from fraud_core.lakehouse import Lakehouse

    lakehouse = Lakehouse(_lakehouse_uri(args))
    for result in lakehouse.maintain(args.retention_hours, vacuum=not args.no_vacuum):
        if not result["exists"]:
            continue
        print(
            f"{result['table']}: version {result['version']}, {result['files_removed']} "
            f"file(s) compacted into {result['files_added']}, "
            f"{result['files_vacuumed']} vacuumed"
        )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from serving.main import run

    run(host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraud", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write simulated claims files to a landing zone")
    sim.add_argument("--claims", type=int, default=100_000)
    sim.add_argument("--batches", type=int, default=4, help="number of files")
    sim.add_argument("--days", type=int, default=365)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--drift", type=float, default=0.0, help="0 = none, 1 = strong")
    sim.add_argument("--label-coverage", type=float, default=1.0)
    sim.add_argument("--bad-fraction", type=float, default=0.0, help="share of corrupted rows")
    sim.add_argument("--id-prefix", default="CLM")
    sim.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl", "mixed"])
    sim.add_argument("--out", default=".lakehouse/landing", help="folder or fsspec URL")
    sim.set_defaults(func=_simulate)

    demo = sub.add_parser("demo", help="simulate claims and materialize the whole asset graph")
    demo.add_argument("--claims", type=int, default=120_000)
    demo.add_argument("--batches", type=int, default=6)
    demo.add_argument(
        "--initial-batches", type=int, default=4, help="batches landed before the first training"
    )
    demo.add_argument("--bad-fraction", type=float, default=0.003)
    demo.add_argument(
        "--drift",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        help="make later claims drift (strength, 1 if given alone): shows drift -> retraining",
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--max-epochs", type=int, default=0, help="0: the flow's config decides")
    demo.add_argument("--workdir", default=".", help="where .lakehouse etc. are created")
    demo.set_defaults(func=_demo)

    mat = sub.add_parser(
        "materialize", help="ingest new landing files, (re)train, score and report in-process"
    )
    mat.add_argument("--train", action=argparse.BooleanOptionalAction, default=True)
    mat.add_argument("--seed", type=int, default=0)
    mat.set_defaults(func=_materialize)

    deploy = sub.add_parser(
        "deploy-training",
        help="create/update the Step Functions state machine of FraudTrainingFlow (AWS)",
    )
    deploy.add_argument(
        "--state-machine",
        default="",
        help="its name (default: FRAUD_STATE_MACHINE, else FraudTrainingFlow)",
    )
    deploy.set_defaults(func=_deploy_training)

    model = sub.add_parser("model", help="model registry operations")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    back = model_sub.add_parser("rollback", help="restore the previous champion")
    back.add_argument("--lakehouse", default="", help="LAKEHOUSE_URI (default: environment)")
    back.set_defaults(func=_rollback)

    lake = sub.add_parser("lakehouse", help="the lakehouse's Delta tables")
    lake_sub = lake.add_subparsers(dest="lakehouse_command", required=True)
    mig = lake_sub.add_parser(
        "migrate", help="convert a Parquet lakehouse (batch=ID/ files) into Delta tables in place"
    )
    mig.add_argument("--lakehouse", default="", help="LAKEHOUSE_URI (default: environment)")
    mig.set_defaults(func=_migrate)
    keep = lake_sub.add_parser(
        "maintain", help="OPTIMIZE (compact small files) and VACUUM every Delta table"
    )
    keep.add_argument("--lakehouse", default="", help="LAKEHOUSE_URI (default: environment)")
    keep.add_argument(
        "--retention-hours",
        type=int,
        default=168,
        help="VACUUM keeps files any version of the last N hours reads (default 168: a week; "
        "time travel to older versions ends there)",
    )
    keep.add_argument("--no-vacuum", action="store_true", help="compact only")
    keep.set_defaults(func=_maintain)

    serve = sub.add_parser("serve", help="FastAPI scoring service with the champion model")
    serve.add_argument(
        "--host",
        default=os.environ.get("FRAUD_SERVE_HOST", "127.0.0.1"),
        help="interface to bind (default: FRAUD_SERVE_HOST, else loopback; the image sets 0.0.0.0)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("FRAUD_SERVE_PORT") or 8080),
        help="port (default: FRAUD_SERVE_PORT, else 8080)",
    )
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"fraud {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
