"""Task middleware: wrap sending and running tasks, for tracing, tenant context or metrics.

List classes in ``TASKQ["MIDDLEWARE"]``; each may define either hook or both::

    class Middleware:
        def enqueue(self, envelopes, send):      # in the process that sends
            return send(envelopes)
        def execute(self, task, request, run):   # in the process that runs the task
            return run()

The first listed is the outermost, as in Django. ``enqueue`` sees the messages before they go
to the broker and passes on the ones to send: envelopes are values, so a middleware that adds a
header passes new ones (``send([e.with_headers(tenant=t) for e in envelopes])``; the worker
shows them as ``request.headers``); raising there refuses the send. After the middleware, the
producer seals each envelope: it is final from there on. ``execute`` wraps one run of a task;
what it returns is the task's result, and what it raises is the task's failure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string

from .conf import get_settings, on_reset
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .context import Request
    from .message import Envelope
    from .task import Task

Send = Callable[[list["Envelope"]], None]


class Middleware:
    """A base class with pass-through hooks; override the ones you need."""

    def enqueue(self, envelopes: list[Envelope], send: Send) -> None:
        send(envelopes)

    def execute(self, task: Task[Any, Any], request: Request, run: Callable[[], Any]) -> Any:
        return run()


@functools.lru_cache(maxsize=1)
def _chain() -> tuple[Any, ...]:
    loaded = []
    for path in get_settings().MIDDLEWARE:
        try:
            factory = import_string(path)
        except ImportError as exc:
            raise ConfigurationError(f"TASKQ['MIDDLEWARE'] names {path!r}, which cannot be "
                                     f"imported: {exc}") from exc
        instance = factory()
        if not (hasattr(instance, "enqueue") or hasattr(instance, "execute")):
            raise ConfigurationError(f"TASKQ['MIDDLEWARE'] entry {path!r} has neither an "
                                     "enqueue() nor an execute() method.")
        loaded.append(instance)
    return tuple(loaded)


on_reset(_chain.cache_clear)


def installed() -> Sequence[Any]:
    """The configured middleware instances, outermost first (built once per settings)."""
    return _chain()


@functools.lru_cache(maxsize=2)
def _with(hook: str) -> tuple[Any, ...]:
    return tuple(m for m in _chain() if hasattr(m, hook))


on_reset(_with.cache_clear)


def send_through(envelopes: list[Envelope], send: Send) -> None:
    """Call ``send(envelopes)`` inside every middleware's ``enqueue``."""
    chain = _with("enqueue")
    if not chain:
        send(envelopes)
        return

    def layer(index: int, current: list[Envelope]) -> None:
        if index == len(chain):
            send(current)
        else:
            chain[index].enqueue(current, functools.partial(layer, index + 1))

    layer(0, envelopes)


def run_through(task: Task[Any, Any], request: Request, run: Callable[[], Any]) -> Any:
    """Call ``run()`` inside every middleware's ``execute``."""
    chain = _with("execute")
    if not chain:
        return run()

    def layer(index: int) -> Any:
        if index == len(chain):
            return run()
        return chain[index].execute(task, request, functools.partial(layer, index + 1))

    return layer(0)
