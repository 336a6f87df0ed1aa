"""Shared fixtures: small simulated data, and a lakehouse holding a real champion model."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from fraud_core.lakehouse import RAW, Lakehouse
from fraud_core.pipeline import featurize_batch
from fraud_core.schema import coerce_claims
from fraud_core.simulate import SimulationConfig, simulate_claims, split_into_batches

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
    from fraud_core.gate import GateConfig  # noqa: F401  (import check: gate importable)
    from fraud_core.model.bundle import ModelBundle
    from fraud_core.model.calibration import fit_platt
    from fraud_core.model.train import TrainConfig, fit
    from fraud_core.training import load_labelled_features, time_split

    root = tmp_path_factory.mktemp("lakehouse")
    lh = Lakehouse(str(root))
    for i, batch in enumerate(split_into_batches(small_claims, 3)):
        lh.write_batch(RAW, f"b{i}", coerce_claims(batch).frame)
    for i in range(3):
        featurize_batch(lh, f"b{i}")
    split = time_split(load_labelled_features(lh), 0.2, 0.2)
    config = TrainConfig(max_epochs=10, batch_size=512, lr=3e-3, patience=3)
    result = fit(split.train, split.val, config, threads=1)
    candidate = ModelBundle(result.net, result.vocabulary, (1.0, 0.0), 0.5, "fixture")
    calibration = fit_platt(candidate.logits(split.val), split.val["is_fraud"].to_numpy(bool))
    bundle = ModelBundle(
        result.net,
        result.vocabulary,
        calibration,
        threshold=0.05,
        version="fm-test-1",
        metrics={"test": {"model": {"average_precision": result.best_val_ap}}},
        lineage={"training_batches": ["b0", "b1", "b2"], "split": split.describe()},
    )
    bundle.save(lh)
    lh.set_champion({"version": bundle.version})
    return root
