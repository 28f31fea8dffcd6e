"""Remote control from the caller's side, shaped like Celery's ``app.control``.

``Control().inspect().active()`` returns ``{hostname: [request, ...]}`` (None when no worker
answered), ``Control().ping()`` a list of ``{hostname: {"ok": "pong"}}``, and so on, as
Celery's do; ``broadcast`` is the one road. Commands go through the control store's mailbox
(control/mailbox.py), so they reach workers on every broker. Workers read the mailbox every
REVOKE_POLL_INTERVAL (0.5 s), so the default timeout is 1 s, as Celery's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from .mailbox import COMMAND_TTL

#: How often the caller looks for replies while it waits.
REPLY_POLL = 0.05
#: Celery's control and inspect calls this module lacks, and what to do instead.
INSTEAD = {
    "pool_restart": "restart the worker",
    "purge": "run manage.py taskq purge", "discard_all": "run manage.py taskq purge",
    "heartbeat": "workers send worker-heartbeat events on their own",
    "election": "no worker needs electing here",
    "revoke_by_stamped_headers": "revoke by task id (revoke)",
    "clock": "stats() carries each worker's clock",
}


def unsupported(where: str, name: str) -> AttributeError:
    """The error for a Celery call this module does not offer, naming what to do."""
    hint = INSTEAD.get(name, "manage.py taskq lists what there is")
    return AttributeError(f"{where}.{name} is not supported by django_taskq: {hint}")


class Control:
    """Broadcast commands to workers and collect their replies."""

    def __init__(self, store: Any = None) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        raise unsupported("app.control", name)

    @property
    def store(self) -> Any:
        """The control store (TASKQ['CONTROL_URL'], or the broker's or backend's)."""
        if self._store is None:
            from . import get_control_store

            self._store = get_control_store()
        return self._store

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0, limit: int | None = None, pattern: str | None = None,
                  matcher: str | None = None) -> list[dict[str, Any]]:
        """Send ``command`` to every worker (or those in ``destination``).

        Returns ``[{hostname: reply}, ...]`` collected until ``timeout`` seconds passed or
        ``limit`` replies came (or every destination answered); ``[]`` when ``reply`` is False.
        """
        if pattern or matcher:
            raise ValueError("pattern/matcher are not supported: name the workers with "
                             "destination=[hostname, ...]")
        if isinstance(destination, str):
            destination = [destination]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be above zero seconds, a number, not {timeout!r}")
        command_id = uuid.uuid4().hex
        self.store.broadcast({
            "id": command_id, "name": command, "arguments": dict(arguments or {}),
            "destination": list(destination) if destination else None, "reply": reply,
            "expires_at": time.time() + max(timeout, COMMAND_TTL)})
        if not reply:
            return []
        expected = limit if limit is not None else (len(destination) if destination else None)
        deadline = time.monotonic() + timeout
        replies: dict[str, Any] = {}
        while True:
            # Kept as they come: a store may expire replies before a long timeout ends.
            replies.update(self.store.read_replies(command_id))
            if expected is not None and len(replies) >= expected:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(REPLY_POLL, left))
        return [{hostname: answer} for hostname, answer in sorted(replies.items())]

    def inspect(self, destination: Sequence[str] | None = None, timeout: float = 1.0,
                limit: int | None = None) -> Inspect:
        """Read-only questions to the workers, as Celery's ``app.control.inspect()``."""
        return Inspect(self, destination=destination, timeout=timeout, limit=limit)

    def _call(self, command: str, reply: bool, destination: Sequence[str] | None,
              timeout: float, **arguments: Any) -> list[dict[str, Any]]:
        return self.broadcast(command, arguments, destination=destination, reply=reply,
                              timeout=timeout)

    def ping(self, destination: Sequence[str] | None = None,
             timeout: float = 1.0) -> list[dict[str, Any]]:
        """``[{hostname: {"ok": "pong"}}, ...]`` from every live worker."""
        return self._call("ping", True, destination, timeout)

    def shutdown(self, destination: Sequence[str] | None = None, reply: bool = False,
                 timeout: float = 1.0) -> list[dict[str, Any]]:
        """Warm-stop the workers (running tasks finish)."""
        return self._call("shutdown", reply, destination, timeout)

    def pool_grow(self, n: int = 1, destination: Sequence[str] | None = None,
                  reply: bool = False, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Add ``n`` execution slots (prefork children or threads)."""
        return self._call("pool_grow", reply, destination, timeout, n=n)

    def pool_shrink(self, n: int = 1, destination: Sequence[str] | None = None,
                    reply: bool = False, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Remove ``n`` execution slots (busy ones after their task)."""
        return self._call("pool_shrink", reply, destination, timeout, n=n)

    def autoscale(self, max: int | None, min: int | None,  # noqa: A002 - Celery's names
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0) -> list[dict[str, Any]]:
        """Set the autoscale range of workers started with ``--autoscale`` (None keeps one)."""
        return self._call("autoscale", reply, destination, timeout, max=max, min=min)

    def rate_limit(self, task_name: str, rate_limit: str | int | float | None,
                   destination: Sequence[str] | None = None, reply: bool = False,
                   timeout: float = 1.0) -> list[dict[str, Any]]:
        """Set ``task_name``'s rate limit (``"10/m"``; None or 0 removes it) on the workers."""
        return self._call("rate_limit", reply, destination, timeout, task_name=task_name,
                          rate_limit=rate_limit)

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None,
                   destination: Sequence[str] | None = None, reply: bool = False,
                   timeout: float = 1.0) -> list[dict[str, Any]]:
        """Set ``task_name``'s soft and hard time limits (seconds) on the workers."""
        return self._call("time_limit", reply, destination, timeout, task_name=task_name,
                          soft=soft, hard=hard)

    def add_consumer(self, queue: str, destination: Sequence[str] | None = None,
                     reply: bool = False, timeout: float = 1.0,
                     **options: Any) -> list[dict[str, Any]]:
        """Have the workers consume from ``queue`` too (Celery's exchange options are not
        needed: a queue is reached by its name)."""
        return self._call("add_consumer", reply, destination, timeout, queue=queue)

    def cancel_consumer(self, queue: str, destination: Sequence[str] | None = None,
                        reply: bool = False, timeout: float = 1.0,
                        **options: Any) -> list[dict[str, Any]]:
        """Have the workers stop consuming from ``queue``."""
        return self._call("cancel_consumer", reply, destination, timeout, queue=queue)

    def enable_events(self, destination: Sequence[str] | None = None, reply: bool = False,
                      timeout: float = 1.0) -> list[dict[str, Any]]:
        """Turn task events on (Flower's "enable events")."""
        return self._call("enable_events", reply, destination, timeout)

    def disable_events(self, destination: Sequence[str] | None = None, reply: bool = False,
                       timeout: float = 1.0) -> list[dict[str, Any]]:
        """Turn task events off."""
        return self._call("disable_events", reply, destination, timeout)

    def revoke(self, task_id: str | Sequence[str], terminate: bool = False,
               signal: str | int | None = None, **kwargs: Any) -> None:
        """Revoke durably, through the control store (see ``AsyncResult.revoke``)."""
        from ..revoking import revoke

        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        revoke(ids, terminate=terminate)


