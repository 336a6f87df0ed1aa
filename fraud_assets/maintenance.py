"""The lakehouse's upkeep: OPTIMIZE (compact each Delta table's small files: a batch a day makes
many) and VACUUM (delete files no version of the retention period reads), as a job with a
weekly schedule that is stopped until someone starts it."""

import dagster as dg

from fraud_assets.resources.lakehouse import LakehouseResource


class MaintenanceConfig(dg.Config):
    retention_hours: int = 168
    """VACUUM keeps the files every version of this many hours reads (time travel's reach)."""
    vacuum: bool = True
    """False: compact only."""


@dg.op
def maintain_lakehouse(
    context: dg.OpExecutionContext, config: MaintenanceConfig, lakehouse: LakehouseResource
) -> None:
    """OPTIMIZE and VACUUM every Delta table of the lakehouse."""
    results = lakehouse.get().maintain(config.retention_hours, vacuum=config.vacuum)
    for result in results:
        context.log.info(f"maintained {result}")


@dg.job(description="OPTIMIZE and VACUUM the lakehouse's Delta tables.")
def lakehouse_maintenance() -> None:
    maintain_lakehouse()


maintenance_schedule = dg.ScheduleDefinition(
    name="lakehouse_maintenance_schedule",
    job=lakehouse_maintenance,
    cron_schedule="0 4 * * 0",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly OPTIMIZE + VACUUM of the lakehouse (stopped by default: start it in the "
    "UI once time travel's reach, a week of versions, suits you).",
)
