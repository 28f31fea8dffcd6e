"""Task: a registered function plus its options, with Celery's calling API and handlers.

As in Celery, ``@task`` builds a subclass of the task class (``base=``, else
``TASKQ["TASK_CLASS"]``, else :class:`Task`) whose attributes are the decorator's keywords, and
registers one instance of it. A ``Task`` subclass with ``run()`` and a ``name`` is a task too
(register it with ``registry.register(MyTask())``). Options are read from the attributes once,
checked, and kept as ``task.options`` (see options.py).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar

from django.db import transaction

from . import calloptions, context, producer, routing, serializers, states
from .canvas.methods import CanvasMethods
from .conf import get_settings, on_reset
from .context import Request, current_request, schedule_retry
from .exceptions import Retry
from .message import Envelope, SendOptions
from .options import TaskOptions, annotations_for, resolve
from .outcome import Outcome, reply_address
from .registry import registry
from .result import AsyncResult, EagerResult
from .retries import autoretry, make_retry

P = ParamSpec("P")
_REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(Request))
#: Options ``self.retry(**options)`` passes on to the retry's message, as Celery's retry does.
RETRY_OPTIONS = frozenset({"queue", "priority", "headers"})
R = TypeVar("R")


class Task(CanvasMethods, Generic[P, R]):
    """A function that can run here (call it) or in a worker (``delay``/``apply_async``).

    Class attributes are Celery's task options with Celery's defaults; set them on a subclass
    (``base=MyTask``) or as ``@task`` keywords. Override the handlers to hook into runs.
    """

    name: str = ""
    max_retries: int | None = 3
    default_retry_delay: float = 180
    typing: bool = True
    #: False for tasks built by ``@task`` from a function that does not take ``self``.
    bind: bool = True

    def __init__(self) -> None:
        if not self.name:
            cls = type(self)
            self.name = f"{cls.__module__}.{cls.__qualname__}"
        self._own_options = resolve(self, self.name)  # checked when the task is defined
        self._options: TaskOptions | None = None
        self._pushed: list[Any] = []
        self._plain_run = self.run
        self._wrap_run(self._own_options)

    def _wrap_run(self, options: TaskOptions) -> None:
        """``run`` as the options want it: pydantic validation inside, autoretry around it
        (Celery's order); again when TASK_ANNOTATIONS change either."""
        run = self._plain_run
        self._wrapped_for = (options.pydantic, options.autoretry_for)
        if options.pydantic:
            from .pydantic_args import validating

            run = validating(self, run)
        if options.autoretry_for:
            inner = run
            run = functools.wraps(inner)(
                lambda *args, **kwargs: autoretry(self, functools.partial(inner, *args, **kwargs)))
            if inspect.iscoroutinefunction(self._plain_run):  # its exceptions come when awaited
                run = functools.wraps(inner)(
                    functools.partial(_autoretry_async, self, inner))  # type: ignore[assignment]
        self.run = run  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def options(self) -> TaskOptions:
        """The task's checked options, with ``TASK_ANNOTATIONS`` applied (read once)."""
        if self._options is None:
            annotations = annotations_for(self, get_settings().TASK_ANNOTATIONS)
            options = resolve(self, self.name, annotations) if annotations \
                else self._own_options
            if (options.pydantic, options.autoretry_for) != self._wrapped_for:
                self._wrap_run(options)  # an annotation switched a wrapper on (or off again)
            self._options = options
        return self._options

    def forget_options(self) -> None:
        """Read the options again on next use (after the settings changed)."""
        self._options = None

    @property
    def app(self) -> Any:
        """The Celery-style app object (``self.app.send_task``, ``self.app.AsyncResult``)."""
        from .app import current_app

        return current_app

    @property
    def request(self) -> Request:
        """The request this task is running under (empty when called directly)."""
        current = current_request()
        if current is not None and current.task == self.name:
            return current
        return Request(task=self.name, called_directly=True)

    def push_request(self, **fields: Any) -> None:
        """Run as if under a request with these fields (Celery's ``push_request``, used by
        tests of bound tasks: ``add.push_request(id="x", retries=2)``); unknown names become
        custom headers. Undo with :meth:`pop_request`."""
        known = {name: value for name, value in fields.items() if name in _REQUEST_FIELDS}
        headers = {**known.pop("headers", {}),
                   **{name: value for name, value in fields.items() if name not in known}}
        headers.pop("headers", None)
        request = Request(**{"task": self.name, **known, "headers": headers})
        self._pushed.append(context.push(request))

    def pop_request(self) -> None:
        """Undo the last :meth:`push_request`."""
        context.pop(self._pushed.pop())

    def run(self, *args: Any, **kwargs: Any) -> R:
        """The task's body; ``@task`` sets it to the decorated function."""
        raise NotImplementedError(f"Task {self.name} has no run() method.")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task here, now (no message, no result stored)."""
        return self.run(*args, **kwargs)

    def signature_of_run(self) -> inspect.Signature | None:
        """The signature calls must fit (without ``self``), or None when unknown."""
        return self._run_signature[0]

    @functools.cached_property
    def _run_signature(self) -> tuple[inspect.Signature | None]:
        try:  # inspect.signature is slow: once per task object
            return (inspect.signature(self.run),)
        except (TypeError, ValueError):
            return (None,)

    def argument_mismatch(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
        """Why ``args``/``kwargs`` cannot be bound to ``run``, or None when they can (or when
        the task's ``typing`` option is off: it then runs with what it is given, as in Celery,
        whose ``__call__`` overrides may reshape the arguments before ``run`` sees them)."""
        signature = self.signature_of_run() if self.options.typing else None
        if signature is None:
            return None
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            return f"{self.name}{signature}: {exc}"
        return None

    # -- handlers: called by the worker (and eager runs) with Celery's arguments ----------

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Just before the task runs."""

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        """The task returned ``retval``."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        """The task raised ``exc`` (``einfo``: an ExceptionInfo with the traceback)."""

    def on_retry(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], einfo: Any) -> None:
        """The task asked to be retried because of ``exc``."""

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], einfo: Any) -> None:
        """After the run, whatever happened (``status`` is the state stored)."""

    # -- inside a running task --------------------------------------------------------------

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
        unknown = sorted(set(options) - RETRY_OPTIONS)
        if unknown:
            raise TypeError(f"retry() does not take {', '.join(unknown)}; pass args, kwargs, "
                            f"exc, eta, countdown, max_retries or {', '.join(sorted(RETRY_OPTIONS))}.")
        retry = make_retry(self, args=args, kwargs=kwargs, exc=exc, eta=eta,
                           countdown=countdown, max_retries=max_retries, options=options)
        if throw:
            raise retry
        schedule_retry(retry)
        return retry

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None, **kwargs: Any) -> None:
        """Record a custom state (e.g. ``PROGRESS``) with ``meta``, which ``AsyncResult.info``
        shows until the task finishes."""
        request = self.request
        task_id = task_id or request.id
        if not task_id:
            raise ValueError("update_state() needs a task_id outside a running task.")
        if request.is_eager and task_id == request.id:
            return  # nothing is stored for an eager run
        from .clock import clock_now
        from .results import get_backend

        payload, content_type, encoding = serializers.dumps(meta, get_settings().RESULT_SERIALIZER)
        get_backend().store(Outcome(
            task_id=task_id, task_name=self.name, state=state or states.PENDING, payload=payload,
            content_type=content_type, content_encoding=encoding, worker=request.hostname or "",
            retries=request.retries, date_started=clock_now(),
            **(reply_address(request) if task_id == request.id else {})))

    def resolve_ignore_result(self, override: bool | None = None) -> bool:
        """Whether results of this call are stored: call option, task option, then setting."""
        for choice in (override, self.options.ignore_result):
            if choice is not None:
                return choice
        return get_settings().TASK_IGNORE_RESULT

    # -- calling --------------------------------------------------------------------------

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send the task to a worker with these arguments."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        """Send the task to a worker, with any option of Celery's ``apply_async``.

        Common options: ``countdown``/``eta`` (run no earlier than), ``expires`` (seconds,
        timedelta or datetime after which it is revoked unrun), ``queue``, ``priority`` (0-9,
        higher first), ``task_id``, ``headers``, ``time_limit``/``soft_time_limit``,
        ``ignore_result``, ``serializer``, ``shadow``. See docs/calling.md for all of them.

        Raises:
            TypeError: an unknown option, or arguments that do not fit the task.
            ValueError: a bad option value (priority out of range, both countdown and eta).
            SerializationError: the arguments cannot be encoded.
            BrokerError: the broker refused or could not be reached in time.
        """
        envelope, send_options = self._message(args, kwargs, options)
        if get_settings().TASK_ALWAYS_EAGER:
            from . import eager

            return eager.run(envelope, self, through_middleware=True)
        producer.send([envelope], record_results=not send_options.ignore_result,
                      options=send_options)
        return AsyncResult(envelope.message_id, task_name=self.name)

    def _message(self, args: Sequence[Any] | None, kwargs: dict[str, Any] | None,
                 options: dict[str, Any]) -> tuple[Envelope, SendOptions]:
        """The checked, encoded message for one call, and its resolved options."""
        args, kwargs = calloptions.arguments(self, args, kwargs)
        task_id = options.pop("task_id", None) or calloptions.new_task_id()
        send_options = calloptions.resolve(self.name, self, args, kwargs, options)
        return producer.envelope_for(self.name, task_id, args, kwargs, send_options), send_options

    def apply_async_on_commit(self, args: Sequence[Any] | None = None,
                              kwargs: dict[str, Any] | None = None, *, using: str | None = None,
                              **options: Any) -> AsyncResult:
        """Send the task when the current transaction on ``using`` commits (now if none is open).

        The returned AsyncResult's id is fixed now; nothing is sent if the transaction rolls back.
        The call is checked now (options, arguments, encoding), so a mistake raises here, not
        after the commit; times (``countdown``) count from the commit, as Celery's do.
        """
        task_id = options.pop("task_id", None) or calloptions.new_task_id()
        self._message(args, kwargs, {**options, "task_id": task_id})
        if get_settings().TASK_ALWAYS_EAGER:
            handle = EagerResult(task_id, None)
            transaction.on_commit(lambda: handle.fill(
                self.apply_async(args, kwargs, task_id=task_id, **options)), using=using)
            return handle
        send = functools.partial(self.apply_async, args, kwargs, task_id=task_id, **options)
        transaction.on_commit(send, using=using)
        return AsyncResult(task_id, task_name=self.name)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay`` after the current transaction commits (on the default database)."""
        return self.apply_async_on_commit(args, kwargs)

    def apply_many(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]],
                   **options: Any) -> list[AsyncResult]:
        """Send many calls of this task in one broker round trip: ``[(args, kwargs), ...]``."""
        if "task_id" in options:
            raise TypeError("apply_many() makes one task id per call; task_id= names a single "
                            "call: use apply_async for it.")
        pairs = producer.pair_calls(calls)
        if get_settings().TASK_ALWAYS_EAGER:
            return [self.apply_async(args, kwargs, **options) for args, kwargs in pairs]
        envelopes = []
        send_options = None
        per_call = bool(routing.routers())  # a router may route each call by its arguments
        for given_args, given_kwargs in pairs:
            args, kwargs = calloptions.arguments(self, given_args, given_kwargs)
            if per_call or send_options is None:
                send_options = calloptions.resolve(self.name, self, args, kwargs, dict(options))
            envelopes.append(producer.envelope_for(self.name, calloptions.new_task_id(), args,
                                                   kwargs, send_options))
        if envelopes and send_options is not None:
            producer.send(envelopes, record_results=not send_options.ignore_result,
                          options=send_options)
        return [AsyncResult(e.message_id, task_name=self.name) for e in envelopes]

    def delay_many(self, arguments: Iterable[Sequence[Any]], **options: Any) -> list[AsyncResult]:
        """Send one call per positional-argument tuple: ``add.delay_many([(1, 2), (3, 4)])``."""
        return self.apply_many(((args, {}) for args in arguments), **options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              *, task_id: str | None = None, retries: int = 0, throw: bool | None = None,
              **options: Any) -> EagerResult:
        """Run the task here and now, through the same steps as a worker, and return its
        result as an EagerResult.

        The arguments and the result are encoded and decoded as they would be for a worker;
        middleware, signals and handlers run; a retry runs again at once (its countdown is
        not waited), as in Celery. With ``throw`` (default TASK_EAGER_PROPAGATES) a failure
        raises its exception here.
        """
        from . import eager

        for ignored in ("logfile", "loglevel"):  # Celery's apply() takes them; nothing to do
            options.pop(ignored, None)
        args, kwargs = calloptions.arguments(self, args, kwargs)
        send_options = calloptions.resolve(self.name, self, args, kwargs, options)
        envelope = producer.envelope_for(self.name, task_id or calloptions.new_task_id(), args,
                                         kwargs, send_options)
        if retries:
            envelope = envelope.with_headers(retries=retries)
        return eager.run(envelope, self, through_middleware=False, throw=throw)

    def send_task(self, name: str, args: Sequence[Any] | None = None,
                  kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Send another task by name (Celery's ``self.app.send_task`` inside a task)."""
        return producer.send_task(name, args, kwargs, **options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:  # noqa: N802
        """The result handle for ``task_id`` (Celery's name)."""
        return AsyncResult(task_id, task_name=self.name)


async def _autoretry_async(task: Task[Any, Any], run: Any, *args: Any, **kwargs: Any) -> Any:
    """``autoretry`` for an ``async def`` task: the policy judges what its awaiting raised."""
    try:
        return await run(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - judged (and re-raised) by the autoretry policy
        return autoretry(task, functools.partial(_raise, exc))


def _raise(exc: BaseException) -> Any:
    raise exc


def _celery_attributes() -> None:
    """Every option is a class attribute of Task with Celery's default, as in Celery, so task
    code and subclasses can read ``self.rate_limit`` and friends (``options`` is the checked
    form the worker uses)."""
    for spec in fields(TaskOptions):
        if not hasattr(Task, spec.name):
            factory = spec.default_factory  # every field has a default or a factory
            default = factory() if factory is not MISSING else spec.default
            setattr(Task, spec.name, default)


_celery_attributes()


def _forget_all_options() -> None:
    for name in registry:
        registry.get(name).forget_options()


on_reset(_forget_all_options)


# The decorator lives in definition.py; importable from here as before.
from .definition import build_task, default_task_class, shared_task, task  # noqa: E402

__all__ = ["Task", "build_task", "default_task_class", "shared_task", "task"]
