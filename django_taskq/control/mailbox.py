"""Remote control's mailbox, part of the control store every worker already reads.

A caller posts a command (``broadcast``); every worker reads the commands posted since its
cursor (``read_commands``), runs those addressed to it and posts a reply (``send_reply``); the
caller collects replies until its timeout or until it has as many as it expects
(``read_replies``). Going through the control store rather than a broker exchange, it reaches
workers on every broker, the database one included.

A command is a dict: ``id``, ``name``, ``arguments`` (dict), ``destination`` (hostnames, or
None for every worker), ``reply`` (whether replies are wanted), ``expires_at`` (Unix seconds).
"""

from __future__ import annotations

import abc
from typing import Any

#: Seconds a command and its replies are kept, whatever the caller's timeout.
COMMAND_TTL = 60.0


class Mailbox(abc.ABC):
    """Broadcast commands and their replies."""

    @abc.abstractmethod
    def broadcast(self, command: dict[str, Any]) -> None:
        """Post ``command`` for every worker to read."""

    @abc.abstractmethod
    def read_commands(self, cursor: str | None) -> tuple[str, list[dict[str, Any]]]:
        """The commands posted after ``cursor`` and not expired, oldest first, and the cursor
        to pass next time. ``cursor`` None (a worker starting) returns no command, only the
        cursor of the newest one: a worker never runs what was sent before it started."""

    @abc.abstractmethod
    def send_reply(self, command_id: str, hostname: str, reply: Any) -> None:
        """Post ``hostname``'s reply to the command ``command_id``."""

    @abc.abstractmethod
    def read_replies(self, command_id: str) -> dict[str, Any]:
        """The replies to ``command_id`` so far, by hostname."""
