"""How a worker's run loop ends: when to stop, and the shutdown that gives back what is held."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import signals

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("django_taskq.worker.worker")


def done(worker: Worker, max_tasks: int | None, until_empty: bool) -> bool:
    """Whether the run loop ends now (asking for a warm stop once its limits are met)."""
    if max_tasks is not None and worker.processed >= max_tasks and not worker.stopping:
        worker.request_stop()
    if until_empty and not worker.stopping and _idle(worker) and worker._claim_was_short \
            and _queues_empty(worker):
        worker.request_stop()
    timeout = worker.options.shutdown_timeout
    if worker.stopping and timeout is not None and worker._stop_started is not None \
            and worker.clock.monotonic() - worker._stop_started > timeout:
        worker.cold = True
    if worker.stopping and (worker.cold or not worker.running):
        return True
    return False


def _idle(worker: Worker) -> bool:
    return not (worker.prefetched or worker.running or len(worker.settler))


def _queues_empty(worker: Worker) -> bool:
    return all(worker.broker.size(queue) == 0 for queue in worker.options.queues)


def shutdown(worker: Worker) -> None:
    """Give back everything not finished, settle what is, stop the pool and heartbeat."""
    worker.heartbeat.stop()
    with worker._held_lock:
        unstarted = [d for d, _ in worker.prefetched]
        abandoned = list(worker.running.values())
        worker.prefetched.clear()
    if worker.cold:
        worker.pool.terminate()
    else:
        worker.pool.stop()
        worker._collect(0)
        abandoned = list(worker.running.values())
    worker.running.clear()
    attempt(worker.settler.flush, "settle finished tasks")
    if unstarted:
        attempt(lambda: worker.broker.release(unstarted), "release prefetched messages")
    for delivery, job in abandoned:  # started, not finished: back to the queue, attempt
        # kept; a task whose run ends its worker every time (SystemExit) ends dead-lettered.
        attempt(lambda d=delivery, j=job: worker._lost(d, j, quiet=True),
                "requeue running message")
    # Connections go too: RabbitMQ returns what a consumer still buffers only when its
    # channel closes, and then counts it as a lost delivery unless released cleanly.
    attempt(worker.broker.close, "close the broker's connections")
    attempt(worker.monitor.stop, "send worker-offline")
    signals.send(signals.worker_shutdown, worker)
    logger.info("worker stopped: %d task(s) processed, %d released, %d requeued",
                worker.processed, len(unstarted), len(abandoned))


def attempt(action: object, what: str) -> None:
    """Run ``action``; log a failure and go on (leases expire and recover the rest)."""
    try:
        action()  # type: ignore[operator]
    except Exception:  # noqa: BLE001 - shutdown goes on; leases expire and recover the rest
        logger.exception("could not %s; leases will expire instead", what)
