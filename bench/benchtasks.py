"""Tasks for bench/drain.py: do nothing, so the benchmark measures the queue, not the work."""

from __future__ import annotations

from django_taskq import task


@task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Results ignored: settling it is only the ack (one DELETE per batch)."""
    return None


@task(name="bench.store")
def store() -> None:
    """Results stored: PENDING row on enqueue, SUCCESS upsert on settle, then the ack."""
    return None
