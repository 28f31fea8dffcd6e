"""Defining tasks: ``@task``/``@shared_task`` build a Task subclass, as Celery's decorators do.

The subclass's class attributes are the decorator's keywords (any keyword, as in Celery), its
``run`` is the function, its base is ``base=`` or ``TASKQ["TASK_CLASS"]`` or :class:`Task`.
"""

from __future__ import annotations

import difflib
import functools
import types
import warnings
from collections.abc import Callable
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from .options import OPTION_NAMES
from .registry import registry
from .task import Task

#: Options whose value is a plain function, called without the task.
PLAIN_FUNCTIONS = frozenset({"rate_limit_key"})

P = ParamSpec("P")
R = TypeVar("R")


def default_task_class() -> type[Task[Any, Any]]:
    """``TASKQ["TASK_CLASS"]`` (Celery's ``task_cls``), else :class:`Task`.

    Read from the raw settings: a task module must import even when another TASKQ key is
    wrong, so that ``manage.py check`` can say what is.
    """
    from .conf import raw_settings

    path = raw_settings(celery=False).get("TASK_CLASS")
    if not path:
        return Task
    from .exceptions import ConfigurationError

    try:
        from django.utils.module_loading import import_string

        cls = import_string(path.replace(":", "."))
    except ImportError as exc:
        raise ConfigurationError(f"TASKQ['TASK_CLASS'] = {path!r} cannot be imported: {exc}") \
            from exc
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigurationError(f"TASKQ['TASK_CLASS'] = {path!r} is not a subclass of "
                                 "django_taskq.Task.")
    return cls


def build_task(func: Callable[..., Any], /, *, base: type[Task[Any, Any]] | None = None,
               bind: bool = False, name: str | None = None, **options: Any) -> Task[Any, Any]:
    """A Task for ``func`` (not registered): Celery's way, a subclass of ``base`` whose
    attributes are ``options`` (any keyword, as in Celery) and whose ``run`` is ``func``."""
    cls = base or default_task_class()
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"base= must be a subclass of django_taskq.Task, not {cls!r}.")
    _warn_near_misses(func, options)
    attributes = {
        "name": name or f"{func.__module__}.{func.__qualname__}",
        "run": func if bind else staticmethod(func),
        "bind": bind, "__module__": func.__module__, "__qualname__": func.__qualname__,
        "__doc__": func.__doc__, "__wrapped__": func,
        # As in Celery, a function given as a keyword becomes a method (on_failure=notify gets
        # the task as self); an option that is a function of the arguments stays plain.
        **{key: staticmethod(value) if key in PLAIN_FUNCTIONS
           and isinstance(value, types.FunctionType) else value
           for key, value in options.items()},
    }
    created: Task[Any, Any] = type(func.__name__, (cls,), attributes)()
    functools.update_wrapper(created, func, updated=())
    return created


def _warn_near_misses(func: Callable[..., Any], options: dict[str, Any]) -> None:
    """Any keyword becomes an attribute (Celery's rule), but one a letter or two away from a
    task option is almost surely a typo that would be silently ignored: say so."""
    for key in options:
        if key in OPTION_NAMES:
            continue
        close = difflib.get_close_matches(key, OPTION_NAMES, n=1, cutoff=0.85)
        if close:
            warnings.warn(f"@task({key}=...) on {func.__module__}.{func.__qualname__} is not a "
                          f"task option; did you mean {close[0]}=? It is kept as a plain "
                          "attribute and does nothing.", UserWarning, stacklevel=4)


# The overloads make ``@task def add(x: int, y: int) -> int`` a ``Task[[int, int], int]``, so that
# ``add.delay("x")`` is a type error; ``bind=True`` drops the function's ``self``.
@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(*, bind: Literal[True],
         **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...
@overload
def task(*, bind: Literal[False] = ..., **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...
@overload
def task(*, bind: bool, **options: Any) -> Callable[[Callable[..., R]], Task[..., R]]: ...
def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a function as a task: ``@task`` or ``@task(name=..., bind=True, queue=...)``.

    Takes every option Celery's ``@app.task`` takes (see docs/tasks.md); ``base=`` picks the
    task class. Any other keyword becomes an attribute of the task, as in Celery.
    """
    def register(function: Callable[..., Any]) -> Task[Any, Any]:
        return registry.register(build_task(function, **options))

    return register(func) if func is not None else register


shared_task = task
