"""Canvas: signatures and the workflows built from them (Celery's ``celery.canvas``).

``add.s(2, 3)`` is a :class:`Signature`, a task call to make later; ``add.s(2) | mul.s(4)`` or
``chain(...)`` runs tasks one after another; ``group(...)`` runs them side by side;
``chord(group, callback)`` calls back with the group's results. This is the sending side; what
a worker does with a finished task's callbacks, errbacks, next chain step and chord lives with
the worker.
"""

from .chain import chain
from .chord import chord
from .group import group
from .maps import chunks, xmap, xstarmap
from .signature import Signature, maybe_signature, maybe_subtask, signature, subtask

__all__ = ["Signature", "chain", "chord", "chunks", "group", "maybe_signature", "maybe_subtask",
           "signature", "subtask", "xmap", "xstarmap"]
