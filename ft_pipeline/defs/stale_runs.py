"""Runs whose process died: reported failed, their pool slots freed.

`ft-pipeline run` executes each run in its own process (`dg.materialize`). When that process
is killed (kill -9, the OOM killer), its run stays STARTED and keeps its slot in the
`training` pool, so every later training or evaluation step waits for the slot forever
("Step blocked by limit for pool training"). No daemon watches these runs, so the CLI tags
each run with its host and process id (`owner_tags`) and calls `recover_stale_runs` before
it starts the next: a STARTED run of this host whose process is gone is reported failed
and its concurrency slots are freed. Runs launched by the daemon are left to Dagster's run
monitoring.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

HOST_TAG = "ft_pipeline/host"
PID_TAG = "ft_pipeline/pid"
IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def owner_tags() -> dict[str, str]:
    """Tags for a run executed in this process: who to ask whether it is still alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def recover_stale_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report runs of dead processes on this host as failed and free their slots."""
    from ft_pipeline.lib.state.tracking import process_alive  # imports mlflow: only when needed

    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={HOST_TAG: host})
    )
    recovered = []
    for record in records:
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        started = record.start_time or record.create_timestamp.timestamp()
        if not pid or pid == os.getpid() or process_alive(pid, started):
            continue
        instance.report_run_failed(
            run, f"process {pid} on {host} ended without finishing this run (killed?)"
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered
