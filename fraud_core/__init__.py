"""The fraud-detection domain: claims, features, the model, metrics, drift, the lakehouse.

Importable alone (no Dagster, Metaflow, Great Expectations or FastAPI imports).
"""

# Metaflow (2.19+) puts every imported module that sets this into the code package its remote
# tasks download, so a training step on AWS Batch runs this commit's domain code, whatever
# version of the project the container image holds. A plain constant: nothing is imported.
METAFLOW_PACKAGE_POLICY = "include"
