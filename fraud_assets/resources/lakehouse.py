"""The lakehouse as a Dagster resource (any LAKEHOUSE_URI: local path, s3://, abfss://)."""

import dagster as dg

from fraud_core.lakehouse import Lakehouse


class LakehouseResource(dg.ConfigurableResource):
    """Where raw, quarantined, feature, score, model and metric data live."""

    uri: str

    def get(self) -> Lakehouse:
        return Lakehouse(self.uri)
