"""The worker's side of remote control: read commands from the mailbox, answer them.

Commands and reply shapes are Celery's (``celery.worker.control``), so scripts written against
``app.control`` read ours. Read-only commands (``inspect``) are answered from the monitor thread
under the worker's lock; commands that change the pool or the queues are handed to the worker's
loop (``Worker.apply_changes``), which runs them at its next step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import sensitive
from ..control.rate import parse_rate
from ..exceptions import TaskqError
from ..registry import registry
from .pools import MAX_THREADS

if TYPE_CHECKING:
    from .job import Job
    from .worker import Worker

logger = logging.getLogger(__name__)

Handler = Callable[["Worker", dict[str, Any]], Any]
HANDLERS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for the command ``name``."""
    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler
    return register


class RemoteControl:
    """Polls the control store's mailbox for one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.cursor: str | None = None
        self._failing = False
        # Take the cursor now, as the worker starts: a command sent once ``start()`` returned
        # is answered, instead of being skipped by the first poll a moment later.
        self.poll()

    def poll(self) -> int:
        """Answer the commands posted since the last poll; how many were for this worker."""
        hostname = self.worker.options.hostname
        try:
            self.cursor, commands = self.worker.control_store().read_commands(self.cursor)
            answered = 0
            for entry in commands:
                destination = entry.get("destination")
                if destination and hostname not in destination:
                    continue
                answered += 1
                reply = self.run(entry["name"], entry.get("arguments") or {})
                if entry.get("reply", True):
                    self._reply(entry, hostname, reply)
            self._failing = False
            return answered
        except Exception:  # noqa: BLE001 - remote control never stops the worker
            if not self._failing:
                logger.warning("remote control: cannot read commands; retrying", exc_info=True)
            self._failing = True
            return 0

    def _reply(self, entry: dict[str, Any], hostname: str, reply: Any) -> None:
        """Post a reply; one that cannot be posted is logged (the cursor is past its command
        already: raising would skip the commands after it in the batch, unanswered and not
        run)."""
        try:
            self.worker.control_store().send_reply(entry["id"], hostname, reply)
        except Exception:  # noqa: BLE001 - the caller times out, as for a lost reply
            logger.warning("remote control: cannot reply to %s", entry.get("name"),
                           exc_info=True)

    def run(self, name: str, arguments: dict[str, Any]) -> Any:
        """The reply to one command (an ``{"error": ...}`` for a bad one, never raises)."""
        handler = HANDLERS.get(name)
        if handler is None:
            return {"error": f"unknown command {name!r}; known: {', '.join(sorted(HANDLERS))}"}
        try:
            return handler(self.worker, arguments)
        except (TypeError, ValueError, KeyError, TaskqError) as exc:  # bad arguments
            return {"error": f"{name}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a failing command is a reply, not a crash
            logger.exception("remote control command %s failed", name)
            return {"error": f"{name} failed: {type(exc).__name__}: {exc}"}


# -- inspect ----------------------------------------------------------------------------------

def request_info(worker: Worker, job: Job, *, started: bool, safe: Any = False
                 ) -> dict[str, Any]:
    """A request as Celery's ``inspect active``/``reserved`` shows it: the arguments
    themselves, or their reprs with ``safe`` (as Celery's ``Request.info(safe)``); only the
    reprs when they are hidden (a sensitive task, a sender's argsrepr: sensitive.py)."""
    request = job.request
    info = request.delivery_info
    argsrepr, kwargsrepr = sensitive.request_reprs(request)
    safe = safe or sensitive.hidden(request.task, request.message_headers)
    return {"id": request.id, "name": job.task_name, "type": job.task_name,
            "args": argsrepr if safe else _plain(list(request.args), argsrepr),
            "kwargs": kwargsrepr if safe else _plain(dict(request.kwargs), kwargsrepr),
            "hostname": worker.options.hostname, "time_start": job_started(worker, job),
            "acknowledged": False, "worker_pid": None, "retries": request.retries,
            "root_id": request.root_id, "parent_id": request.parent_id,
            "delivery_info": {"exchange": info.get("exchange", ""),
                              "routing_key": info.get("routing_key"),
                              "priority": info.get("priority"), "redelivered": False},
            } | ({} if started else {"time_start": None})


def _plain(value: Any, text: str) -> Any:
    """``value`` when a JSON reply can carry it as it is (a pickled argument may not), else
    its repr ``text``."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return text
    return value


def job_started(worker: Worker, job: Job) -> float | None:
    """When ``job`` was handed to the pool (Unix seconds), if it was."""
    return worker.started_at.get(job.key)


@command("ping")
def ping(worker: Worker, arguments: dict[str, Any]) -> Any:
    return {"ok": "pong"}


@command("active")
def active(worker: Worker, arguments: dict[str, Any]) -> Any:
    with worker._held_lock:
        jobs = [job for _, job in worker.running.values()]
    return [request_info(worker, job, started=True, safe=arguments.get("safe"))
            for job in jobs]


@command("reserved")
def reserved(worker: Worker, arguments: dict[str, Any]) -> Any:
    with worker._held_lock:
        jobs = [job for _, job in worker.prefetched]
    return [request_info(worker, job, started=False, safe=arguments.get("safe"))
            for job in jobs]


@command("scheduled")
def scheduled(worker: Worker, arguments: dict[str, Any]) -> Any:
    """Nothing: a task with an ETA waits in the broker, never in a worker's memory (so no
    visibility timeout can redeliver it); ``manage.py taskq status`` counts them."""
    return []


@command("registered")
def registered(worker: Worker, arguments: dict[str, Any]) -> Any:
    return sorted(name for name in registry.keys() if not name.startswith("celery."))


@command("query_task")
def query_task(worker: Worker, arguments: dict[str, Any]) -> Any:
    given = arguments.get("ids") or []
    ids = {given} if isinstance(given, str) else set(given)  # one id, as Celery takes it
    with worker._held_lock:
        running = [job for _, job in worker.running.values()]
        waiting = [job for _, job in worker.prefetched]
    found = {job.request.id: ["active", request_info(worker, job, started=True)]
             for job in running if job.request.id in ids}
    found.update({job.request.id: ["reserved", request_info(worker, job, started=False)]
                  for job in waiting if job.request.id in ids})
    return found


@command("stats")
def stats(worker: Worker, arguments: dict[str, Any]) -> Any:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "total": dict(worker.totals), "pid": os.getpid(), "clock": str(worker.events_clock()),
        "uptime": int(time.monotonic() - worker.monotonic_start),
        "pool": {"implementation": worker.options.pool, "max-concurrency": worker.pool_size(),
                 "processes": worker.pool_pids(), "max-tasks-per-child":
                 worker.options.max_tasks_per_child or "N/A"},
        "broker": {"transport": worker.broker_transport()},
        "prefetch_count": worker.capacity,
        "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime, "maxrss": usage.ru_maxrss},
        "processed": worker.processed, "queues": list(worker.options.queues),
    } | ({"autoscaler": worker.autoscaler.info()} if worker.autoscaler else {})


@command("active_queues")
def active_queues(worker: Worker, arguments: dict[str, Any]) -> Any:
    return [{"name": queue, "exchange": {"name": queue, "type": "direct"},
             "routing_key": queue, "durable": True, "exclusive": False, "auto_delete": False,
             "no_ack": False, "alias": None, "queue_arguments": None, "binding_arguments": None,
             "bindings": [], "consumer_arguments": None, "expires": None,
             "message_ttl": None, "max_length": None, "max_length_bytes": None,
             "max_priority": None}
            for queue in worker.options.queues]


# -- control ----------------------------------------------------------------------------------

@command("shutdown")
def shutdown(worker: Worker, arguments: dict[str, Any]) -> Any:
    logger.warning("remote control: shutdown requested")
    worker.change(worker.request_stop)
    return {"ok": "shutting down"}


def _count(arguments: dict[str, Any]) -> int:
    n = arguments.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of at least 1, not {n!r}")
    return int(n)


def _resize(worker: Worker, target: int) -> None:
    if worker.options.pool == "solo":
        raise ValueError("the solo pool has one slot; use --pool prefork or threads")
    if worker.options.pool == "threads" and target > MAX_THREADS:
        raise ValueError(f"the threads pool grows to {MAX_THREADS} threads at most")
    if worker.autoscaler is not None:  # the range makes room for the new size
        worker.autoscaler.widen(target)
    worker.plan("slots", target, worker.resize_pool)


@command("pool_grow")
def pool_grow(worker: Worker, arguments: dict[str, Any]) -> Any:
    _resize(worker, worker.planned_slots() + _count(arguments))
    return {"ok": "pool will grow"}


@command("pool_shrink")
def pool_shrink(worker: Worker, arguments: dict[str, Any]) -> Any:
    n, size = _count(arguments), worker.planned_slots()
    if worker.options.pool != "solo" and size - n < 1:
        raise ValueError(f"cannot shrink a pool of {size} by {n}")
    _resize(worker, size - n)
    return {"ok": "pool will shrink"}


@command("autoscale")
def autoscale(worker: Worker, arguments: dict[str, Any]) -> Any:
    """Celery's: new bounds (either may be None); the loop resizes within them at its next step."""
    if worker.autoscaler is None:
        raise ValueError("autoscale is not enabled on this worker: start it with --autoscale "
                         "MAX,MIN (or TASKQ['WORKER_AUTOSCALE']); use pool_grow/pool_shrink")
    high, low = worker.autoscaler.update(arguments.get("max"), arguments.get("min"))
    worker.change(lambda: None)  # an idle worker waiting in reserve comes round at once
    return {"ok": f"autoscale now max={high} min={low}"}


def _task(arguments: dict[str, Any]) -> Any:
    name = arguments.get("task_name")
    if not name or name not in registry.keys():
        return None
    return registry.get(name)


@command("rate_limit")
def rate_limit(worker: Worker, arguments: dict[str, Any]) -> Any:
    task = _task(arguments)
    if task is None:
        return {"error": f"unknown task {arguments.get('task_name')!r}"}
    rate = parse_rate(arguments.get("rate_limit"))  # ValueError: a clear reply
    task._options = dataclasses.replace(task.options, rate_limit=rate)
    if rate is None:
        return {"ok": "rate limit disabled successfully"}
    return {"ok": "new rate limit set successfully"}


@command("time_limit")
def time_limit(worker: Worker, arguments: dict[str, Any]) -> Any:
    task = _task(arguments)
    if task is None:
        return {"error": f"unknown task {arguments.get('task_name')!r}"}
    soft, hard = arguments.get("soft"), arguments.get("hard")
    for value in (soft, hard):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value <= 0):
            raise ValueError(f"time limits are seconds above zero or None, not {value!r}")
    if soft is not None and hard is not None and soft >= hard:
        raise ValueError(f"the soft limit ({soft}) must be below the hard one ({hard})")
    task._options = dataclasses.replace(task.options, soft_time_limit=soft, time_limit=hard)
    return {"ok": "time limits set successfully"}


