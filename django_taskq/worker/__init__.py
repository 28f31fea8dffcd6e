"""The worker: reserve messages, run tasks in a pool, settle outcomes, keep leases alive."""

from .options import WorkerOptions
from .worker import Worker

__all__ = ["Worker", "WorkerOptions"]
