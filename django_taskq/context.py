"""The request a task is running under, visible to ``bind=True`` tasks as ``self.request``."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """Facts about the running execution of a task, with Celery's attribute names.

    The fields are what the worker reads for every run; the rest of Celery's Context fields
    are properties over the message's headers, properties and embed (built once per task run:
    a field costs on every message, a property only when read).
    """

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    #: The custom headers (``apply_async(headers=...)``, middleware), as in Celery.
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    time_limit: float | None = None
    soft_time_limit: float | None = None
    is_eager: bool = False
    called_directly: bool = False
    #: Every header of the message, protocol ones included.
    message_headers: dict[str, Any] = field(default_factory=dict)
    #: The body's embedded workflow fields (callbacks, errbacks, chain, chord).
    embed: dict[str, Any] = field(default_factory=dict)

    utc = True  # Celery's Context field; times are always aware here

    @property
    def group_index(self) -> int | None:
        """Position in its group (``apply_async(group_index=...)``)."""
        return self.message_headers.get("group_index")

    @property
    def correlation_id(self) -> str | None:
        """The message's correlation id (the task id unless the sender chose one)."""
        return self.properties.get("correlation_id")

    @property
    def reply_to(self) -> str | None:
        """Where the sender wants replies (``apply_async(reply_to=...)``)."""
        return self.properties.get("reply_to") or None

    @property
    def origin(self) -> str | None:
        """``gen<pid>@<host>`` of the sender."""
        return self.message_headers.get("origin")

    @property
    def shadow(self) -> str | None:
        """The name shown instead of the task's (``apply_async(shadow=...)``)."""
        return self.message_headers.get("shadow")

    @property
    def argsrepr(self) -> str | None:
        """What is shown instead of the positional arguments."""
        return self.message_headers.get("argsrepr")

    @property
    def kwargsrepr(self) -> str | None:
        """What is shown instead of the keyword arguments."""
        return self.message_headers.get("kwargsrepr")

    @property
    def ignore_result(self) -> bool:
        """Whether the sender asked for no result."""
        return bool(self.message_headers.get("ignore_result"))

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        """``(hard, soft)`` limits in force for this run."""
        return (self.time_limit, self.soft_time_limit)

    @property
    def stamps(self) -> Any:
        """Celery's stamping header, as sent."""
        return self.message_headers.get("stamps")

    @property
    def stamped_headers(self) -> Any:
        """Celery's stamping header, as sent."""
        return self.message_headers.get("stamped_headers")

    @property
    def callbacks(self) -> Any:
        """The body's ``callbacks`` (set by Celery senders; not acted on yet)."""
        return self.embed.get("callbacks")

    @property
    def errbacks(self) -> Any:
        """The body's ``errbacks``."""
        return self.embed.get("errbacks")

    @property
    def chain(self) -> Any:
        """The body's ``chain``."""
        return self.embed.get("chain")

    @property
    def chord(self) -> Any:
        """The body's ``chord``."""
        return self.embed.get("chord")

    def get(self, key: str, default: Any = None) -> Any:
        """An attribute (or custom header) by name, or ``default`` (Celery's ``Context.get``)."""
        return getattr(self, key, default)

    def __getattr__(self, name: str) -> Any:
        """Custom message headers are attributes too, as in Celery (``self.request.tenant``)."""
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            headers = object.__getattribute__(self, "headers")
        except AttributeError:  # not initialised yet (unpickling)
            raise AttributeError(name) from None
        if name in headers:
            return headers[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or header {name!r}")

    @property
    def children(self) -> list[Any]:
        """Results of tasks sent from this run (Celery's ``trail``; empty until canvas)."""
        return []


_current: ContextVar[Request | None] = ContextVar("django_taskq_request", default=None)
# ``self.retry(throw=False)``: the retry is remembered here and acted on when the run ends.
_scheduled_retry: ContextVar[Any] = ContextVar("django_taskq_retry", default=None)


def push(request: Request) -> Any:
    """Make ``request`` current until :func:`pop` with the token returned (Celery's
    ``task.push_request``, for tests of bound tasks)."""
    return _current.set(request)


def pop(token: Any) -> None:
    """Undo a :func:`push`."""
    _current.reset(token)


def current_request() -> Request | None:
    """The request of the task running in this thread or context, if any."""
    return _current.get()


class activate:  # noqa: N801 - used as a context manager, reads as a verb
    """Make ``request`` the current one for the duration of a ``with`` block."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._token: Any = None
        self._retry_token: Any = None

    def __enter__(self) -> Request:
        self._token = _current.set(self._request)
        self._retry_token = _scheduled_retry.set(None)  # never inherit another run's retry
        return self._request

    def __exit__(self, *exc: object) -> None:
        _scheduled_retry.reset(self._retry_token)
        _current.reset(self._token)



def schedule_retry(retry: Any) -> None:
    """Remember a retry requested without raising (``throw=False``)."""
    _scheduled_retry.set(retry)


def take_scheduled_retry() -> Any:
    """The retry remembered during this run, if any, forgetting it."""
    retry = _scheduled_retry.get()
    if retry is not None:
        _scheduled_retry.set(None)
    return retry
