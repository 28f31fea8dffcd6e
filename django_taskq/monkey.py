"""Monkey-patching for the gevent and eventlet pools, done when django_taskq is first imported.

``manage.py taskworker --pool gevent`` must patch the standard library (sockets, ``time.sleep``,
threads) before anything else runs, as Celery's ``celery/__main__.py`` does. A Django project's
``manage.py`` is the user's, so the patch runs from here instead: ``django_taskq/__init__.py``
imports this module first, and Django imports that package while it loads INSTALLED_APPS (or
sooner, when the settings module imports django_taskq), before any app is ready, any
connection is opened or any thread is started. The pool is read, in this order, from the command
line (``-P``/``--pool``), the ``TASKQ_WORKER_POOL`` environment variable, then the settings
(``TASKQ['WORKER_POOL']``, ``CELERY_WORKER_POOL``, ``CELERYD_POOL``) when they are loaded.

This module imports nothing heavy: only what the decision needs, then the green library.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

#: The pools that need the standard library patched, and the extra that installs each.
GREEN_POOLS = {"gevent": "django-taskq[gevent]", "eventlet": "django-taskq[eventlet]"}
#: The library that patched this process (None: not patched by django_taskq).
patched: str | None = None
#: The green pool asked for but not patched for (the library is missing): make_pool says so.
missing: str | None = None


def pool_in_argv(argv: Sequence[str]) -> str | None:
    """The ``-P``/``--pool`` value of a ``taskworker`` command line, else None (last one wins,
    as argparse reads it; ``--po``/``--poo`` abbreviations and ``-BP`` clusters included)."""
    if len(argv) < 2 or argv[1] != "taskworker":
        return None
    pool = None
    args = list(argv[2:])
    for index, arg in enumerate(args):
        if arg == "--":
            break
        following = args[index + 1] if index + 1 < len(args) else None
        name, sep, value = arg.partition("=")
        if name in ("--po", "--poo", "--pool"):
            pool = value if sep else following
        elif arg.startswith("-") and not arg.startswith("--"):
            flags = arg[1:].lstrip("BE")  # -BP gevent, -EPgevent: flags without a value first
            if flags.startswith("P"):
                pool = flags[1:] or following
    return pool


def pool_in_settings() -> str | None:
    """The pool the environment or (once loaded) the Django settings choose, else None."""
    from_env = os.environ.get("TASKQ_WORKER_POOL")
    if from_env:
        return from_env
    try:
        from django.conf import settings

        if not settings.configured:
            return None
        taskq = getattr(settings, "TASKQ", None)
        if isinstance(taskq, dict) and taskq.get("WORKER_POOL"):
            return str(taskq["WORKER_POOL"])
        for name in ("CELERY_WORKER_POOL", "CELERYD_POOL"):
            value = getattr(settings, name, None)
            if value:
                return str(value)
    except Exception:  # noqa: BLE001 - settings that cannot load are reported by Django itself
        return None
    return None


def chosen_pool(argv: Sequence[str] | None = None) -> str | None:
    """The green pool this ``taskworker`` process will run, when it can be told now."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] != "taskworker":
        return None
    pool = pool_in_argv(argv) or pool_in_settings()
    return pool if pool in GREEN_POOLS else None


def maybe_patch(argv: Sequence[str] | None = None) -> None:
    """Patch for gevent or eventlet when this process is a worker of that pool (else nothing).

    A missing library is not an error here (the import of django_taskq must not fail): the
    worker's pool refuses to start with the install command (see :func:`require`).
    """
    global missing
    pool = chosen_pool(argv)
    if pool is None or patched is not None:
        return
    try:
        if pool == "gevent":
            _patch_gevent()
        else:
            _patch_eventlet()
    except ImportError:
        missing = pool


def _patch_gevent() -> None:
    global patched
    made_before = _thread_locals()  # not those the library makes for itself (one per thread)
    gevent_monkey = importlib.import_module("gevent.monkey")  # untyped: imported by name

    # gevent's own care for the locks held now looks at every object with isinstance(), which
    # evaluates Django's lazy objects (admin.site) before the apps are ready: ours instead.
    common: Any = importlib.import_module("gevent.monkey._patch_thread_common")
    common._patch_existing_locks = lambda threading_module: _own_held_locks()
    gevent_monkey.patch_all()
    patched = "gevent"
    _renew(made_before)
    _cooperative_psycopg()


