"""Revoking tasks by id, and the ids a workflow's result stands for."""

from __future__ import annotations

from typing import Any


def workflow_ids(result: Any) -> list[str]:
    """``result``'s id and the ids of every task it waits on through its ``parent`` links (a
    GroupResult's members included)."""
    ids: list[str] = []
    node = result
    while node is not None:
        members = getattr(node, "results", None)
        if members is not None:  # a GroupResult: a chord's header, a group in a chain
            ids.extend(member.id for member in members)
        elif node.id:
            ids.append(node.id)
        node = getattr(node, "parent", None)
    return ids


def revoke(task_ids: str | list[str], *, terminate: bool = False) -> None:
    """Revoke tasks by id: durable, so it holds for tasks still queued, for workers that start
    later, and across restarts (until REVOKE_EXPIRES). A revoked task never runs and ends in
    REVOKED; with ``terminate=True`` a running execution is killed too (prefork pool only).
    Workers see a revocation within REVOKE_POLL_INTERVAL seconds.
    """
    from .conf import get_settings
    from .control import get_control_store

    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    if not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"revoke() takes task ids (non-empty strings), not {task_ids!r}.")
    get_control_store().revoke(ids, terminate=terminate, expires=get_settings().REVOKE_EXPIRES)
