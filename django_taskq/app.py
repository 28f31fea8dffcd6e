"""A stand-in for a Celery project's app object, so ``proj/celery.py`` and ``@app.task`` code
keep working after ``from celery import Celery`` becomes ``from django_taskq import Celery``.

It holds no state of its own beyond what Celery's settings would: tasks go to the process-wide
registry, settings live in Django settings (``TASKQ``, or the ``CELERY_*`` names), and what code
sets on ``app.conf`` is read as Celery settings given in code (celery_settings.code_settings).
"""

from __future__ import annotations

import importlib
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from . import discovery, producer
from .celery_settings import SETTINGS, code_settings
from .conf import reset_settings
from .exceptions import ConfigurationError
from .registry import registry
from .result import AsyncResult, revoke
from .signals import Signal
from .task import Task, task
from .task import Task as _Task  # for annotations in Celery's body, where Task is Celery.Task

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

#: Sent with the app as sender once the settings are read and once every task module is
#: imported (Celery's ``on_after_configure`` and ``on_after_finalize``).
on_after_configure = Signal("on_after_configure")
on_after_finalize = Signal("on_after_finalize")

_CELERY_NAMES = frozenset(SETTINGS.values())
_made: weakref.WeakSet[Celery] = weakref.WeakSet()


class Settings(MutableMapping[str, Any]):
    """``app.conf``: Celery settings set in code, by their lowercase Celery names.

    Reading gives what was set here; the values in effect are django_taskq's settings
    (``django_taskq.conf.get_settings()``).
    """

    def __getitem__(self, name: str) -> Any:
        return code_settings[name]

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in _CELERY_NAMES:
            raise ConfigurationError(f"app.conf.{name}: Celery has no setting {name!r}; see "
                                     "docs/settings.md for the names django_taskq reads.")
        code_settings[name] = value
        reset_settings()

    def __delitem__(self, name: str) -> None:
        del code_settings[name]
        reset_settings()

    def __iter__(self) -> Iterator[str]:
        return iter(dict(code_settings))

    def __len__(self) -> int:
        return len(code_settings)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return code_settings.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class Control:
    """``app.control``: revocation (durable here), ``inspect()``, ``broadcast`` and Celery's
    control commands (``django_taskq.control.remote.Control``, built at call time)."""

    def revoke(self, task_id: str | list[str], destination: Any = None, terminate: bool = False,
               signal: Any = None, **kwargs: Any) -> None:
        """Revoke tasks by id (see :func:`django_taskq.revoke`)."""
        revoke(task_id, terminate=terminate)

    def terminate(self, task_id: str | list[str], destination: Any = None, signal: Any = None,
                  **kwargs: Any) -> None:
        """Revoke and kill running executions."""
        revoke(task_id, terminate=True)

    def __getattr__(self, name: str) -> Any:
        from .control.remote import Control as RemoteControl

        return getattr(RemoteControl(), name)