class Inspect:
    """Celery's ``Inspect``: each method returns ``{hostname: reply}``, or None when no worker
    answered within the timeout; with ``destination`` given as one hostname (a string), that
    worker's reply alone, as Celery's."""

    def __init__(self, control: Control, *, destination: Sequence[str] | None = None,
                 timeout: float = 1.0, limit: int | None = None) -> None:
        self.control = control
        self.destination = destination
        self.timeout = timeout
        self.limit = limit

    def __getattr__(self, name: str) -> Any:
        raise unsupported("app.control.inspect()", name)

    def _ask(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        replies = self.control.broadcast(command, arguments, destination=self.destination,
                                         reply=True, timeout=self.timeout, limit=self.limit)
        merged = {host: answer for reply in replies for host, answer in reply.items()}
        if isinstance(self.destination, str):  # Celery: one named worker, its bare reply
            return merged.get(self.destination)
        return merged or None

    def ping(self) -> dict[str, Any] | None:
        return self._ask("ping")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        """Running requests; their arguments as reprs with ``safe`` (as Celery's)."""
        return self._ask("active", safe=safe)

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._ask("reserved", safe=safe)

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._ask("scheduled")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        return self._ask("registered")

    registered_tasks = registered

    def stats(self) -> dict[str, Any] | None:
        return self._ask("stats")

    def active_queues(self) -> dict[str, Any] | None:
        return self._ask("active_queues")

    def revoked(self) -> dict[str, Any] | None:
        """The revoked task ids the workers honour (durable: every worker has the same)."""
        return self._ask("revoked")

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        """The workers' TASKQ settings, URLs without their passwords."""
        return self._ask("conf", with_defaults=with_defaults)

    def query_task(self, *ids: str) -> dict[str, Any] | None:
        flat = [i for entry in ids for i in ([entry] if isinstance(entry, str) else entry)]
        return self._ask("query_task", ids=flat)
