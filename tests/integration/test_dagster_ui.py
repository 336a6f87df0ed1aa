"""The Dagster UI as a user sees it: after a materialization, headless Chromium renders the asset
graph of a real ``dagster dev``, and the page shows every asset of the graph with the status of
its checks, in agreement with the GraphQL API.

Chromium is the Debian package; the test installs it (``apt-get``) when it is missing. The page
is read from Chromium's DOM dump (``--dump-dom``): each asset of the graph is an SVG
``foreignObject`` holding the asset's name and its rows ("Latest event", "Asset checks", ...).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fraud_cli.servers import DagsterDev, start_dagster_dev
from tests.support.containers import ensure_apt

ROOT = Path(__file__).resolve().parents[2]
# Headless, no sandbox as root, no background traffic (this machine has no internet access).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=15000",
    "--window-size=1400,900",
]
ASSETS_QUERY = """
{ assetNodes { assetKey { path } groupName
    repository { name location { name } }
    assetChecksOrError { ... on AssetChecks { checks { name
        executionForLatestMaterialization { status } } } } } }
"""

pytestmark = pytest.mark.integration


def ensure_chromium() -> str:
    """Chromium, installed from Debian's packages when missing (needs root + apt)."""
    return ensure_apt("chromium", "chromium")


class AssetNodes(HTMLParser):
    """The text pieces of every asset node (``foreignObject``) of a dumped graph page."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[list[str]] = []
        self._current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "foreignobject":
            self._current = []
            self.nodes.append(self._current)

    def handle_endtag(self, tag: str) -> None:
        if tag == "foreignobject":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None and data.strip():
            self._current.append(data.strip())


@dataclass
class Card:
    """One asset as the graph shows it: name and labelled rows."""

    name: str
    rows: dict[str, str]

    @classmethod
    def parse(cls, texts: list[str]) -> Card:
        rows, labels = {}, ("Latest event", "Asset checks", "Partitions", "Automation")
        for i, text in enumerate(texts[1:], start=1):
            if text in labels:
                following = texts[i + 1] if i + 1 < len(texts) else ""
                rows[text] = "" if following in labels else following
        return cls(texts[0], rows)


def load_script(name: str) -> Any:
    """scripts/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(
        f"ui_test_{name}", ROOT / "scripts" / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dagster_ui(
    tmp_path_factory: pytest.TempPathFactory, champion_lakehouse: Path
) -> Iterator[DagsterDev]:
    """A landed file ingested (scripts/materialize.py, in-process), then ``dagster dev`` over
    the same instance."""
    from fraud_core.simulate import SimulationConfig, simulate_claims, write_landing_files

    ensure_chromium()
    tmp = tmp_path_factory.mktemp("dagster_ui")
    lakehouse = tmp / "lakehouse"
    shutil.copytree(champion_lakehouse, lakehouse)
    claims = simulate_claims(SimulationConfig(n_claims=400, seed=9, id_prefix="UI"))
    write_landing_files([claims.drop(columns="scenario")], str(lakehouse / "landing"))
    env = {
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "LAKEHOUSE_URI": str(lakehouse),
        "DUCKDB_PATH": str(tmp / "warehouse.duckdb"),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("DAGSTER_URL", raising=False)
        import dagster as dg

        from fraud_cli.orchestrate import ensure_dagster_home

        # Create the instance's storage first; then dagster dev boots (~15 s of imports) while
        # the materialization runs here, on the same instance.
        ensure_dagster_home(env["DAGSTER_HOME"])
        dg.DagsterInstance.get().get_runs_count()
        server = start_dagster_dev(Path(env["DAGSTER_HOME"]), env)
        try:
            materialize = load_script("materialize")
            ingested = materialize.main(["--selection", "ingest_batch", "--partitions", ""])
        except BaseException:
            server.stop()
            raise
    try:
        assert ingested == 0, "the in-process materialization failed"
        server.wait_for_graph()
        assert server.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True  # no pop-up
        yield server
    finally:
        server.stop()


def dump_pages(urls: list[str]) -> list[str]:
    """The rendered DOM of each URL (Chromium processes in parallel)."""
    chromium = ensure_chromium()
    procs = [
        subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, "--dump-dom", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for url in urls
    ]
    pages = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
        pages.append(out)
    return pages


def test_the_asset_graph_shows_every_asset_and_the_checks_status(dagster_ui: DagsterDev) -> None:
    nodes = dagster_ui.graphql(ASSETS_QUERY)["assetNodes"]
    expected = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert len(expected) >= 8 and "raw_claims" in expected
    repository = nodes[0]["repository"]
    base = f"{dagster_ui.url}/locations/{repository['name']}@{repository['location']['name']}"
    groups = sorted({n["groupName"] for n in nodes})
    pages = dump_pages([f"{base}/asset-groups/{group}" for group in groups])

    cards: dict[str, Card] = {}
    for group, page in zip(groups, pages, strict=True):
        parser = AssetNodes()
        parser.feed(page)
        # Full cards are this group's assets; a bare name is a neighbour from another group.
        for card in (Card.parse(texts) for texts in parser.nodes if len(texts) > 1):
            assert expected[card.name]["groupName"] == group, card.name
            cards[card.name] = card
    assert set(cards) == set(expected), f"missing on the page: {set(expected) - set(cards)}"

    for name, node in expected.items():
        checks = node["assetChecksOrError"].get("checks") or []
        shown = cards[name].rows.get("Asset checks")
        assert shown is not None, f"{name}: no 'Asset checks' row on the page"
        if not checks:
            assert shown == "–", (name, shown)
            continue
        passed = sum(
            (c["executionForLatestMaterialization"] or {}).get("status") == "SUCCEEDED"
            for c in checks
        )
        match = re.fullmatch(r"(\d+) / (\d+) Passed", shown)
        assert match, (name, shown)
        assert (int(match.group(1)), int(match.group(2))) == (passed, len(checks)), (name, shown)

    # The materialization is visible: the ingested assets have a latest event and their
    # checks ran and passed (the claims contract among them).
    for name in ("raw_claims", "quarantined_claims", "claim_features", "claim_scores"):
        assert cards[name].rows.get("Latest event"), (name, cards[name].rows)
    contract = expected["raw_claims"]["assetChecksOrError"]["checks"]
    assert {c["name"]: c["executionForLatestMaterialization"]["status"] for c in contract}[
        "claims_contract"
    ] == "SUCCEEDED"
    assert cards["raw_claims"].rows["Asset checks"].startswith(f"{len(contract)} / ")
    assert cards["fraud_model"].rows["Latest event"] == ""  # never materialized here