class Celery:
    """What ``app = Celery("proj")`` gives a Celery project, over django_taskq.

    ``Celery(main, broker=..., backend=..., include=[...], task_cls=...)`` keyword settings are
    read as Celery settings given in code.
    """

    Task = Task

    def __init__(self, main: str | None = None, *, broker: str | None = None,
                 backend: str | None = None, include: Iterable[str] | None = None,
                 task_cls: type[_Task[Any, Any]] | str | None = None, **kwargs: Any) -> None:
        self.main = main
        self.conf = Settings()
        self.control = Control()
        given = {"broker_url": broker, "result_backend": backend,
                 "include": list(include) if include else None}
        for name, value in given.items():
            if value is not None:
                self.conf[name] = value
        self._task_cls = task_cls
        _made.add(self)
        if kwargs:
            logger.warning("Celery(%s) keyword(s) %s have no effect in django_taskq", main,
                           ", ".join(sorted(kwargs)))

    def __repr__(self) -> str:
        return f"<Celery app {self.main or '__main__'} (django_taskq)>"

    @property
    def tasks(self) -> Any:
        """The registered tasks (``app.tasks["proj.tasks.add"]``)."""
        return registry

    # As django_taskq.task's overloads: the task's arguments are checked, bind=True drops self.
    @overload
    def task(self, func: Callable[P, R], /) -> _Task[P, R]: ...
    @overload
    def task(self, *, bind: Literal[True],
             **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], _Task[P, R]]: ...
    @overload
    def task(self, *, bind: Literal[False] = ...,
             **options: Any) -> Callable[[Callable[P, R]], _Task[P, R]]: ...
    @overload
    def task(self, *, bind: bool,
             **options: Any) -> Callable[[Callable[..., R]], _Task[..., R]]: ...
    def task(self, *args: Any, **options: Any) -> Any:
        """``@app.task`` / ``@app.task(bind=True, ...)``: as :func:`django_taskq.task`."""
        if self._task_cls is not None and "base" not in options:
            options["base"] = _task_class(self._task_cls)
        return task(*args, **options)

    def register_task(self, task_object: _Task[Any, Any]) -> _Task[Any, Any]:
        """Register a class-based task instance (``app.register_task(MyTask())``)."""
        return registry.register(task_object)

    def send_task(self, name: str, args: Any = None, kwargs: Any = None,
                  **options: Any) -> AsyncResult:
        """Send a task by name: :func:`django_taskq.send_task`."""
        return producer.send_task(name, args, kwargs, **options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:  # noqa: N802
        """The result handle of ``task_id``."""
        return AsyncResult(task_id)

    def signature(self, varies: Any, *args: Any, **kwargs: Any) -> Any:
        """A signature of a task, by name or object: :func:`django_taskq.signature`."""
        from .canvas import signature

        return signature(varies, *args, **kwargs)

    @property
    def GroupResult(self) -> Any:  # noqa: N802 - Celery's name
        """The GroupResult class (``app.GroupResult.restore(group_id)``)."""
        from .result_group import GroupResult

        return GroupResult

    def config_from_object(self, obj: Any, silent: bool = False, force: bool = False,
                           namespace: str | None = None) -> None:
        """Django settings with ``namespace="CELERY"`` are read already; another object or
        module (``"proj.celeryconfig"``) gives its Celery settings as settings in code."""
        if obj in ("django.conf:settings", "django.conf.settings") and namespace == "CELERY":
            return
        try:
            source = _load(obj)
        except ImportError:
            if silent:
                return
            raise
        prefix = f"{namespace}_" if namespace else ""
        for attribute in dir(source):
            if attribute.startswith(prefix) and attribute[len(prefix):].lower() in _CELERY_NAMES:
                self.conf[attribute[len(prefix):].lower()] = getattr(source, attribute)

    def autodiscover_tasks(self, packages: Iterable[str] | Callable[[], Iterable[str]] |
                           None = None, related_name: str = "tasks", force: bool = False) -> None:
        """Import ``<package>.<related_name>`` of each package (every installed app by
        default); the installed apps' ``tasks`` modules are imported anyway."""
        if packages is None and related_name == "tasks":
            return  # AppConfig.ready() does it
        discovery.request(packages, related_name)

    def add_periodic_task(self, schedule: Any, sig: Any, args: Any = (), kwargs: Any = None,
                          name: str | None = None, **options: Any) -> Any:
        """Celery's: declare a periodic task in code; beat upserts it when it starts
        (beat/declared.py). ``sig`` is a task, its name or a signature."""
        from .beat.declared import add_periodic_task

        return add_periodic_task(schedule, sig, args, kwargs, name, **options)

    def set_default(self) -> None:
        """Nothing to do: there is one configuration per process."""

    def finalize(self, auto: bool = False) -> None:
        """Nothing to do: tasks are registered when their modules are imported."""

    @property
    def on_after_configure(self) -> Signal:
        """Celery's app signal: sent (sender=the app) when django_taskq's app is ready."""
        return on_after_configure

    @property
    def on_after_finalize(self) -> Signal:
        """Sent (sender=the app) after every task module is imported."""
        return on_after_finalize


def _load(obj: Any) -> Any:
    """An object, ``"module:attribute"``, ``"package.module"`` or ``"module.attribute"``."""
    if not isinstance(obj, str):
        return obj
    if ":" in obj:
        module, attribute = obj.split(":", 1)
        return getattr(importlib.import_module(module), attribute)
    try:
        return importlib.import_module(obj)
    except ImportError:
        module, _, attribute = obj.rpartition(".")
        if not module:
            raise
        return getattr(importlib.import_module(module), attribute)


def announce() -> None:
    """Send ``on_after_configure`` and ``on_after_finalize`` for every app object made so far
    (from ``AppConfig.ready()``, once the task modules are imported)."""
    for app in list(_made):
        on_after_configure.send_robust(app)
        on_after_finalize.send_robust(app)


def _task_class(cls: type[Task[Any, Any]] | str) -> type[Task[Any, Any]]:
    return _load(cls) if isinstance(cls, str) else cls


#: ``from celery import current_app``: an app object like any other (they share everything).
current_app = Celery("default")