@command("add_consumer")
def add_consumer(worker: Worker, arguments: dict[str, Any]) -> Any:
    queue = arguments.get("queue")
    if not isinstance(queue, str) or not queue:
        raise ValueError("queue must be a queue name")
    queues = worker.planned_queues()
    if queue in queues:
        return {"ok": f"already consuming from {queue!r}"}
    worker.plan("queues", (*queues, queue), worker.set_queues)
    return {"ok": f"add consumer {queue}"}


@command("cancel_consumer")
def cancel_consumer(worker: Worker, arguments: dict[str, Any]) -> Any:
    queue = arguments.get("queue")
    queues = worker.planned_queues()
    if queue not in queues:
        return {"error": f"not consuming from {queue!r}"}
    if len(queues) == 1:
        raise ValueError(f"{queue!r} is the only queue this worker consumes; stop it instead")
    worker.plan("queues", tuple(q for q in queues if q != queue), worker.set_queues)
    return {"ok": f"no longer consuming from {queue!r}"}


@command("enable_events")
def enable_events(worker: Worker, arguments: dict[str, Any]) -> Any:
    worker.events.task_events = worker.events.enabled
    return {"ok": "task events enabled" if worker.events.enabled else "events are not stored "
            "or published (EVENTS_DATABASE is None and no Celery event exchange)"}


