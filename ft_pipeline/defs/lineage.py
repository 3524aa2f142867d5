"""Read what upstream assets recorded: the adapter key of the latest fine_tuned_adapter."""

import dagster as dg


def latest_adapter_key(instance: dg.DagsterInstance) -> str:
    """The adapter key from the latest fine_tuned_adapter materialization."""
    event = instance.get_latest_materialization_event(dg.AssetKey("fine_tuned_adapter"))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(description="fine_tuned_adapter has not been materialized yet")
    return event.asset_materialization.metadata["adapter_key"].value
