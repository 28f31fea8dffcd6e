"""The worker: reserve messages, run tasks in a pool, settle outcomes, keep leases alive."""

from .worker import Worker, WorkerOptions

__all__ = ["Worker", "WorkerOptions"]
