"""The request a task is running under, visible to ``bind=True`` tasks as ``self.request``."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """Facts about the running execution of a task, with Celery's attribute names."""

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
    group_index: int | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    reply_to: str | None = None
    origin: str | None = None
    shadow: str | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    callbacks: Any = None
    errbacks: Any = None
    chain: Any = None
    chord: Any = None
    stamps: Any = None
    stamped_headers: Any = None
    is_eager: bool = False
    called_directly: bool = False
    utc: bool = True

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