def _patch_eventlet() -> None:
    global patched
    import warnings

    made_before = _thread_locals()
    with warnings.catch_warnings():
        # Eventlet says on import that it is in maintenance mode (docs/pools.md says it too).
        warnings.simplefilter("ignore")
        eventlet = importlib.import_module("eventlet")
        patcher: Any = importlib.import_module("eventlet.patcher")

    # Eventlet greens the RLocks made before patching by walking every module's attributes,
    # which evaluates Django's lazy objects (admin.site) before the apps are ready: find them
    # through the garbage collector instead, by exact type.
    patcher._green_existing_locks = _green_existing_rlocks
    eventlet.monkey_patch()
    patched = "eventlet"
    _renew(made_before)
    _cooperative_psycopg()


def _cooperative_psycopg() -> None:
    """Make psycopg 3 wait for its queries through the patched ``select()``.

    psycopg waits in C (an unpatched ``poll()``, holding the whole process) unless, when it
    was first imported, it saw gevent's patch: not when it was imported before django_taskq
    (``django.contrib.postgres`` listed first in INSTALLED_APPS, settings that import it), and
    never on eventlet. Its wait function is read from its module at each call: set it here
    (importing psycopg now, patched, when it is installed). ``PSYCOPG_WAIT_FUNC`` wins.
    """
    if "PSYCOPG_WAIT_FUNC" in os.environ:
        return
    waiting: Any = sys.modules.get("psycopg.waiting")
    if waiting is None:
        if importlib.util.find_spec("psycopg") is None:
            return
        try:
            waiting = importlib.import_module("psycopg.waiting")
        except ImportError:  # no libpq: Django says so when it connects
            return
    if waiting.wait is getattr(waiting, "wait_c", None):
        waiting.wait, waiting._ready = waiting.wait_select, waiting._ready_select


def _own_held_locks() -> None:
    """Locks held now (this very import's, by importlib) were taken under the thread's id; the
    patched ``get_ident`` gives the main greenlet's: make it their owner, or their release
    fails. Python-level locks only: C locks compare the real thread id, which has not changed."""
    import gc
    import threading

    bootstrap: Any = importlib.import_module("importlib._bootstrap")
    threading_module: Any = threading
    owner = threading.get_ident()
    for lock in gc.get_objects():
        kind = type(lock)  # not isinstance(): that evaluates Django's lazy objects
        if kind is bootstrap._ModuleLock and lock.owner is not None:
            lock.owner = owner
        elif kind is threading_module._PyRLock and lock._owner is not None:
            lock._owner = owner


def _green_existing_rlocks(rlock_type: type) -> None:
    """Replace each RLock made before eventlet patched with a green one, where it is held.

    One held now stays as it is: it is being used by the code that imports django_taskq
    (Django's app registry), and stays valid (a C RLock checks the real thread id).
    """
    import gc

    owner = importlib.import_module("eventlet.green.thread").get_ident()
    convert = importlib.import_module("eventlet.patcher")._convert_py3_rlock
    held: list[Any] = [o for o in gc.get_objects() if type(o) is rlock_type]
    for old in held:
        if old._is_owned():
            continue
        new = convert(old, owner)
        for holder in gc.get_referrers(old):
            _swap(holder, old, new)


def _thread_locals() -> list[Any]:
    """The ``threading.local`` objects that exist now (the real, per-thread kind)."""
    import _thread
    import gc

    return [o for o in gc.get_objects() if type(o) is _thread._local]


def _renew(made_before: list[Any]) -> None:
    """Replace each ``threading.local`` made before patching with a green one, where it is held.

    Django's database connections live in one (an asgiref thread-critical ``Local`` made when
    ``django.db`` was imported): left as it is, all greenlets would share one storage, so one
    connection. Renewed, each greenlet has its own connections, as each thread does.
    """
    import gc
    import threading

    for old in made_before:
        new = threading.local()
        for name, value in vars(old).items():  # what the main thread held already
            setattr(new, name, value)
        for holder in gc.get_referrers(old):
            _swap(holder, old, new)


def _swap(holder: Any, old: object, new: object) -> None:
    """Put ``new`` where ``holder`` (a dict, a list or an object's attributes) holds ``old``."""
    if type(holder).__name__ == "_ModuleLock":
        return  # importlib keeps real locks (eventlet does the same)
    if isinstance(holder, list):
        for index, value in enumerate(holder):
            if value is old:
                holder[index] = new
        return
    if isinstance(holder, dict):
        attributes, put = holder, holder.__setitem__
    else:
        try:
            attributes = object.__getattribute__(holder, "__dict__")
        except (AttributeError, TypeError):
            return
        put = lambda key, value: object.__setattr__(holder, key, value)  # noqa: E731
    for key, value in list(attributes.items()):
        if value is old:
            put(key, new)


maybe_patch()  # on import, from django_taskq/__init__.py: as early as this package can run
