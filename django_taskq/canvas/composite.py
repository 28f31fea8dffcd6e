"""Signatures made of other signatures (chain, group): Celery's dict form
``{"task": "celery.<kind>", "kwargs": {"tasks": [...]}, "subtask_type": "<kind>", ...}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from .signature import Signature, maybe_signature


class Composite(Signature):
    """What chain and group share: their parts in ``kwargs["tasks"]``, rebuilt from a dict."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Any = None) -> Any:
        """The workflow a ``{"task": "celery.<kind>", "kwargs": {"tasks": [...]}}`` describes."""
        tasks = (d.get("kwargs") or {}).get("tasks") or ()
        made = cls([maybe_signature(task) for task in tasks], **(d.get("options") or {}))
        made["args"] = tuple(d.get("args") or ())
        made.immutable = bool(d.get("immutable"))
        return made

    @property
    def tasks(self) -> list[Signature]:
        """The parts, in order (a chain's steps; a group's members as given)."""
        return cast("list[Signature]", self.kwargs["tasks"])
