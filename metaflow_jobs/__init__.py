"""FraudTrainingFlow and its validated configuration."""

# Packaged with the flow for remote tasks, like fraud_core (see fraud_core/__init__.py).
METAFLOW_PACKAGE_POLICY = "include"
