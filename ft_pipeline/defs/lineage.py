"""Read what upstream assets recorded: the adapter key of the latest fine_tuned_adapter."""

import dagster as dg

ADAPTER = dg.AssetKey("fine_tuned_adapter")


def latest_adapter_key(instance: dg.DagsterInstance, partition: str | None = None) -> str:
    """The adapter key of the latest fine_tuned_adapter materialization (of `partition`, an
    experiment's variant, when given)."""
    if partition is None:
        event = instance.get_latest_materialization_event(ADAPTER)
        materialization = event.asset_materialization if event is not None else None
    else:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ADAPTER, asset_partitions=[partition]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
    if materialization is None:
        which = f" (variant {partition!r})" if partition else ""
        raise dg.Failure(description=f"fine_tuned_adapter{which} has not been materialized yet")
    return materialization.metadata["adapter_key"].value


def partition_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> str | None:
    """The run's partition key (an experiment's variant), or None."""
    return context.partition_key if context.has_partition_key else None