@command("disable_events")
def disable_events(worker: Worker, arguments: dict[str, Any]) -> Any:
    worker.events.task_events = False
    return {"ok": "task events disabled"}


@command("revoke")
def revoke(worker: Worker, arguments: dict[str, Any]) -> Any:
    """Celery's broadcast revoke (``celery control revoke``, Flower's buttons): our durable
    revoke, which every worker then honours (``signal`` is not chosen: terminate kills)."""
    from ..revoking import revoke as revoke_durably

    ids = arguments.get("task_id")
    ids = [ids] if isinstance(ids, str) else list(ids or [])
    revoke_durably(ids, terminate=bool(arguments.get("terminate")))
    return {"ok": f"tasks {', '.join(ids)} flagged as revoked"}


@command("revoked")
def revoked(worker: Worker, arguments: dict[str, Any]) -> Any:
    """The unexpired revoked ids (Flower's worker page asks for them)."""
    return sorted(worker.control_store().revocations())


@command("conf")
def conf(worker: Worker, arguments: dict[str, Any]) -> Any:
    """The TASKQ settings (Flower's config tab): URLs without their passwords, secrets
    (SIGNING_KEYS) hidden, values JSON cannot hold as their repr."""
    from ..conf import SECRET_SETTINGS, get_settings
    from ..service_url import HIDDEN, mask_text, without_secrets

    def shown(name: str, value: Any) -> Any:
        if name in SECRET_SETTINGS:
            return HIDDEN if value else value
        if isinstance(value, dict):  # transport options: sentinel_kwargs' password...
            value = without_secrets(value)
        if isinstance(value, str):
            return mask_text(value)
        if isinstance(value, (int, float, bool, type(None))):
            return value
        text = repr(value)
        masked = mask_text(text)
        if masked != text:  # a URL inside a list or mapping: its repr, without the password
            return masked
        return value if isinstance(value, (list, tuple, dict)) else text

    return {name: shown(name, value)
            for name, value in dataclasses.asdict(get_settings()).items()}

