"""One partition per landed file: the sensor adds a key for each file it sees."""

import dagster as dg

landing_batches = dg.DynamicPartitionsDefinition(name="landing_batches")
