"""Who answers for the code location's assets (Dagster owners: shown in the UI, used by alerts)."""

OWNERS = ["team:fraud-mlops"]
