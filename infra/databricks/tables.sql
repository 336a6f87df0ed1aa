-- The lakehouse's Delta tables as Unity Catalog external tables (Databricks SQL).
-- GENERATED from fraud_core/layout.py (TABLES) by fraud_core/delta.py: do not edit.
-- Regenerate with
--   .venv/bin/python -m fraud_core.delta > infra/databricks/tables.sql
-- Replace ${catalog}, ${schema} and ${lakehouse_uri} (LAKEHOUSE_URI, e.g.
-- abfss://lake@account.dfs.core.windows.net/fraud or s3://bucket/fraud) before running,
-- e.g. `envsubst < infra/databricks/tables.sql`. The location must be covered by an
-- external location with a storage credential (docs/lakehouse.md). Tables:
--   raw_claims           raw/claims                 Validated claims, one partition per landed file
--   quarantined_claims   quarantine/claims          Rows that failed the claims contract, as received, with their reasons
--   claim_features       features/claims            Model features per claim
--   claim_scores         outputs/scores             Fraud score and decision per claim, with model version
--   feature_drift        monitoring/feature_drift   Drift of a batch's features vs the champion
--   score_drift          monitoring/score_drift     Drift of a batch's scores vs the champion
--   model_metrics        metrics/model_metrics      Metrics per model version, batch and claim day
--   batch_lineage        lineage/batches            Where each batch came from, and when
--   claims_history       history/claims             Raw claims' window-feature columns by claim month, folded from raw_claims

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.raw_claims
USING DELTA
LOCATION '${lakehouse_uri}/raw/claims'
COMMENT 'Validated claims, one partition per landed file';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.quarantined_claims
USING DELTA
LOCATION '${lakehouse_uri}/quarantine/claims'
COMMENT 'Rows that failed the claims contract, as received, with their reasons';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.claim_features
USING DELTA
LOCATION '${lakehouse_uri}/features/claims'
COMMENT 'Model features per claim';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.claim_scores
USING DELTA
LOCATION '${lakehouse_uri}/outputs/scores'
COMMENT 'Fraud score and decision per claim, with model version';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.feature_drift
USING DELTA
LOCATION '${lakehouse_uri}/monitoring/feature_drift'
COMMENT 'Drift of a batch''s features vs the champion';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.score_drift
USING DELTA
LOCATION '${lakehouse_uri}/monitoring/score_drift'
COMMENT 'Drift of a batch''s scores vs the champion';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.model_metrics
USING DELTA
LOCATION '${lakehouse_uri}/metrics/model_metrics'
COMMENT 'Metrics per model version, batch and claim day';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.batch_lineage
USING DELTA
LOCATION '${lakehouse_uri}/lineage/batches'
COMMENT 'Where each batch came from, and when';

CREATE TABLE IF NOT EXISTS ${catalog}.${schema}.claims_history
USING DELTA
LOCATION '${lakehouse_uri}/history/claims'
COMMENT 'Raw claims'' window-feature columns by claim month, folded from raw_claims';
