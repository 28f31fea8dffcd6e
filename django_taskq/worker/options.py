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
    autoscale: tuple[int, int] | None = None  # (max, min); the pool starts at min
    autoscale_keepalive: float = 30.0

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
            "autoscale": s.WORKER_AUTOSCALE, "autoscale_keepalive": s.WORKER_AUTOSCALE_KEEPALIVE,
        }
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        if ("concurrency" in given or given.get("pool") == "solo") and "autoscale" not in given:
            values["autoscale"] = None  # -c or --pool solo alone: a fixed size, whatever
            # WORKER_AUTOSCALE says (the test helpers' solo workers too)
        if values["pool"] == "solo":
            values["concurrency"] = 1
        elif values["autoscale"] is not None:  # as Celery: --autoscale wins over -c
            values["concurrency"] = values["autoscale"][1]  # type: ignore[index]
        elif values["pool"] == "asyncio" and "concurrency" not in given \
                and not s.WORKER_CONCURRENCY:
            from .asyncio_pool import DEFAULT_CONCURRENCY  # slots are coroutines, not CPUs

            values["concurrency"] = DEFAULT_CONCURRENCY
        return cls(**values)  # type: ignore[arg-type]


def default_hostname() -> str:
    """``worker<pid>@<host>``: unique per process, readable in logs and the admin."""
    return f"worker{os.getpid()}@{socket.gethostname()}"
