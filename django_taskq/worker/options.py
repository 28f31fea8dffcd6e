"""How a worker runs: its options, built from the command line over the TASKQ settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from ..conf import TaskqSettings, get_settings


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs; built from the command line over the TASKQ settings."""

    queues: tuple[str, ...]
    concurrency: int
    pool: str
    prefetch_multiplier: int
    hostname: str
    lease: float
    heartbeat_interval: float
    poll_interval: float
    shutdown_timeout: float | None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None

    @classmethod
    def from_settings(cls, settings: TaskqSettings | None = None, **overrides: object
                      ) -> WorkerOptions:
        """Options from the settings, with non-None ``overrides`` on top."""
        s = settings or get_settings()
        values: dict[str, object] = {
            "queues": (s.DEFAULT_QUEUE,), "concurrency": s.concurrency, "pool": s.WORKER_POOL,
            "prefetch_multiplier": s.WORKER_PREFETCH_MULTIPLIER, "hostname": default_hostname(),
            "lease": s.LEASE_TIMEOUT, "heartbeat_interval": s.heartbeat_interval,
            "poll_interval": s.POLL_INTERVAL,
            "shutdown_timeout": s.WORKER_SHUTDOWN_TIMEOUT,
            "time_limit": s.WORKER_TIME_LIMIT, "soft_time_limit": s.WORKER_SOFT_TIME_LIMIT,
            "max_tasks_per_child": s.WORKER_MAX_TASKS_PER_CHILD,
            "max_memory_per_child": s.WORKER_MAX_MEMORY_PER_CHILD,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["pool"] == "solo":
            values["concurrency"] = 1
        return cls(**values)  # type: ignore[arg-type]


def default_hostname() -> str:
    """``worker<pid>@<host>``: unique per process, readable in logs and the admin."""
    return f"worker{os.getpid()}@{socket.gethostname()}"
