"""Tasks for the task-surface tests: options, custom classes and handlers, calling, eager runs.

Imported by tests/testapp/tasks.py, so every worker (prefork children included) knows them.
Handlers record their calls in ``calls`` (this process) and, when the task got a ``log`` keyword,
as JSON lines in that file (a prefork child's calls are seen through it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django_taskq import AsyncResult, Ignore, Reject, Task, current_task, task
from django_taskq.einfo import ExceptionInfo
from django_taskq.registry import registry

#: (name, details) of every handler call and ``__call__`` wrap made in this process.
calls: list[tuple[str, dict[str, Any]]] = []
#: Exceptions raised by ``raise_recorded``, to check that eager runs raise the same object.
raised: list[BaseException] = []
#: How many times ``retry_always`` ran in this process.
runs: dict[str, int] = {}


def describe_einfo(einfo: Any) -> dict[str, Any] | None:
    """What a JSON line can say about an ``einfo`` argument."""
    if einfo is None:
        return None
    return {"class": type(einfo).__name__, "is_exception_info": isinstance(einfo, ExceptionInfo),
            "exception": repr(einfo.exception), "traceback": einfo.traceback,
            "str_is_traceback": str(einfo) == einfo.traceback}


def _note(name: str, given: dict[str, Any], /, **details: Any) -> None:
    calls.append((name, details))
    path = given.get("log")
    if path:
        line = {"handler": name, "pid": os.getpid(), **{key: describe_einfo(value) if key == "einfo"
                                    else (repr(value) if key in ("exc", "retval") else value)
                                    for key, value in details.items()}}
        line["args"] = list(line.get("args") or ())
        with Path(path).open("a") as log:
            log.write(json.dumps(line, default=repr) + "\n")


class Recording(Task):
    """All five handlers, recording Celery's arguments."""

    def before_start(self, task_id, args, kwargs):
        _note("before_start", kwargs, task_id=task_id, args=args, kwargs=kwargs)

    def on_success(self, retval, task_id, args, kwargs):
        _note("on_success", kwargs, retval=retval, task_id=task_id, args=args, kwargs=kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        _note("on_failure", kwargs, exc=exc, task_id=task_id, args=args, kwargs=kwargs,
              einfo=einfo)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        _note("on_retry", kwargs, exc=exc, task_id=task_id, args=args, kwargs=kwargs,
              einfo=einfo)

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        _note("after_return", kwargs, status=status, retval=retval, task_id=task_id, args=args,
              kwargs=kwargs, einfo=einfo)


@task(base=Recording)
def handled(x, log=None):
    return x * 2


@task(base=Recording)
def handled_fail(log=None):
    raise ValueError("handled boom")


@task(base=Recording, bind=True, max_retries=1)
def handled_retry(self, log=None):
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("once more"), countdown=0)
    return "retried"


class BrokenHandlers(Task):
    """Handlers that raise: the outcome must not change."""

    def on_success(self, retval, task_id, args, kwargs):
        raise RuntimeError("on_success broke")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        raise RuntimeError("on_failure broke")

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        raise RuntimeError("after_return broke")


@task(base=BrokenHandlers)
def broken_success():
    return "fine"


@task(base=BrokenHandlers)
def broken_failure():
    raise ValueError("the task's own failure")


class Wrapping(Task):
    """A ``__call__`` override around the run, as Celery projects write them."""

    def __call__(self, *args, **kwargs):
        calls.append(("__call__ before", {"args": args, "kwargs": kwargs}))
        try:
            return {"wrapped": super().__call__(*args, **kwargs)}
        finally:
            calls.append(("__call__ after", {}))


@task(base=Wrapping)
def wrapped_add(a, b):
    return a + b


class ClassAdd(Task):
    """A class-based task, registered by hand."""

    name = "tests.surface.class_add"

    def run(self, a, b):
        return a + b


class_add = ClassAdd()
registry.register(class_add)


class WorkerOnly(Task):
    """Registered by a test only after the message was sent (a worker-side-only task)."""

    name = "tests.surface.worker_only"

    def run(self, value):
        return f"worker ran {value}"


@task
def which_task():
    return {"truthy": bool(current_task), "name": current_task.name}


@task(bind=True)
def request_fields(self, *args, **kwargs):
    r = self.request
    return {
        "id": r.id, "task": r.task, "args": list(r.args), "kwargs": r.kwargs,
        "retries": r.retries, "hostname": r.hostname, "delivery_info": r.delivery_info,
        "headers": r.headers, "correlation_id": r.correlation_id, "origin": r.origin,
        "is_eager": r.is_eager, "called_directly": r.called_directly,
        "timelimit": list(r.timelimit), "reply_to": r.reply_to, "root_id": r.root_id,
        "parent_id": r.parent_id, "group": r.group, "group_index": r.group_index,
        "shadow": r.shadow, "argsrepr": r.argsrepr, "kwargsrepr": r.kwargsrepr,
        "ignore_result": r.ignore_result, "properties": r.properties,
        "x-trace": r.get("x-trace"), "expires": r.expires and r.expires.isoformat(),
    }


@task(expires=600, priority=7, queue="surface", serializer="msgpack", ignore_result=True)
def optioned():
    return "ok"


@task(throws=(KeyError,))
def throws_expected():
    raise KeyError("expected one")


@task(ignore_result=True, store_errors_even_if_ignored=True)
def ignored_but_errors_stored(fail=True):
    if fail:
        raise ValueError("stored anyway")
    return "not stored"


@task(acks_on_failure_or_timeout=False)
def fail_dead_letters():
    raise ValueError("to the dead letters")


@task(acks_on_failure=False)
def fail_dead_letters_on_failure():
    raise ValueError("to the dead letters")


@task(acks_on_failure_or_timeout=False, acks_on_failure=True)
def fail_acked_despite_combined():
    raise ValueError("acknowledged")


@task
def reject(path, requeue=False):
    with Path(path).open("a") as marker:
        marker.write("run\n")
    raise Reject("no thanks", requeue=requeue)


@task
def ignore_me():
    raise Ignore()


@task(typing=False)
def untyped(a):
    return a


@task
def typed(a):
    return a


@task
def raise_recorded():
    exc = ValueError("the original")
    raised.append(exc)
    raise exc


@task(bind=True, max_retries=50)
def retry_always(self):
    runs["retry_always"] = runs.get("retry_always", 0) + 1
    raise self.retry(countdown=3600)


@task
def get_inside():
    from tests.testapp.tasks import add

    return add.delay(1, 2).get()


@task
def get_stored(task_id):
    return AsyncResult(task_id).get(timeout=1)


@task
def returns_unserializable():
    return object()


class Unpacking(Task):
    """A ``__call__`` that reshapes the message's arguments (one dict) for the run; such a
    class turns ``typing`` off, as the message does not fit ``run`` itself."""

    typing = False

    def __call__(self, payload):
        return super().__call__(**payload)


@task(base=Unpacking)
def unpacked(a, b):
    return a - b


class CeleryAnnotation:
    """Celery's annotation protocol: ``annotate(task)`` and ``annotate_any()``."""

    def annotate(self, task):
        if task.name == "opts.annotated":
            return {"priority": 2}
        return None

    def annotate_any(self):
        return {"max_retries": 4}
