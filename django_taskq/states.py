"""Task states, with the names Celery uses so that tools and habits carry over."""

from __future__ import annotations

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
#: Celery's internal states: a run refused with ``Reject`` (its message dead-lettered or put
#: back), or ended with ``Ignore`` (nothing stored).
REJECTED = "REJECTED"
IGNORED = "IGNORED"

#: States after which nothing more happens to a task.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States a task is in while it still may run.
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
#: States that mean the task did not succeed.
EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})
#: Ready states whose exception ``AsyncResult.get()`` raises.
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = READY_STATES | UNREADY_STATES
