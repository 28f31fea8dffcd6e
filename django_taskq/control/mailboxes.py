"""The mailbox (control/mailbox.py) on each control store engine, mixed into its store.

- memory: a list and a dict behind a lock, for one process (tests, the memory broker).
- database: ``taskq_controlcommand`` rows read by id (the cursor), ``taskq_controlreply`` rows.
- Redis: a stream ``<prefix>:control`` capped near ``STREAM_LENGTH`` (the cursor is the stream
  id), replies in a list ``<prefix>:control:reply:<id>`` that expires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..engines import translating
from ..exceptions import ControlStoreError
from ..redisconn import reconnecting
from .mailbox import COMMAND_TTL, Mailbox

logger = logging.getLogger(__name__)

#: Seconds past its expiry after which a command read for the first time means skewed clocks.
SKEWED = 30.0
#: Commands read per call, and kept in the Redis stream.
BATCH = 100
STREAM_LENGTH = 1000
#: Seconds the database keeps a reply (a caller waits far less).
REPLY_KEEP = 3600.0

_translated = translating(ControlStoreError)


def _live(command: dict[str, Any], now: float) -> bool:
    """Whether ``command`` is still wanted. One that expired long ago (a command lives a minute
    at least) says this machine's clock and the caller's disagree: that is logged, since every
    command would otherwise be dropped without a word."""
    late = now - float(command.get("expires_at") or 0)
    if late > SKEWED:
        logger.warning("remote control: command %s (%s) expired %.0fs ago by this clock; are "
                       "the clocks of this worker and its caller in step (NTP)?",
                       command.get("id"), command.get("name"), late)
    return late < 0


class MemoryMailbox(Mailbox):
    """Commands and replies of one process."""

    now: Callable[[], float]

    def _box(self) -> tuple[threading.Lock, list[dict[str, Any]], dict[str, dict[str, Any]]]:
        if not hasattr(self, "_commands"):
            self._mailbox_lock = threading.Lock()
            self._commands: list[dict[str, Any]] = []
            self._replies: dict[str, dict[str, Any]] = {}
        return self._mailbox_lock, self._commands, self._replies

    def broadcast(self, command: dict[str, Any]) -> None:
        lock, commands, _ = self._box()
        with lock:
            commands.append(dict(command))
            del commands[:-STREAM_LENGTH]

    def read_commands(self, cursor: str | None) -> tuple[str, list[dict[str, Any]]]:
        lock, commands, _ = self._box()
        with lock:
            seen = {c["id"] for c in commands}
            if cursor is None or cursor not in seen:
                start = len(commands) if cursor is None else 0
            else:
                start = [c["id"] for c in commands].index(cursor) + 1
            new = commands[start:start + BATCH]
            last = new[-1]["id"] if new else (cursor if cursor in seen else
                                              (commands[-1]["id"] if commands else ""))
        return last or "", [dict(c) for c in new if _live(c, self.now())]

    def send_reply(self, command_id: str, hostname: str, reply: Any) -> None:
        lock, _, replies = self._box()
        with lock:
            replies.setdefault(command_id, {})[hostname] = reply

    def read_replies(self, command_id: str) -> dict[str, Any]:
        lock, _, replies = self._box()
        with lock:
            return dict(replies.get(command_id, {}))


class DatabaseMailbox(Mailbox):
    """Commands and replies as rows of the store's database alias."""

    alias: str
    now: Callable[[], float]

    def _at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)

    @_translated
    def broadcast(self, command: dict[str, Any]) -> None:
        from django.db import connections

        from ..models import ControlCommand

        if command.get("reply") and connections[self.alias].in_atomic_block:
            # Workers see the row only once the transaction commits: after the caller gave
            # up waiting, and then they would still run it.
            raise ControlStoreError(
                f"remote control command {command.get('name')!r} waits for replies, but it "
                f"is sent inside a transaction on database {self.alias!r} (ATOMIC_REQUESTS, "
                "transaction.atomic), where no worker sees it before the transaction commits: "
                "send it outside (transaction.non_atomic_requests on the view), or set "
                "TASKQ['CONTROL_URL'] to a Redis URL.")
        ControlCommand.objects.using(self.alias).create(
            command_id=command["id"], name=command["name"], arguments=command["arguments"],
            destination=command.get("destination"), reply=command.get("reply", True),
            expires_at=self._at(command["expires_at"]))

    @_translated
    def read_commands(self, cursor: str | None) -> tuple[str, list[dict[str, Any]]]:
        """The cursor is the highest row id read and the lower ids not seen yet ("holes"):
        an id is taken when a row is inserted but seen when its transaction commits, so a
        command committed after a later one (its sender was in a transaction, or slower) is
        still read at a later poll instead of being passed over for good."""
        from django.db.models import Q

        from ..models import ControlCommand

        rows = ControlCommand.objects.using(self.alias).order_by("id")
        if cursor is None:
            newest = rows.order_by("-id").values_list("id", flat=True).first()
            return str(newest or 0), []
        top, holes = _parse_cursor(cursor)
        wanted = Q(id__gt=top) | Q(id__in=holes) if holes else Q(id__gt=top)
        found = list(rows.filter(wanted)[:BATCH])
        commands = [{"id": r.command_id, "name": r.name, "arguments": r.arguments,
                     "destination": r.destination, "reply": r.reply,
                     "expires_at": r.expires_at.timestamp()} for r in found]
        return _next_cursor(top, holes, [r.id for r in found]), [
            c for c in commands if _live(c, self.now())]

    @_translated
    def prune_mailbox(self) -> int:
        """Delete expired commands and replies older than ``REPLY_KEEP`` (the store's
        ``prune``: they live in its alias, whatever EVENTS_DATABASE says)."""
        from ..models import ControlCommand, ControlReply

        now = self.now()
        commands = ControlCommand.objects.using(self.alias).filter(
            expires_at__lt=self._at(now)).delete()[0]
        replies = ControlReply.objects.using(self.alias).filter(
            created_at__lt=self._at(now - REPLY_KEEP)).delete()[0]
        return commands + replies

    @_translated
    def send_reply(self, command_id: str, hostname: str, reply: Any) -> None:
        from ..models import ControlReply

        ControlReply.objects.using(self.alias).create(command_id=command_id, hostname=hostname,
                                                      reply=reply)

    @_translated
    def read_replies(self, command_id: str) -> dict[str, Any]:
        from ..models import ControlReply

        rows = ControlReply.objects.using(self.alias).filter(command_id=command_id)
        return dict(rows.order_by("id").values_list("hostname", "reply"))


