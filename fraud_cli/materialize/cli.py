"""``scripts/materialize.py`` (``make materialize``): see :mod:`fraud_cli.materialize`."""

from __future__ import annotations

import argparse
import os
import sys

from fraud_cli.materialize import EXIT_USAGE, UsageError
from fraud_cli.materialize.remote import materialize_remote


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Materialize a selection of the asset graph (on DAGSTER_URL or in-process)."
    )
    parser.add_argument("--dagster-url", default=env("DAGSTER_URL", ""))
    parser.add_argument("--selection", default=env("MATERIALIZE_SELECTION", ""))
    parser.add_argument("--partitions", default=env("MATERIALIZE_PARTITIONS", ""))
    parser.add_argument("--run-config", default=env("MATERIALIZE_RUN_CONFIG", ""))
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(env("MATERIALIZE_TIMEOUT", "3600")),
        help="seconds to wait for each run",
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dagster_url:
            return materialize_remote(args)
        # Imported here: it loads the whole code location, which a remote launch never needs.
        from fraud_cli.materialize.in_process import materialize_in_process

        return materialize_in_process(args)
    except UsageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
