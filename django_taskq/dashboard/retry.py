"""Retry a failed task from the dashboard: send it again with the arguments its result kept.

Only extended results (RESULT_EXTENDED) keep a task's arguments; without them nothing is
guessed from the events' reprs. The retry is a new task (a new id) so that the failure stays
on record beside it; it goes to the queue the failed run was delivered from. Its id is derived
from the failed task's (``retry_id``), so a second press (a double click, two people at once)
finds it and is refused instead of sending the task twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import states
from ..exceptions import TaskqError


class RetryRefused(TaskqError):
    """The task cannot be sent again from here; the message says why and what to do."""


#: The namespace of retry ids (uuid5 of the failed task's id).
RETRY_NAMESPACE = uuid.UUID("6f1d6c1e-5a3b-4c6e-9d1e-2b7f4e0a9c31")


def retry_id(task_id: str) -> str:
    """The id the dashboard's retry of ``task_id`` gets (the same for every press)."""
    return str(uuid.uuid5(RETRY_NAMESPACE, task_id))


def retry(task_id: str, backend: Any = None) -> str:
    """Send failed task ``task_id`` again with its stored arguments; the new task's id.

    Raises:
        RetryRefused: no stored result, not a failure, or no stored arguments.
    """
    from ..producer import send_task
    from ..results import get_backend

    task_id = task_id.strip()
    if not task_id:
        raise RetryRefused("No task id given: choose a failed task to retry.")
    meta = (backend or get_backend()).get(task_id)
    if meta is None:
        raise RetryRefused(f"No stored result for task {task_id}: it may have expired "
                           "(RESULT_EXPIRES) or never been stored (ignore_result).")
    if meta.state != states.FAILURE:
        raise RetryRefused(f"Task {task_id} is {meta.state}, not FAILURE: only failed tasks "
                           "are retried here.")
    if not meta.task_name:
        raise RetryRefused(f"Task {task_id}'s result does not name its task: send it again "
                           "from your code.")
    if meta.args is None and meta.kwargs is None:
        raise RetryRefused(
            f"Task {task_id}'s result kept no arguments: results keep them only with "
            "TASKQ['RESULT_EXTENDED'] = True (Celery's result_extended). Send it again from "
            "your code, or turn that setting on for later failures.")
    args, kwargs = meta.args or [], meta.kwargs or {}
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise RetryRefused(f"Task {task_id}'s arguments were stored as text (hidden: a "
                           "sensitive task, or argsrepr/kwargsrepr given; or the result "
                           "serializer could not encode them): send it again from your code.")
    new_id = retry_id(task_id)
    if (backend or get_backend()).get(new_id) is not None:
        raise RetryRefused(f"Task {task_id} was retried already, as task {new_id}: if that one "
                           "failed too, retry it instead.")
    options = {"queue": meta.queue} if meta.queue else {}
    return str(send_task(meta.task_name, list(args), dict(kwargs), task_id=new_id,
                         **options).id)