#: Ids below the highest one read that are still looked for, at most (and how far below).
HOLES, HOLE_SPAN = 100, 1000


def _parse_cursor(cursor: str) -> tuple[int, list[int]]:
    top, _, holes = (cursor or "0").partition(":")
    return int(top or 0), [int(h) for h in holes.split(",") if h]


def _next_cursor(top: int, holes: list[int], read: list[int]) -> str:
    seen = set(read)
    new_top = max([top, *read])
    missing = [h for h in holes if h not in seen]
    missing += [i for i in range(max(top + 1, new_top - HOLE_SPAN + 1), new_top)
                if i not in seen]
    kept = sorted(h for h in missing if h > new_top - HOLE_SPAN)[-HOLES:]
    return f"{new_top}:{','.join(map(str, kept))}" if kept else str(new_top)


class RedisMailbox(Mailbox):
    """Commands in a capped stream, replies in expiring lists."""

    client: Any
    prefix: str
    now: Callable[[], float]

    @property
    def _stream(self) -> str:
        return f"{self.prefix}:control"

    def _reply_key(self, command_id: str) -> str:
        return f"{self.prefix}:control:reply:{command_id}"

    @reconnecting
    def broadcast(self, command: dict[str, Any]) -> None:
        self.client.xadd(self._stream, {"command": json.dumps(command)},
                         maxlen=STREAM_LENGTH, approximate=True)

    @reconnecting
    def read_commands(self, cursor: str | None) -> tuple[str, list[dict[str, Any]]]:
        if cursor is None:
            newest = self.client.xrevrange(self._stream, count=1)
            return (_text(newest[0][0]) if newest else "0-0"), []
        found = self.client.xread({self._stream: cursor}, count=BATCH) or []
        entries = found[0][1] if found else []
        commands = [json.loads(_text(fields.get(b"command") or fields.get("command")))
                    for _, fields in entries]
        last = _text(entries[-1][0]) if entries else cursor
        return last, [c for c in commands if _live(c, self.now())]

    @reconnecting
    def send_reply(self, command_id: str, hostname: str, reply: Any) -> None:
        key = self._reply_key(command_id)
        pipe = self.client.pipeline()
        pipe.rpush(key, json.dumps({"hostname": hostname, "reply": reply}))
        pipe.expire(key, int(COMMAND_TTL))
        pipe.execute()

    @reconnecting
    def read_replies(self, command_id: str) -> dict[str, Any]:
        items = [json.loads(_text(raw)) for raw in
                 self.client.lrange(self._reply_key(command_id), 0, -1)]
        return {item["hostname"]: item["reply"] for item in items}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
