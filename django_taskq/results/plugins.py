"""Result stores of other packages, plugged in by URL scheme (TASKQ['RESULT_BACKEND_SCHEMES']).

``{"cassandra": "myproj.results.CassandraBackend"}`` makes ``RESULT_BACKEND =
"cassandra://host/ks"`` build ``CassandraBackend(parsed_url, **common)``: a subclass of
:class:`~django_taskq.results.api.ResultBackend` taking the parsed URL and the common options
(``accept``, ``expires``, ``serializer``, ``compression``) that it passes to
``super().__init__``. docs/result-backends.md has the whole contract.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ..exceptions import ConfigurationError
from ..service_url import ParsedUrl
from .base import ResultBackend

SETTING = "TASKQ['RESULT_BACKEND_SCHEMES']"

Factory = Callable[[ParsedUrl], ResultBackend]


def load_backend_class(scheme: str, path: str, builtin: Collection[str]) -> type[ResultBackend]:
    """The class ``path`` names for ``scheme``, checked.

    Raises:
        ConfigurationError: the scheme is a built-in one, the path does not import, or it names
            something other than a concrete ResultBackend subclass whose constructor takes
            ``(url, **common)``.
    """
    from django.utils.module_loading import import_string

    where = f"{SETTING}[{scheme!r}] = {path!r}"
    if scheme in builtin:
        raise ConfigurationError(
            f"{where}: {scheme}:// is a built-in result store and cannot be replaced; give your "
            f"store a scheme of its own (built-in: {', '.join(sorted(builtin))}).")
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"{where} cannot be imported: {exc}. Give the dotted path of "
                                 "a ResultBackend subclass, e.g. 'myproj.results."
                                 "CassandraBackend'.") from exc
    if not (isinstance(found, type) and issubclass(found, ResultBackend)):
        raise ConfigurationError(
            f"{where} is {found!r}, not a subclass of django_taskq.results.ResultBackend.")
    if inspect.isabstract(found):
        missing = ", ".join(sorted(getattr(found, "__abstractmethods__", ())))
        raise ConfigurationError(f"{where} does not implement {missing} (abstract methods of "
                                 "ResultBackend; see docs/result-backends.md).")
    _check_signature(found, where)
    return found


#: The keyword arguments every store's constructor is given (results/__init__.py ``_common``).
COMMON = ("accept", "expires", "serializer", "compression")


def _check_signature(found: type[ResultBackend], where: str) -> None:
    """A constructor that cannot take ``(url, **common)`` fails when the URL is built with
    a TypeError that names neither the setting nor the fix: say so at once."""
    try:
        inspect.signature(found).bind(None, **dict.fromkeys(COMMON))
    except TypeError as exc:
        raise ConfigurationError(
            f"{where}: its constructor cannot be called as cls(url, **common) ({exc}). Write "
            f"def __init__(self, url, **common): super().__init__(**common) — common holds "
            f"{', '.join(COMMON)} (docs/result-backends.md).") from exc
    except ValueError:  # no signature to read (a C type): left to the call
        pass


def factories(table: Mapping[str, str], builtin: Collection[str],
              common: Callable[[], dict[str, Any]]) -> dict[str, Factory]:
    """A factory per scheme of ``table``; the class is imported when a URL of it is built."""
    return {scheme: functools.partial(_build, scheme, path, builtin, common)
            for scheme, path in table.items()}


def _build(scheme: str, path: str, builtin: Collection[str],
           common: Callable[[], dict[str, Any]], url: ParsedUrl) -> ResultBackend:
    cls: Any = load_backend_class(scheme, path, builtin)  # its constructor: (url, **common)
    built: ResultBackend = cls(url, **common())
    return built


def problems(table: Mapping[str, str], builtin: Collection[str]) -> list[str]:
    """What is wrong with each entry of the scheme table (system check E020)."""
    found = []
    for scheme, path in table.items():
        try:
            load_backend_class(scheme, path, builtin)
        except ConfigurationError as exc:
            found.append(str(exc))
    return found
