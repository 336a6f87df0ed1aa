"""Shared fixtures: small simulated data, and a lakehouse holding a real champion model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraud_cli.servers import FAKE_AWS, moto_server
from fraud_cli.servers import azurite as azurite_server
from fraud_core.claim_versions import as_raw
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import RAW
from fraud_core.pipeline import featurize_batch
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims, split_into_batches
from tests.support.containers import TIMINGS, BackgroundImage, DockerEngine, published
from tests.support.scheduling import CONTAINER_MODULES, ImageAware, module_of
from tests.support.timeline import CPU_PROPERTY, Timeline, cpu_seconds

os.environ.setdefault("USERNAME", "fraud-tests")  # Metaflow refuses to run without a user


@pytest.fixture(scope="session")
def small_claims() -> pd.DataFrame:
    """30,000 simulated claims (seed 11), with the simulator's scenario column dropped."""
    return simulate_claims(SimulationConfig(n_claims=30_000, seed=11)).drop(columns="scenario")


@pytest.fixture(scope="session")
def champion_lakehouse(
    tmp_path_factory: pytest.TempPathFactory, small_claims: pd.DataFrame
) -> Path:
    """A local lakehouse with 3 raw + feature batches and a promoted champion.

    The champion is trained directly with fraud_core (no Metaflow: fast); the full graph test
    covers the Metaflow path. Batch ids: b0, b1, b2.
    """
    from fraud_core import drift
    from fraud_core.features import NUMERIC_FEATURES
    from fraud_core.metrics import cost_optimal_threshold
    from fraud_core.model.bundle import ModelBundle
    from fraud_core.model.calibration import fit_platt
    from fraud_core.model.train import TrainConfig, fit
    from fraud_core.training import load_labelled_features, time_split

    root = tmp_path_factory.mktemp("lakehouse")
    lh = Lakehouse(str(root))
    for i, batch in enumerate(split_into_batches(small_claims, 3)):
        lh.write_batch(RAW, f"b{i}", as_raw(coerce_claims(batch).frame))
    for i in range(3):
        featurize_batch(lh, f"b{i}")
    split = time_split(load_labelled_features(lh), 0.2, 0.2)
    config = TrainConfig(max_epochs=10, batch_size=512, lr=3e-3, patience=3)
    result = fit(split.train, split.val, config, threads=1)
    candidate = ModelBundle(result.net, result.vocabulary, (1.0, 0.0), 0.5, "fixture")
    y_val = split.val["is_fraud"].to_numpy(bool)
    calibration = fit_platt(candidate.logits(split.val), y_val)
    calibrated = ModelBundle(result.net, result.vocabulary, calibration, 0.5, "fixture")
    threshold = cost_optimal_threshold(
        y_val, calibrated.predict_proba(split.val), split.val["claimed_amount"].to_numpy()
    )
    bundle = ModelBundle(
        result.net,
        result.vocabulary,
        calibration,
        threshold=threshold,
        version="fm-test-1",
        metrics={"test": {"model": {"average_precision": result.best_val_ap}}},
        lineage={
            "training_batches": ["b0", "b1", "b2"],
            "split": split.describe(),
            "table_versions": lh.table_versions(),
        },
    )
    bundle.reference_profile = drift.profile(split.train, NUMERIC_FEATURES)
    test_scores = bundle.predict_proba(split.test)
    bundle.reference_profile["score"] = drift.profile(
        pd.DataFrame({"score": test_scores}), ["score"]
    )["score"]
    bundle.save(lh)
    lh.set_champion({"version": bundle.version})
    return root


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto server (S3, Step Functions, Batch, SageMaker, ...) on a free loopback port.

    Fake credentials and region are set for the whole session so no client reaches AWS.
    """
    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    try:
        with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's Blob service (the ADLS / Blob emulator), installed with npm on first use;
    yields its connection string. Stopped by PID at the end of the session."""
    workdir = tmp_path_factory.mktemp("azurite")
    with azurite_server(workdir, workdir / "azurite.log") as connection:
        yield connection


