"""Tasks for time-limit and child-recycling tests (imported by tests/testapp/tasks.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django_taskq import task
from django_taskq.exceptions import SoftTimeLimitExceeded

#: Memory a task keeps after it returns (in its process), for max-memory-per-child tests.
_held: list[bytes] = []


def _note(path: str | None, text: str) -> None:
    if path:
        with Path(path).open("a") as marker:
            marker.write(f"{text}\n")


@task
def nap(seconds, path=None):
    """Sleep (noting each start in ``path``), without catching anything."""
    _note(path, f"start {os.getpid()}")
    time.sleep(seconds)
    return "slept"


@task
def clean_up_on_soft_limit(seconds):
    """Catch the soft limit and return what a task would after cleaning up."""
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "slept"


@task
def ignore_soft_limit(path, seconds):
    """Catch the soft limit, note it, and keep going: only the hard limit stops it."""
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        _note(path, "soft")
    time.sleep(seconds)
    _note(path, "finished")
    return "slept"


@task
def swallow_exceptions(path, seconds):
    """A task that catches every Exception in a loop: the hard limit must still stop it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except Exception:  # noqa: BLE001 - on purpose: the worst-behaved task
            _note(path, "swallowed")
    _note(path, "finished")
    return "slept"


@task
def pid():
    """The process that ran the task."""
    return os.getpid()


@task
def pid_and_mark(path, n):
    """Note ``n`` in ``path`` (one line per run) and return the process id."""
    _note(path, str(n))
    return os.getpid()


@task
def hog_memory(megabytes):
    """Keep ``megabytes`` of touched memory in this process; return the process id."""
    _held.append(b"\x01" * (megabytes * 1024 * 1024))
    return os.getpid()


@task
def swallow_once(path, seconds):
    """Swallow even a BaseException once (a bare ``except:``), then keep sleeping."""
    deadline = time.monotonic() + seconds
    swallowed = False
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException:  # noqa: BLE001 - on purpose: worse than the worst-behaved task
            if swallowed:
                raise
            swallowed = True
            _note(path, "swallowed")
    _note(path, "finished")
    return "slept"
