"""The benchmark harness runs end to end on small data (so it cannot rot unnoticed)."""

import json

from bench.common import figure, goal_met
from bench.run import SLOTS, main, run_slots


def test_harness_writes_json_and_table(tmp_path) -> None:
    assert main(["--quick", "--only", "features", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "results" / "quick.json").read_text())
    assert report["environment"]["cpus"] >= 1 and report["quick"] is True
    (measured, throughput) = report["figures"]
    assert measured["name"] == "features_vs_duckdb" and throughput["unit"] == "claims/s"
    assert measured["value"] > 0 and len(measured["runs"]) >= 1 and measured["warmup"] == 1
    table = (tmp_path / "RESULTS-quick.md").read_text()
    assert "| features | features_vs_duckdb |" in table


def test_a_slot_without_its_module_is_reported_not_invented() -> None:
    registry = (*SLOTS, ("future", "bench.not_written_yet", "a later issue's figure"))
    (entry,) = run_slots(True, {"future"}, registry)
    assert entry["status"] == "not yet measured" and entry["value"] is None


def test_figures_and_goals() -> None:
    f = figure("x", [3.0, 1.0, 2.0], "s", goal="<= 2.5")
    assert (f["value"], f["min"], f["max"], f["goal_met"]) == (2.0, 1.0, 3.0, True)
    assert goal_met(0.95, ">= 0.9") is True and goal_met(1.3, "<= 1.2") is False
    assert goal_met(1.0, None) is None


def test_a_failing_slot_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch) -> None:
    import sys
    import types

    broken = types.ModuleType("bench_broken_slot")

    def run(quick: bool) -> list:
        raise RuntimeError("the model gate failed: directional")

    broken.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench_broken_slot", broken)
    registry = (("broken", "bench_broken_slot", "a slot that raises"), *SLOTS)
    entries = run_slots(True, {"broken", "features"}, registry)
    assert entries[0]["status"] == "failed" and entries[0]["value"] is None
    assert "model gate failed" in entries[0]["notes"]
    assert {e["slot"] for e in entries[1:]} == {"features"}
    assert all(e["value"] is not None for e in entries[1:])


def test_peak_memory_of_a_child_is_its_own_not_its_parents() -> None:
    """ru_maxrss of a fork + exec child holds the parent's resident set; peak_rss_mb not."""
    import subprocess
    import sys

    import numpy as np

    from bench.common import ROOT

    ballast = np.ones(300_000_000 // 8)  # 300 MB resident in this (parent) process
    code = (
        "import json, resource; from bench.common import peak_rss_mb; "
        "print(json.dumps([peak_rss_mb(), "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    measured, inherited = json.loads(out.stdout)
    assert ballast.sum() > 0
    assert inherited > 250  # the kernel's figure carries the parent's 300 MB
    assert measured < 200  # a bare interpreter with numpy


def test_append_keeps_other_slots_and_replaces_a_figure_measured_again(tmp_path) -> None:
    """--append: the other slots' figures stay; a figure measured now replaces the old entry of
    its name even when another slot made it (a figure that moved to a slot of its own)."""
    results = tmp_path / "results"
    results.mkdir()
    old = {"slot": "pipeline", "value": 1.0, "unit": "x", "runs": [1.0], "status": ""}
    previous = {
        "quick": True,
        "environment": {},
        "figures": [
            {**old, "name": "features_vs_duckdb"},  # now the features slot's
            {**old, "name": "pipeline_wall"},
        ],
    }
    (results / "quick.json").write_text(json.dumps(previous))
    args = ["--quick", "--only", "features", "--append", "--out", str(tmp_path)]
    assert main(args) == 0
    figures = json.loads((results / "quick.json").read_text())["figures"]
    names = [(f["slot"], f["name"]) for f in figures]
    assert names.count(("pipeline", "pipeline_wall")) == 1
    assert [n for n in names if n[1] == "features_vs_duckdb"] == [
        ("features", "features_vs_duckdb")
    ]
