"""Dagster resources: every external system behind one small interface."""

from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.landing import (
    ADLSLanding,
    LandedFile,
    LandingZone,
    LocalLanding,
    S3Landing,
    landing_for,
)
from fraud_assets.resources.training import (
    MetaflowTraining,
    StepFunctionsTraining,
    Training,
    TrainingRun,
)
from fraud_assets.resources.warehouse import (
    DuckDBWarehouse,
    ReplicationResult,
    SnowflakeWarehouse,
    Warehouse,
    WarehouseConfigError,
    WarehouseConnectionError,
    WarehouseWriteError,
)

__all__ = [
    "ADLSLanding",
    "DuckDBWarehouse",
    "LakehouseResource",
    "LandedFile",
    "LandingZone",
    "LocalLanding",
    "MetaflowTraining",
    "ReplicationResult",
    "S3Landing",
    "SnowflakeWarehouse",
    "StepFunctionsTraining",
    "Training",
    "TrainingRun",
    "Warehouse",
    "WarehouseConfigError",
    "WarehouseConnectionError",
    "WarehouseWriteError",
    "landing_for",
]
