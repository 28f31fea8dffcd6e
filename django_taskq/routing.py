"""Task routes as Celery's ``task_routes`` has them: which queue (and options) a task goes to.

``TASKQ["TASK_ROUTES"]`` (or ``CELERY_TASK_ROUTES``) is one route or a list, tried in order:

- a dict from task name, glob (``"shop.tasks.*"``) or compiled regex to a queue name or to a
  dict of options (``{"queue": "feeds", "priority": 5}``);
- a router function ``route(name, args, kwargs, options, task=None, **kw)`` returning a queue
  name, a dict of options or None (next route), or its dotted path.

The first route that answers wins. What the call and the task itself say wins over a route, as
in Celery; a task no route matches goes to ``DEFAULT_QUEUE``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.utils.module_loading import import_string

from .conf import get_settings, on_reset
from .exceptions import ConfigurationError

Router = Callable[..., Any]


class MapRoute:
    """A dict route: exact names first, then globs and regexes in the order given."""

    def __init__(self, table: Mapping[Any, Any] | Sequence[tuple[Any, Any]]) -> None:
        items = table.items() if isinstance(table, Mapping) else table
        self.exact: dict[str, Any] = {}
        self.patterns: list[tuple[re.Pattern[str], Any]] = []
        for key, route in items:
            if isinstance(key, re.Pattern):
                self.patterns.append((key, route))
            elif isinstance(key, str) and "*" in key:
                self.patterns.append((re.compile(fnmatch.translate(key)), route))
            elif isinstance(key, str):
                self.exact[key] = route
            else:
                raise ConfigurationError(
                    f"TASK_ROUTES key {key!r} is not a task name, glob or compiled regex.")

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.exact:
            return self.exact[name]
        for pattern, route in self.patterns:
            if pattern.match(name):
                return route
        return None


def _router(entry: Any) -> Router:
    if isinstance(entry, (Mapping, list, tuple)):
        return MapRoute(entry)
    if isinstance(entry, str):
        try:
            entry = import_string(entry.replace(":", "."))
        except ImportError as exc:
            raise ConfigurationError(f"TASK_ROUTES names router {entry!r}, which cannot be "
                                     f"imported: {exc}") from exc
        if isinstance(entry, type):
            entry = entry()  # a router class, as Celery's pre-4.0 routers were
    route_for_task = getattr(entry, "route_for_task", None)
    if route_for_task is not None:  # Celery's old router protocol
        return lambda name, args, kwargs, options, task=None, **kw: route_for_task(
            name, args, kwargs)
    if not callable(entry):
        raise ConfigurationError(f"TASK_ROUTES entry {entry!r} is not a dict, a router function "
                                 "or a dotted path to one.")
    router: Router = entry
    return router


@functools.lru_cache(maxsize=1)
def routers() -> tuple[Router, ...]:
    """The configured routes, built once per settings."""
    return tuple(_router(entry) for entry in get_settings().TASK_ROUTES)


on_reset(routers.cache_clear)


def expand(route: Any) -> dict[str, Any]:
    """A route's answer as options: a queue name (the string as it is), or a dict."""
    if route is None:
        return {}
    if isinstance(route, str):
        return {"queue": route}
    if isinstance(route, Mapping):
        options = dict(route)
        queue = options.get("queue")
        if queue is not None and not isinstance(queue, str):
            options["queue"] = getattr(queue, "name", queue)  # a kombu Queue
        return options
    raise ConfigurationError(f"A task route returned {route!r}; a route gives a queue name or a "
                             "dict of options such as {'queue': 'feeds'}.")


def route(name: str, args: Any, kwargs: Any, options: Mapping[str, Any],
          task: Any = None) -> dict[str, Any]:
    """The options the first matching route gives for this call ({} when none matches)."""
    for router in routers():
        answer = router(name, args, kwargs, options, task=task)
        if answer is not None:
            return expand(answer)
    return {}
