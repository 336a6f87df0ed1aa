"""A selection (a job, or asset keys) resolved against a code location into the runs to launch."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from fraud_cli.materialize import UsageError

ASSET_JOB = "__ASSET_JOB"
PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class AssetInfo:
    """What the planner needs to know about one asset of the code location."""

    partitioned: bool
    partitions: Sequence[str] = ()
    """Known partition keys (for a partitioned asset)."""
    jobs: Sequence[str] = ()
    """Jobs that materialize the asset."""


@dataclass
class Plan:
    """What to launch: a job, or asset keys in the implicit asset job; per partition or once."""

    job: str
    asset_keys: list[list[str]] | None = None
    partitioned: bool = False
    partitions: list[str | None] = field(default_factory=lambda: [None])

    def describe(self) -> str:
        if self.asset_keys is None:
            return f"job {self.job}"
        return ", ".join("/".join(k) for k in self.asset_keys)


def split_tokens(text: str) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]``."""
    return [t for t in text.replace(",", " ").split() if t]


def plan_selection(
    selection: str,
    partitions: str,
    jobs: Sequence[str],
    assets: Mapping[str, AssetInfo],
) -> Plan:
    """Resolve a selection against a code location.

    Args:
        selection: a job name, or asset keys (``a/b`` for multi-part keys).
        partitions: comma-separated partition keys, ``all`` or empty.
        jobs: job names of the code location (the implicit asset job excluded).
        assets: every asset of the code location, by ``/``-joined key.

    Raises:
        UsageError: unknown job or asset, mixed partitioned and unpartitioned assets, missing or
            unknown partitions.
    """
    tokens = split_tokens(selection)
    if not tokens:
        raise UsageError("MATERIALIZE_SELECTION is empty: name a job or asset keys")
    if len(tokens) == 1 and tokens[0] in jobs:
        plan = Plan(job=tokens[0])
        selected = [key for key, info in assets.items() if tokens[0] in info.jobs]
    else:
        unknown = [t for t in tokens if t not in assets]
        if unknown:
            raise UsageError(
                f"not a job or asset of the code location: {', '.join(unknown)}. "
                f"Jobs: {', '.join(sorted(jobs))}; assets: {', '.join(sorted(assets))}"
            )
        plan = Plan(job=ASSET_JOB, asset_keys=[t.split("/") for t in tokens])
        selected = tokens
    flags = {assets[k].partitioned for k in selected}
    if len(flags) > 1:
        raise UsageError(
            f"{plan.describe()} mixes partitioned and unpartitioned assets: "
            "materialize them in separate runs"
        )
    plan.partitioned = flags == {True}
    wanted = split_tokens(partitions)
    if not plan.partitioned:
        if wanted:
            raise UsageError(f"{plan.describe()} is not partitioned: unset MATERIALIZE_PARTITIONS")
        return plan
    known = list(assets[selected[0]].partitions)
    if not wanted:
        raise UsageError(
            f"{plan.describe()} is partitioned: set MATERIALIZE_PARTITIONS to partition keys "
            f"or 'all' (known: {_preview(known)})"
        )
    if wanted == ["all"]:
        if not known:
            raise UsageError(f"{plan.describe()} has no partitions yet: ingest a batch first")
        wanted = known
    missing = [p for p in wanted if p not in known]
    if missing:
        raise UsageError(f"unknown partition(s) {', '.join(missing)} (known: {_preview(known)})")
    plan.partitions = list(wanted)
    return plan


def _preview(keys: Sequence[str], n: int = 10) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[-n:])
    return shown if len(keys) <= n else f"... {shown} ({len(keys)} in all)"


def load_run_config(path: str) -> dict[str, Any]:
    """A run config from a YAML or JSON file (empty path: no run config)."""
    if not path:
        return {}
    try:
        with open(path) as fh:
            config = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise UsageError(f"cannot read MATERIALIZE_RUN_CONFIG {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise UsageError(f"run config {path} is not a mapping")
    return config


def run_tags(partition: str | None = None) -> dict[str, str]:
    """The tags of a launched run: who launched it (Jenkins' build when there is one) and its
    partition."""
    tags = {"launched_by": "scripts/materialize.py"}
    for env, tag in (("BUILD_URL", "jenkins/build_url"), ("BUILD_TAG", "jenkins/build_tag")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    if partition:
        tags[PARTITION_TAG] = partition
    return tags