# The project's image: built in a thread from the start of the session, used by the tests that
# run containers. In one process it is built here and those tests run last; under pytest-xdist
# the controlling process builds it and publishes it in the file IMAGE_STATE names (inherited by
# the workers), and the scheduler holds those tests back until it is ready.
_IMAGE = BackgroundImage("fraud-mlops:test")
IMAGE_STATE = "FRAUD_TEST_IMAGE_STATE"
_IMAGE_STATE_DIRS: list[str] = []  # made by this process (the controller): removed at its end


def pytest_configure(config: pytest.Config) -> None:
    """On the xdist controller, before the workers start: where the image will be published."""
    if config.getvalue("dist") == "loadscope" and not hasattr(config, "workerinput"):
        folder = tempfile.mkdtemp(prefix="fraud-image-")
        _IMAGE_STATE_DIRS.append(folder)
        os.environ[IMAGE_STATE] = os.path.join(folder, "image.json")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the image run last (in their order); in one process, the image's build
    starts now, in the background."""
    needs = [i for i in items if "project_image" in getattr(i, "fixturenames", ())]
    strays = {module_of(i.nodeid) for i in needs} - set(CONTAINER_MODULES)
    if strays:
        raise pytest.UsageError(
            f"{', '.join(sorted(strays))} need the project's image: add them to "
            "CONTAINER_MODULES in tests/support/scheduling.py (they share one Docker engine)"
        )
    if needs:
        items[:] = [i for i in items if i not in needs] + needs
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            _IMAGE.start()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> ImageAware | None:
    """`--dist loadscope`: test modules as units; the container modules once the image is
    ready, which this process builds (at the session's priority: tests wait for it)."""
    if config.getvalue("dist") != "loadscope":
        return None
    state = Path(os.environ[IMAGE_STATE])
    return ImageAware(
        config,
        log,
        needs_image=lambda modules: _IMAGE.start(idle=False, publish=state),
        image_ready=_IMAGE.ready,
    )


# Where the wall time goes: recorded by the controlling process only (not an xdist worker).
_TIMELINE: list[Timeline] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        _TIMELINE.append(Timeline())


_CPU_AT = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    item.stash[_CPU_AT] = cpu_seconds()  # where the setup phase's CPU starts


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report carries the CPU seconds the phase used (tests/support/timeline.py)."""
    report = yield
    started = item.stash.get(_CPU_AT, None)
    if started is not None:
        report.user_properties.append((CPU_PROPERTY, round(cpu_seconds() - started, 2)))
    item.stash[_CPU_AT] = cpu_seconds()  # the next phase starts where this one ended
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test phase with its worker (on the controller, xdist sets ``report.node``)."""
    for timeline in _TIMELINE:
        timeline.add(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    _IMAGE.close()  # stops dockerd (by PID)
    for folder in _IMAGE_STATE_DIRS:
        shutil.rmtree(folder, ignore_errors=True)
    if hasattr(session.config, "workeroutput"):  # a worker: its timings go to the controller
        session.config.workeroutput["container_timings"] = list(TIMINGS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the controller: a worker's container timings (pytest-xdist's hook)."""
    TIMINGS.extend(getattr(node, "workeroutput", {}).get("container_timings", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the container tests' time went (engine, base image, wheelhouse, build, wait), and
    how busy the cores were (tests/support/timeline.py)."""
    for timeline in _TIMELINE:
        summary = timeline.close(terminalreporter.config.rootpath / "reports")
        if summary:
            terminalreporter.write_sep("-", "where the wall time went")
            terminalreporter.write_line(summary)
    if TIMINGS:
        terminalreporter.write_sep("-", "docker engine and the project's image")
        for line in TIMINGS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def project_image() -> str:
    """The project's image, built once per session from the Dockerfile on a local Debian base
    (tests/support/containers.py)."""
    return _session_image()[1]


@pytest.fixture(scope="session")
def docker(project_image: str) -> DockerEngine:
    """The session's Docker engine (installed with apt if missing; host network only;
    stopped by PID at the end of the session)."""
    return _session_image()[0]


def _session_image() -> tuple[DockerEngine, str]:
    """This process's engine and image, or on an xdist worker the controller's."""
    state = os.environ.get(IMAGE_STATE)
    if os.environ.get("PYTEST_XDIST_WORKER") and state:
        return published(Path(state))
    return _IMAGE.result()
