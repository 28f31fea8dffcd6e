"""Celery's signals, with Celery's names, senders, keyword arguments and moments.

Receivers written for Celery carry over by changing the import. Connect them at import time
(a ``tasks`` module, a ``models`` module, an ``AppConfig.ready()``), so that the worker and its
prefork children, forked from it, have them. A receiver that raises is logged and never breaks
the task or the worker. Every receiver also gets ``signal`` and should accept ``**kwargs``.

Senders and arguments (each line: signal, sender, keyword arguments; then who sends it, when)::

    before_task_publish      task name (str)   body, exchange, routing_key, headers, properties,
                                               declare, retry_policy
        the sending process, before the message goes to the broker (headers and properties
        may be changed)
    after_task_publish       task name (str)   body, exchange, routing_key, headers, queue (ours)
        the sending process, once the broker has the message
    task_received            Worker            request
        worker: a message was accepted (before it waits for a free slot)
    task_prerun              Task              task_id, task, args, kwargs
        executor: just before the task function
    task_postrun             Task              task_id, task, args, kwargs, retval, state
        executor: just after it, whatever happened
    task_success             Task              result
        executor: the task returned
    task_retry               Task              request, reason, einfo
        executor: the task asked for a retry
    task_failure             Task              task_id, exception, args, kwargs, traceback, einfo
        executor: the task raised
    task_internal_error      Task              task_id, args, kwargs, request, exception,
                                               traceback, einfo
        executor: django_taskq itself failed around the task (not the task's own error)
    task_revoked             Task              request, terminated, signum, expired
        worker: revoked, expired, or terminated while running
    task_rejected            Worker            message, exc
        worker: a message it cannot run (malformed, refused content, arguments that do not fit)
    task_unknown             Worker            name, id, message, exc
        worker: a message for a task name not registered in this process
    celeryd_init             hostname (str)    instance, conf, options
        taskworker, first: the Worker is built, nothing started, logging not yet set up
    setup_logging            None              loglevel, logfile, format, colorize
        taskworker; if any receiver is connected, django_taskq leaves logging alone
    after_setup_logger       None              logger, loglevel, logfile, format, colorize
        taskworker: the django_taskq logger is set up
    after_setup_task_logger  None              logger, loglevel, logfile, format, colorize
        taskworker: the task logger (django_taskq.task) is set up
    celeryd_after_setup      hostname (str)    instance, conf
        taskworker: set up, before the worker runs
    import_modules           the AppConfig     (none)
        the app's ready(): before the tasks modules are imported
    worker_init              Worker            (none)
        worker: starting, before the pool starts
    worker_before_create_process   the pool    (none)
        prefork parent: before each child process is forked
    worker_process_init      None              (none)
        each prefork child, before its first task (and the solo pool as it starts, as Celery)
    worker_process_shutdown  None              pid, exitcode
        a prefork child that exits normally, just before it exits
    worker_ready             Worker            (none)
        worker: the pool and heartbeat have started
    heartbeat_sent           Worker            (none)
        the heartbeat thread, after each successful round
    worker_shutting_down     hostname (str)    sig, how ("Warm" or "Cold"), exitcode
        taskworker's SIGTERM/SIGINT handler, before the stop begins
    worker_shutdown          Worker            (none)
        worker: after the shutdown sequence
    beat_init, beat_embedded_init   BeatService (none)
        beat: once its declared schedules are upserted (taskbeat; taskworker --beat)

The *executor* is the process running the task: a prefork child, a thread, or the worker itself
with the solo pool. Where Celery passes a kombu ``Message`` (``task_rejected``,
``task_unknown``), django_taskq passes the :class:`~django_taskq.message.Envelope` (headers,
body bytes, properties, content type and encoding; it has no ack/reject: the worker has already
dead-lettered it). Celery's eventlet and ``user_preload_options`` signals have no meaning here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from django.dispatch import Signal as DjangoSignal
from django.dispatch.dispatcher import _make_id  # type: ignore[attr-defined]  # private, not in the stubs

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds between calls of a failing ``retry=True`` receiver: 2, 4, 6 ... then every 30
#: (the defaults of kombu's ``retry_over_time``, which Celery uses).
RETRY_START, RETRY_STEP, RETRY_MAX = 2.0, 2.0, 30.0
_sleep = time.sleep  # tests replace it


class Signal(DjangoSignal):
    """A Django signal that connects the way Celery's signals do.

    Differences from Django's: ``connect`` returns the receiver and works as a decorator with or
    without arguments; a ``str``/``bytes`` sender matches by value (Django matches by identity);
    a failing receiver under ``send_robust`` is logged on ``django_taskq.signals``. ``send``
    keeps Django's meaning (a receiver's error propagates); django_taskq sends with
    :func:`send`, which never raises.
    """

    def __init__(self, name: str, use_caching: bool = False) -> None:
        super().__init__(use_caching=use_caching)
        self.name = name
        # One object per sender value, kept alive here, so Django's id()-based matching sees
        # equal strings as the same sender.
        self._values: dict[str | bytes, str | bytes] = {}

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    def connect(self, *args: Any, **options: Any) -> Any:
        """Connect a receiver: ``sig.connect(fn, ...)``, ``@sig.connect`` or ``@sig.connect(...)``.

        Args:
            receiver: a callable taking ``sender`` and ``**kwargs``. Without it, ``connect``
                returns a decorator that takes it.
            sender: only signals from this sender: an object by identity, a str by value.
            weak: hold the receiver weakly (default, as Django and Celery do). The decorated
                function stays alive through its module-level name.
            dispatch_uid: connect at most one receiver under this id (per sender).
            retry: as Celery: call the receiver again, after 2, 4, ... 30 s, until it does not
                raise; it is held strongly and blocks the sending thread meanwhile.

        Returns:
            The receiver, unchanged (or the decorator).

        Raises:
            TypeError: the receiver is not callable.
            ValueError: the receiver does not accept ``**kwargs``.
        """
        if not args:
            def decorator(receiver: F) -> F:
                return self._connect(receiver, **options)
            return decorator
        return self._connect(*args, **options)

    def _connect(self, receiver: F, sender: Any = None, weak: bool = True,
                 dispatch_uid: Hashable | None = None, retry: bool = False) -> F:
        if not callable(receiver):
            raise TypeError(f"signal receivers must be callable, not {receiver!r}; "
                            f"give the sender as sender=...")
        if not _accepts_kwargs(receiver):
            raise ValueError(f"signal receiver {_name(receiver)} must accept keyword "
                             f"arguments (**kwargs)")
        target: Callable[..., Any] = receiver
        if retry:
            # Keyed as the plain receiver, so disconnect(receiver) finds the wrapper (Celery).
            dispatch_uid = dispatch_uid or _make_id(receiver)
            target, weak = _retrying(receiver), False
        key = self._values.setdefault(sender, sender) if _is_value(sender) else sender
        super().connect(target, key, weak, dispatch_uid)
        return receiver

    def _sender(self, sender: Any) -> Any:
        return self._values.get(sender, sender) if _is_value(sender) else sender

    def disconnect(self, receiver: Any = None, sender: Any = None,
                   dispatch_uid: Hashable | None = None, weak: object = None) -> bool:
        """Disconnect as Django does; ``weak`` is accepted, and ignored, as in Celery."""
        return super().disconnect(receiver, self._sender(sender), dispatch_uid)

    def has_listeners(self, sender: Any = None) -> bool:
        return super().has_listeners(self._sender(sender))

    def send(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        return super().send(self._sender(sender), **named)

    def send_robust(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        return super().send_robust(self._sender(sender), **named)

    async def asend(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        return await super().asend(self._sender(sender), **named)

    async def asend_robust(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        return await super().asend_robust(self._sender(sender), **named)

    def _log_robust_failure(self, receiver: Any, err: Exception) -> None:
        # Django's hook (5.0+) for send_robust's log line; 4.2 logs on django.dispatch instead.
        logger.error("signal %s: receiver %s failed: %r", self.name, _name(receiver), err,
                     exc_info=(type(err), err, err.__traceback__))


def _is_value(sender: Any) -> bool:
    return isinstance(sender, (str, bytes))


def _accepts_kwargs(receiver: Callable[..., Any]) -> bool:
    # Not Django's func_accepts_kwargs: its cache would hold weak receivers alive.
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): let a call tell
        return True
    return any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)


def _name(receiver: Any) -> str:
    return str(getattr(receiver, "__qualname__", None) or repr(receiver))


def _retrying(receiver: Callable[..., Any]) -> Callable[..., Any]:
    """``receiver``, called again until it returns (Celery's ``connect(retry=True)``)."""
    @functools.wraps(receiver)
    def until_it_succeeds(*args: Any, **kwargs: Any) -> Any:
        delay = RETRY_START
        while True:
            try:
                return receiver(*args, **kwargs)
            except Exception:  # noqa: BLE001 - retried until it succeeds, as asked
                logger.exception("signal receiver %s failed; retrying in %gs",
                                 _name(receiver), delay)
            _sleep(delay)
            delay = min(delay + RETRY_STEP, RETRY_MAX)
    return until_it_succeeds


def send(signal: DjangoSignal, sender: Any, **kwargs: Any) -> Sequence[tuple[Any, Any]]:
    """Send ``signal``; a failing receiver is logged, never raised into the task or worker.

    Returns:
        (receiver, response or exception) for every receiver called; empty when none listens.
    """
    if not signal.receivers:
        return ()  # the common case costs one attribute look-up
    return signal.send_robust(sender, **kwargs)


# -- Task ------------------------------------------------------------------------------------
before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_retry = Signal("task_retry")
task_failure = Signal("task_failure")
task_internal_error = Signal("task_internal_error")
task_revoked = Signal("task_revoked")
task_rejected = Signal("task_rejected")
task_unknown = Signal("task_unknown")

# -- Program: manage.py taskworker -----------------------------------------------------------
celeryd_init = Signal("celeryd_init")
celeryd_after_setup = Signal("celeryd_after_setup")

# -- Worker ----------------------------------------------------------------------------------
import_modules = Signal("import_modules")
worker_init = Signal("worker_init")
worker_before_create_process = Signal("worker_before_create_process")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down")
worker_shutdown = Signal("worker_shutdown")
heartbeat_sent = Signal("heartbeat_sent")

# -- Logging ---------------------------------------------------------------------------------
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")

# -- Beat (sent by beat.service.BeatService.start) ------------------------------------------
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")

__all__ = [
    "Signal", "send",
    "before_task_publish", "after_task_publish", "task_received", "task_prerun", "task_postrun",
    "task_success", "task_retry", "task_failure", "task_internal_error", "task_revoked",
    "task_rejected", "task_unknown", "celeryd_init", "celeryd_after_setup", "import_modules",
    "worker_init", "worker_before_create_process", "worker_process_init",
    "worker_process_shutdown", "worker_ready", "worker_shutting_down", "worker_shutdown",
    "heartbeat_sent", "setup_logging", "after_setup_logger", "after_setup_task_logger",
    "beat_init", "beat_embedded_init",
]
