"""Where the dashboard reads: the events database and the results database, as configured."""

from __future__ import annotations

from ..conf import get_settings


def events_alias() -> str | None:
    """The database alias events are stored in (EVENTS_DATABASE), or None: none are stored."""
    return get_settings().EVENTS_DATABASE


def results_alias() -> str | None:
    """The alias of the database result backend, or None when results live elsewhere."""
    from ..results import get_backend
    from ..results.database import DatabaseResultBackend

    backend = get_backend()
    return backend.alias if isinstance(backend, DatabaseResultBackend) else None
