"""Tasks for bench/drain.py and bench/versus_celery.py: do nothing, so the benchmark measures the
queue, not the work; add and tsum make the chord of bench/chord_versus_celery.py."""

from __future__ import annotations

import os
import time

from django_taskq import task


@task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Results ignored: settling it is only the ack (one DELETE per batch)."""
    return None


@task(name="bench.store")
def store() -> None:
    """Results stored: PENDING row on enqueue, SUCCESS upsert on settle, then the ack."""
    return None


@task(name="bench.mark", ignore_result=True)
def mark() -> None:
    """Marks the start and end of a RabbitMQ drain (versus_celery.py --broker amqp): appends the
    system-wide monotonic clock to $BENCH_MARK_FILE. Celery's bench.mark runs the same code."""
    now = time.monotonic()
    path = os.environ.get("BENCH_MARK_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{now!r}\n")


@task(name="bench.add")
def add(x: int, y: int) -> int:
    """A chord's header task (bench/chord_versus_celery.py): its result is counted."""
    return x + y


@task(name="bench.tsum")
def tsum(numbers: list[int]) -> int:
    """A chord's body: the sum of the header's results, in header order."""
    return sum(numbers)
