"""Software-defined assets: one module per concept, each body a call into fraud_core."""

from fraud_assets.assets.claims import claims_batch
from fraud_assets.assets.features import claim_features
from fraud_assets.assets.model import champion_model, fraud_model
from fraud_assets.assets.reporting import model_metrics, snowflake_metrics_replica
from fraud_assets.assets.scoring import claim_scores

ALL_ASSETS = [
    claims_batch,
    claim_features,
    fraud_model,
    champion_model,
    claim_scores,
    model_metrics,
    snowflake_metrics_replica,
]
