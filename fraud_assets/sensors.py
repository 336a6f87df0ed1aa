"""Every sensor of the code location.

``landing_sensor``: one dynamic partition and one run per new or replaced landed file. The same
sensor serves a local folder, S3 and ADLS (the ``landing`` resource decides which). Its cursor
is a high-water mark plus the files of a short window behind it
(fraud_core.landing.LandingCursor), so a tick compares only recent files with what was seen,
whatever the zone holds; a run key per file version (``name@version``) makes Dagster drop any
request it has launched before, so a restarted tick or a lost cursor never launches twice.

``drift_retraining_sensor``: a retraining when the last batches all drift from the champion
(the drift checks record each batch's drift; fraud_core.drift.drifting_streak reads it back).
"""

import json
from typing import Any

import dagster as dg

from fraud_assets.partitions import landing_batches
from fraud_assets.resources.lakehouse import LakehouseResource
from fraud_assets.resources.landing import LandingZone
from fraud_core.drift import drifting_streak
from fraud_core.landing import LandingCursor

PARTITIONS = str(landing_batches.name)
FILE_TAG = "landing/file"
VERSION_TAG = "landing/version"
# One file's run is a chain of three steps: a process per step (the default executor's
# multiprocess mode) would only add an import of the code location to each and parallelise
# nothing, so the sensor's runs choose its in-process mode.
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}
DEFAULT_LANDING_INTERVAL_SECONDS = 30


def landing_sensor_for(
    job: Any,
    minimum_interval_seconds: int = DEFAULT_LANDING_INTERVAL_SECONDS,
    max_files_per_tick: int = 500,
) -> dg.SensorDefinition:
    """The landing sensor, requesting ``job`` (the per-batch assets) for each new file.

    A backlog (say, the sensor switched on over a zone of 10,000 files) is taken oldest first,
    ``max_files_per_tick`` files a tick, so no tick outgrows the sensor's time limit.
    """

    @dg.sensor(
        name="landing_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Adds a partition per landed claims file and requests its ingestion run.",
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone
    ) -> dg.SkipReason | dg.SensorResult:
        seen = LandingCursor.parse(context.cursor)
        lookback = landing.lookback_seconds
        files = landing.list_files(since=seen.window_start(lookback))
        new, cursor = seen.advance(files, lookback, max_files_per_tick)
        if not new:
            reason = f"no new files in {landing.location}"
            if cursor == seen:
                return dg.SkipReason(reason)
            return dg.SensorResult(skip_reason=reason, cursor=cursor.dump())
        batches = sorted({f.batch_id for f in new})
        to_add = [b for b in batches if not context.instance.has_dynamic_partition(PARTITIONS, b)]
        context.log.info(
            f"{len(new)} new file(s) in {landing.location}; {len(to_add)} new partition(s)"
        )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    # One run per file version: Dagster never launches a run key twice.
                    run_key=f"{f.name}@{f.version}",
                    partition_key=f.batch_id,
                    tags={FILE_TAG: f.name, VERSION_TAG: f.version},
                    run_config=IN_PROCESS,
                )
                for f in new
            ],
            dynamic_partitions_requests=[landing_batches.build_add_request(to_add)]
            if to_add
            else [],
            cursor=cursor.dump(),
        )

    return landing_sensor


def retraining_sensor_for(job: Any, consecutive: int) -> dg.SensorDefinition:
    """Requests a retraining when the last ``consecutive`` batches all drift."""
    if consecutive < 1:
        raise ValueError("the number of consecutive drifting batches must be at least 1")

    @dg.sensor(
        name="drift_retraining_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Retrains when {consecutive} consecutive batches drift from the champion.",
    )
    def drift_retraining_sensor(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
    ) -> dg.SkipReason | dg.RunRequest:
        lh = lakehouse.get()
        pointer = lh.champion()
        if pointer is None:
            return dg.SkipReason("no champion yet")
        streak = drifting_streak(lh, pointer["version"])
        if len(streak) < consecutive:
            return dg.SkipReason(
                f"{len(streak)} consecutive drifting batch(es); retraining at {consecutive}"
            )
        window = streak[-consecutive:]
        return dg.RunRequest(
            # One retraining per champion and drifting window: repeated ticks launch nothing.
            run_key=f"drift:{pointer['version']}:{window[-1]}",
            tags={"fraud/trigger": "drift", "fraud/drifting_batches": json.dumps(window)},
        )

    return drift_retraining_sensor
