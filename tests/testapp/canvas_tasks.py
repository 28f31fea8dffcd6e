"""Tasks the canvas tests chain, link and fail (imported by those tests)."""

from __future__ import annotations

from django_taskq import task

#: What inline errbacks saw: (failed task id, exception text), in this process.
ERRBACKS_SEEN: list[tuple[str, str]] = []


@task(name="canvas.add")
def add(x, y):
    return x + y


@task(name="canvas.mul")
def mul(x, y):
    return x * y


@task(name="canvas.boom")
def boom(*args):
    raise ValueError(f"boom with {args!r}")


@task(name="canvas.on_error")
def on_error(request, exc, traceback):
    """A new-style errback: called inline by the worker with the failed request."""
    ERRBACKS_SEEN.append((request.id, str(exc)))


@task(name="canvas.failed_id")
def failed_id(task_id):
    """An old-style errback: sent as a task with the failed task's id."""
    return f"failed: {task_id}"


@task(name="canvas.ids", bind=True)
def ids(self, *args):
    """Who sent this task: its parent and root ids."""
    return {"parent": self.request.parent_id, "root": self.request.root_id}


@task(name="canvas.in_group", bind=True)
def in_group(self, *args):
    """Where this task sits: its group id and index (the headers ``group``/``group_index``)."""
    return {"group": self.request.group, "index": self.request.group_index}


@task(name="canvas.tsum")
def tsum(values):
    """A chord body: the sum of the header's results."""
    return sum(values)


@task(name="canvas.listed")
def listed(values, *more):
    """A chord body that shows what it was given (the header's results, in header order)."""
    return [values, *more]


@task(name="canvas.slow_index", bind=True)
def slow_index(self, index, delay=0.0):
    """A header task that finishes after ``delay`` seconds and returns its index."""
    import time

    time.sleep(delay)
    return index


@task(name="canvas.record_body")
def record_body(values, path):
    """A chord body that appends one line per run to ``path``: counts how often it ran."""
    import json
    from pathlib import Path

    with Path(path).open("a") as marker:
        marker.write(json.dumps(values) + "\n")
    return values


@task(name="canvas.replaced_by_chain", bind=True)
def replaced_by_chain(self, x):
    """Replaces itself with ``add(x, 1) | mul(10)``."""
    return self.replace(add.s(x, 1) | mul.s(10))


@task(name="canvas.replaced_by_group", bind=True)
def replaced_by_group(self, n):
    """Replaces itself with a group of ``n`` additions (its result: their list)."""
    from django_taskq import group

    return self.replace(group(add.s(i, i) for i in range(n)))
