"""The ``manage.py taskq`` sub-commands, one module per group (the command stays thin).

To add one, write a :class:`~.base.Group` whose ``add_parsers`` gives every parser a
``handler`` default, and list it in ``GROUPS``.
"""

from __future__ import annotations

from .base import Group, Handler
from .dead import DeadLetters, Revoke
from .events import Events
from .purge import Purge
from .remote import ControlGroup, InspectGroup
from .status import Status

#: The ``taskq`` sub-commands, in help order.
GROUPS: list[Group] = [Status(), InspectGroup(), ControlGroup(), Purge(), Events(),
                       DeadLetters(), Revoke()]

__all__ = ["GROUPS", "Group", "Handler"]
