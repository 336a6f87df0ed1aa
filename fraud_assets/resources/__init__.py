"""Dagster resources: every external system behind one small interface."""

from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.landing import LandedFile, LocalLanding
from fraud_assets.resources.training import (
    MetaflowTraining,
    StepFunctionsTraining,
    Training,
    TrainingRun,
    training_for,
)
from fraud_assets.resources.warehouse import DuckDBWarehouse

__all__ = [
    "DuckDBWarehouse",
    "LakehouseResource",
    "LandedFile",
    "LocalLanding",
    "MetaflowTraining",
    "StepFunctionsTraining",
    "Training",
    "TrainingRun",
    "training_for",
]
