"""Task: a registered function plus its options, with Celery's calling API."""

from __future__ import annotations

import functools
import traceback as traceback_module
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from django.db import transaction
from django.utils import timezone

from . import producer, serializers, states
from .conf import get_settings
from .context import Request, activate, current_request, schedule_retry, take_scheduled_retry
from .exceptions import Retry
from .outcome import Outcome, exception_payload
from .registry import registry
from .result import AsyncResult, EagerResult, ResultMeta
from .retries import autoretry, make_retry

P = ParamSpec("P")


class _Unset:
    """Marks an option that was not given (None is a meaningful ``max_retries``: no limit)."""


UNSET = _Unset()


def _limit(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}.")
    return float(value)

R = TypeVar("R")


class Task(Generic[P, R]):
    """A function that can run here (call it) or in a worker (``delay``/``apply_async``)."""

    #: Celery's defaults, so habits carry over.
    max_retries: int | None = 3
    default_retry_delay: float = 180.0

    def __init__(self, func: Callable[..., R], *, name: str | None = None, bind: bool = False,
                 queue: str | None = None, priority: int | None = None,
                 ignore_result: bool | None = None, serializer: str | None = None,
                 max_retries: int | None | _Unset = UNSET,
                 default_retry_delay: float | None = None,
                 autoretry_for: Sequence[type[BaseException]] = (),
                 dont_autoretry_for: Sequence[type[BaseException]] = (),
                 retry_kwargs: dict[str, Any] | None = None,
                 retry_backoff: bool | float = False, retry_backoff_max: float | None = 600.0,
                 retry_jitter: bool = True, time_limit: float | None = None,
                 soft_time_limit: float | None = None, track_started: bool | None = None,
                 rate_limit: str | float | None = None, key_rate_limit: str | float | None = None,
                 rate_limit_key: Callable[..., Any] | None = None) -> None:
        from .control.rate import parse_rate

        self.func = func
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        self.bind = bind
        self.queue = queue
        self.priority = producer.check_priority(priority) if priority is not None else None
        self.ignore_result = ignore_result
        self.serializer = serializer
        if not isinstance(max_retries, _Unset):
            self.max_retries = max_retries
        if default_retry_delay is not None:
            self.default_retry_delay = float(default_retry_delay)
        self.autoretry_for = tuple(autoretry_for)
        self.dont_autoretry_for = tuple(dont_autoretry_for)
        self.retry_kwargs = dict(retry_kwargs or {})
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.time_limit = _limit("time_limit", time_limit)
        self.soft_time_limit = _limit("soft_time_limit", soft_time_limit)
        self.track_started = track_started
        self.rate_limit = parse_rate(rate_limit)
        self.key_rate_limit = parse_rate(key_rate_limit)
        if (rate_limit_key is None) != (self.key_rate_limit is None):
            raise ValueError(f"Task {self.name}: key_rate_limit and rate_limit_key go together "
                             "(the limit, and the function that picks the key from the "
                             "arguments).")
        self.rate_limit_key = rate_limit_key
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def request(self) -> Request:
        """The request this task is running under (empty when called directly)."""
        current = current_request()
        if current is not None and current.task == self.name:
            return current
        return Request(task=self.name, called_directly=True)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> R:
        """Run the function in this process, passing the task first when ``bind=True``, and
        retrying on ``autoretry_for`` exceptions."""
        if self.autoretry_for:
            return autoretry(self, functools.partial(self._call, args, kwargs))  # type: ignore[no-any-return]
        return self._call(args, kwargs)

    def _call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> R:
        if self.bind:
            return self.func(self, *args, **kwargs)
        return self.func(*args, **kwargs)

    def retry(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              exc: BaseException | None = None, throw: bool = True,
              eta: datetime | None = None, countdown: float | None = None,
              max_retries: int | None = None, **options: Any) -> Retry:
        """Run this task again later (same id, ``retries + 1``); use as ``raise self.retry(...)``.

        Waits ``countdown`` seconds (default ``default_retry_delay``) or until ``eta``; new
        ``args``/``kwargs`` replace the current ones. When ``max_retries`` retries were made
        already, raises ``exc`` (the task fails with it) or MaxRetriesExceededError.

        Raises:
            Retry: always, unless ``throw=False`` (then it is returned; the retry still
                happens and this run's return value is ignored).
        """
        if options:
            raise TypeError(f"retry() does not take {', '.join(sorted(options))}; pass args, "
                            "kwargs, exc, eta, countdown or max_retries.")
        retry = make_retry(self, args=args, kwargs=kwargs, exc=exc, eta=eta,
                           countdown=countdown, max_retries=max_retries)
        if throw:
            raise retry
        schedule_retry(retry)
        return retry

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None) -> None:
        """Record a custom state (e.g. ``PROGRESS``) with ``meta``, which ``AsyncResult.info``
        shows until the task finishes."""
        request = self.request
        task_id = task_id or request.id
        if not task_id:
            raise ValueError("update_state() needs a task_id outside a running task.")
        if request.is_eager and task_id == request.id:
            return  # nothing is stored for an eager run
        from .results import get_backend

        payload, content_type, encoding = serializers.dumps(meta, get_settings().RESULT_SERIALIZER)
        get_backend().store(Outcome(
            task_id=task_id, task_name=self.name, state=state or states.PENDING, payload=payload,
            content_type=content_type, content_encoding=encoding, worker=request.hostname or "",
            retries=request.retries, date_started=timezone.now()))

    def resolve_ignore_result(self, override: bool | None = None) -> bool:
        """Whether results of this call are stored: call option, task option, then setting."""
        for choice in (override, self.ignore_result):
            if choice is not None:
                return choice
        return get_settings().TASK_IGNORE_RESULT

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send the task to a worker with these arguments."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        serializer: str | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> AsyncResult:
        """Send the task to a worker.

        Args:
            countdown / eta: run no earlier than this many seconds from now / this time.
            expires: seconds, timedelta or datetime after which the task is revoked unrun.
            queue, priority: routing; priority 0-9, higher runs first.
            task_id: use this id instead of a fresh one.
            headers: extra message headers.

        Raises:
            ValueError: a bad option (priority out of range, both countdown and eta).
            SerializationError: the arguments cannot be encoded.
            BrokerError: the broker refused or could not be reached in time.
        """
        task_id = task_id or producer.new_task_id()
        if get_settings().TASK_ALWAYS_EAGER:
            return self.apply(args, kwargs, task_id=task_id)
        options = self._options(countdown=countdown, eta=eta, expires=expires, queue=queue,
                                priority=priority, headers=headers, serializer=serializer,
                                ignore_result=ignore_result, time_limit=time_limit,
                                soft_time_limit=soft_time_limit)
        envelope = producer.envelope_for(self.name, task_id, args or (), kwargs or {}, options)
        producer.send([envelope], record_results=not options.ignore_result)
        return AsyncResult(task_id, task_name=self.name)

    def _options(self, *, countdown: float | None = None, eta: datetime | None = None,
                 expires: float | timedelta | datetime | None = None,
                 time_limit: float | None = None, soft_time_limit: float | None = None,
                 priority: int | None = None, ignore_result: bool | None = None,
                 **rest: Any) -> producer.SendOptions:
        now = timezone.now()
        parent = current_request()
        return producer.default_options(
            eta=producer.resolve_eta(countdown, eta, now),
            expires=producer.resolve_expires(expires, now),
            priority=producer.check_priority(priority if priority is not None else self.priority),
            ignore_result=self.resolve_ignore_result(ignore_result),
            timelimit=(time_limit, soft_time_limit),
            queue=rest.pop("queue", None) or self.queue,
            serializer=rest.pop("serializer", None) or self.serializer,
            parent_id=parent.id if parent else None,
            root_id=(parent.root_id or parent.id) if parent else None,
            **rest,
        )

    def apply_async_on_commit(self, args: Sequence[Any] | None = None,
                              kwargs: dict[str, Any] | None = None, *, using: str | None = None,
                              **options: Any) -> AsyncResult:
        """Send the task when the current transaction on ``using`` commits (now if none is open).

        The returned AsyncResult's id is fixed now; nothing is sent if the transaction rolls back.
        """
        task_id = options.pop("task_id", None) or producer.new_task_id()
        if get_settings().TASK_ALWAYS_EAGER:
            eager = EagerResult(task_id, None)
            transaction.on_commit(lambda: eager.fill(self.apply(args, kwargs, task_id=task_id)),
                                  using=using)
            return eager
        send = functools.partial(self.apply_async, args, kwargs, task_id=task_id, **options)
        transaction.on_commit(send, using=using)
        return AsyncResult(task_id, task_name=self.name)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay`` after the current transaction commits (on the default database)."""
        return self.apply_async_on_commit(args, kwargs)

    def apply_many(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]],
                   **options: Any) -> list[AsyncResult]:
        """Send many calls of this task in one broker round trip: ``[(args, kwargs), ...]``."""
        pairs = producer.pair_calls(calls)
        if get_settings().TASK_ALWAYS_EAGER:
            return [self.apply(args, kwargs) for args, kwargs in pairs]
        send_options = self._options(**options)
        envelopes = [producer.envelope_for(self.name, producer.new_task_id(), args, kwargs,
                                           send_options) for args, kwargs in pairs]
        if envelopes:
            producer.send(envelopes, record_results=not send_options.ignore_result)
        return [AsyncResult(e.message_id, task_name=self.name) for e in envelopes]

    def delay_many(self, arguments: Iterable[Sequence[Any]], **options: Any) -> list[AsyncResult]:
        """Send one call per positional-argument tuple: ``add.delay_many([(1, 2), (3, 4)])``."""
        return self.apply_many(((args, {}) for args in arguments), **options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              *, task_id: str | None = None, retries: int = 0) -> EagerResult:
        """Run the task here and now, and return its result as an EagerResult.

        A retry runs again at once (its countdown is not waited), as in Celery.
        """
        task_id = task_id or producer.new_task_id()
        request = Request(id=task_id, task=self.name, args=tuple(args or ()),
                          kwargs=dict(kwargs or {}), root_id=task_id, is_eager=True,
                          retries=retries)
        started = timezone.now()
        with activate(request):
            try:
                value, state, tb = self.run(*request.args, **request.kwargs), states.SUCCESS, None
                retry = take_scheduled_retry()
            except Retry as raised:
                retry = raised
            except Exception as exc:  # noqa: BLE001 - the failure is the result
                value, state = exception_payload(exc), states.FAILURE
                tb = traceback_module.format_exc()
                retry = take_scheduled_retry()  # retry(throw=False), then a failure
        if retry is not None:
            again_args = request.args if retry.retry_args is None else retry.retry_args
            again_kwargs = request.kwargs if retry.retry_kwargs is None else retry.retry_kwargs
            return self.apply(again_args, again_kwargs, task_id=task_id, retries=retries + 1)
        meta = ResultMeta(task_id=task_id, state=state, result=value, traceback=tb,
                          task_name=self.name, date_started=started, date_done=timezone.now(),
                          retries=retries)
        return EagerResult(task_id, meta)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """The result handle for ``task_id``."""
        return AsyncResult(task_id, task_name=self.name)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a function as a task: ``@task`` or ``@task(name=..., bind=True, queue=...)``."""
    def register(function: Callable[..., Any]) -> Task[Any, Any]:
        created: Task[Any, Any] = Task(function, **options)
        registry.register(created)
        return created

    return register(func) if func is not None else register


shared_task = task
