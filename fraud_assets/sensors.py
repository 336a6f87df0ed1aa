"""Landing-zone sensor: one dynamic partition and one run per new or replaced file."""

import json
from typing import Any

import dagster as dg

from fraud_assets.partitions import landing_batches
from fraud_assets.resources import LocalLanding


def landing_sensor_for(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Adds a partition per landed claims file and requests its ingestion run.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing: LocalLanding):  # type: ignore[no-untyped-def]
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        new = [f for f in landing.list_files() if seen.get(f.name) != f.version]
        if not new:
            return dg.SkipReason(f"no new files in {landing.path}")
        known = set(context.instance.get_dynamic_partitions(landing_batches.name))
        to_add = sorted({f.batch_id for f in new} - known)
        for f in new:
            seen[f.name] = f.version
        return dg.SensorResult(
            run_requests=[
                # One run per file version: a repeated tick never launches twice.
                dg.RunRequest(run_key=f"{f.name}@{f.version}", partition_key=f.batch_id)
                for f in new
            ],
            dynamic_partitions_requests=[landing_batches.build_add_request(to_add)]
            if to_add
            else [],
            cursor=json.dumps(seen, sort_keys=True),
        )

    return landing_sensor
