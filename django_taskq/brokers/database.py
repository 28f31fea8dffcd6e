"""The database broker: messages are rows, claimed in batches with a lease.

Claim strategies (one statement per batch wherever the database allows it):
- PostgreSQL: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …``.
- SQLite: the same statement without the lock clause; a single UPDATE takes SQLite's write lock at
  once, so two workers can never claim the same row (and no read-to-write upgrade can deadlock).
- MySQL/MariaDB: ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE … WHERE id IN``, in one
  transaction (MariaDB has no UPDATE … RETURNING).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import connections, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from ..engines import database_errors, translating
from ..exceptions import BrokerConnectionError, BrokerError, SerializationError
from ..message import Envelope
from ..nesting import check_json
from .base import (
    DEFAULT_MAX_DELIVERIES,
    Broker,
    DeadLetter,
    DeadLetterStore,
    Delivery,
    QueueCounts,
    worker_lost_reason,
)

T = TypeVar("T")

_COLUMNS = ("id", "queue", "priority", "headers", "properties", "body", "content_type",
            "content_encoding", "attempts")


_connection_errors = translating(BrokerError, BrokerConnectionError)


def _pks(letter_ids: Sequence[str]) -> list[int]:
    """Dead letter ids as primary keys; one that is not a number names no row."""
    return [int(text) for text in (str(i).strip() for i in letter_ids) if text.isascii() and text.isdigit()]


#: Nesting a headers or properties column may have; deeper reads as ``{}`` (see _json).
_MAX_COLUMN_DEPTH = 32


def _json(value: Any) -> dict[str, Any]:
    """A headers or properties column as a dict. The databases take JSON far deeper than Python
    parses (or than 3.11 does; 3.12 parses more): a row that is not a mapping, or nested
    deeper than any message's headers are, reads as ``{}``, so the worker dead-letters it as
    malformed (no ``task`` header) instead of stopping on it at every delivery."""
    if isinstance(value, (str, bytes)):
        data = value.encode("utf-8") if isinstance(value, str) else value
        try:
            check_json(data, _MAX_COLUMN_DEPTH)
            value = json.loads(data)
        except (SerializationError, RecursionError, ValueError):
            return {}
    return value if isinstance(value, dict) else {}


class DatabaseBroker(Broker, DeadLetterStore):
    """Messages stored in the ``taskq_message`` table of a Django database alias."""

    transactional = True

    def __init__(self, alias: str = "default", poll_interval: float = 0.5, *,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES,
                 now: Callable[[], datetime] = timezone.now) -> None:
        self.alias = alias
        self.poll_interval = poll_interval
        self.max_deliveries = max_deliveries
        self.now = now
        self._wake = threading.Event()
        self._prepared = False

    @property
    def _model(self) -> Any:
        from ..models import QueuedMessage  # the ORM is touched on first use, never at import

        return QueuedMessage

    def _rows(self) -> Any:
        return self._model.objects.using(self.alias)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """The caller's transaction (joined as a savepoint) or a new one; a lost connection
        while opening or committing it is a BrokerConnectionError, like every other call."""
        with database_errors(self.alias, "atomic", BrokerError, BrokerConnectionError), \
                transaction.atomic(using=self.alias):
            yield

    @_connection_errors
    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        connection = connections[self.alias]
        if connection.vendor == "postgresql" and len(envelopes) > 1:
            self._insert_pipelined(connection, envelopes)
            return
        now = self.now()
        rows = [self._model(
            queue=e.queue, message_id=e.message_id, task_name=e.task_name, priority=e.priority,
            headers=e.headers, properties=e.properties, body=e.body, content_type=e.content_type,
            content_encoding=e.content_encoding, available_at=e.eta or now, created_at=now,
        ) for e in envelopes]
        self._rows().bulk_create(rows, batch_size=500)

    def _insert_pipelined(self, connection: Any, envelopes: Sequence[Envelope]) -> None:
        """PostgreSQL bulk insert: one prepared statement, executed pipelined by psycopg.

        A single multi-row INSERT costs more in client-side query parsing than the rows
        themselves (bench/README.md); executemany sends them all in one round trip.
        """
        qn = connection.ops.quote_name
        columns = ("queue", "message_id", "task_name", "priority", "headers", "properties",
                   "body", "content_type", "content_encoding", "available_at", "created_at",
                   "state", "attempts", "locked_by")
        marks = ", ".join("%s::jsonb" if c in ("headers", "properties") else "%s"
                          for c in columns)
        sql = (f"INSERT INTO {qn(self._model._meta.db_table)} "
               f"({', '.join(qn(c) for c in columns)}) VALUES ({marks})")
        now = self.now()
        rows = [(e.queue, e.message_id, e.task_name, e.priority, json.dumps(e.headers),
                 json.dumps(e.properties), e.body, e.content_type, e.content_encoding,
                 e.eta or now, now, "ready", 0, "") for e in envelopes]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    @_connection_errors
    def reserve(self, queues: Sequence[str], *, max_messages: int, lease: float, worker: str,
                timeout: float = 0.0) -> list[Delivery]:
        self._prepare()
        deadline = time.monotonic() + timeout
        while True:
            token = f"{worker}#{uuid.uuid4().hex[:12]}"
            deliveries = self._claim(list(queues), max_messages, lease, token)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            if self._wake.wait(min(self.poll_interval, remaining)):
                self._wake.clear()
                return []

    def interrupt(self) -> None:
        self._wake.set()

    def _prepare(self) -> None:
        """Put a SQLite database in WAL mode once, so readers and the worker's writers coexist."""
        connection = connections[self.alias]
        if self._prepared or connection.vendor != "sqlite" or connection.in_atomic_block:
            return
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
        self._prepared = True

    def _claim(self, queues: list[str], limit: int, lease: float, token: str) -> list[Delivery]:
        connection = connections[self.alias]
        now = self.now()
        locked_until = now + timedelta(seconds=lease)
        if connection.vendor in ("postgresql", "sqlite"):
            rows = self._claim_returning(connection, queues, limit, now, locked_until, token)
        else:
            rows = self._claim_select_then_update(queues, limit, now, locked_until, token)
        rows.sort(key=lambda row: (-row[2], row[0]))
        return [self._delivery(row, token) for row in rows]

    def _claim_returning(self, connection: Any, queues: list[str], limit: int, now: datetime,
                         locked_until: datetime, token: str) -> list[tuple[Any, ...]]:
        qn, adapt = connection.ops.quote_name, connection.ops.adapt_datetimefield_value
        table = qn(self._model._meta.db_table)
        lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
        marks = ", ".join(["%s"] * len(queues))
        sql = (
            f"UPDATE {table} SET {qn('state')} = %s, {qn('locked_until')} = %s, "
            f"{qn('locked_by')} = %s, {qn('attempts')} = {qn('attempts')} + 1 "
            f"WHERE {qn('id')} IN (SELECT {qn('id')} FROM {table} WHERE {qn('state')} = %s "
            f"AND {qn('queue')} IN ({marks}) AND {qn('available_at')} <= %s "
            f"ORDER BY {qn('priority')} DESC, {qn('available_at')}, {qn('id')} LIMIT %s{lock}) "
            f"RETURNING {', '.join(qn(c) for c in _COLUMNS)}"
        )
        params = ["reserved", adapt(locked_until), token, "ready", *queues, adapt(now), limit]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def _claim_select_then_update(self, queues: list[str], limit: int, now: datetime,
                                  locked_until: datetime, token: str) -> list[tuple[Any, ...]]:
        skip_locked = connections[self.alias].features.has_select_for_update_skip_locked
        with transaction.atomic(using=self.alias):
            candidates = (self._rows().select_for_update(skip_locked=skip_locked)
                          .filter(state="ready", queue__in=queues, available_at__lte=now)
                          .order_by("-priority", "available_at", "id"))
            rows = list(candidates.values_list(*_COLUMNS)[:limit])
            if rows:
                self._rows().filter(id__in=[r[0] for r in rows]).update(
                    state="reserved", locked_until=locked_until, locked_by=token,
                    attempts=F("attempts") + 1)
        return [(*row[:-1], row[-1] + 1) for row in rows]

    def _delivery(self, row: tuple[Any, ...], token: str) -> Delivery:
        row_id, queue, priority, headers, properties, body, ctype, cenc, attempts = row
        envelope = Envelope(queue=queue, body=bytes(body), headers=_json(headers),
                            content_type=ctype, content_encoding=cenc, priority=priority,
                            properties=_json(properties))
        return Delivery(envelope, row_id, attempts, token)

    def _owned(self, deliveries: Sequence[Delivery]) -> Iterator[Any]:
        """One queryset per claim token, selecting the rows these deliveries still hold."""
        by_token: dict[str, list[Any]] = defaultdict(list)
        for delivery in deliveries:
            by_token[delivery.lease_token].append(delivery.tag)
        for token, ids in by_token.items():
            yield self._rows().filter(id__in=ids, locked_by=token, state="reserved")

    @_connection_errors
    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        for rows in self._owned(deliveries):
            rows._raw_delete(self.alias)  # one DELETE: no signals or cascades on this table

    @_connection_errors
    def requeue(self, delivery: Delivery, eta: datetime | None = None) -> None:
        for rows in self._owned([delivery]):
            rows.update(state="ready", available_at=eta or self.now(), locked_until=None,
                        locked_by="")
        self._wake.set()

    @_connection_errors
    def defer(self, delivery: Delivery, eta: datetime) -> None:
        for rows in self._owned([delivery]):
            rows.update(state="ready", available_at=eta, locked_until=None, locked_by="",
                        attempts=F("attempts") - 1)

    @_connection_errors
    def release(self, deliveries: Sequence[Delivery]) -> None:
        for rows in self._owned(deliveries):
            rows.update(state="ready", locked_until=None, locked_by="",
                        attempts=F("attempts") - 1)

    @_connection_errors
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with transaction.atomic(using=self.alias):
            for rows in self._owned([delivery]):
                # Write first: SQLite refuses (at once, busy timeout or not) a transaction that
                # reads and then wants to write while another connection writes.
                rows.update(state="reserved")
                found = list(rows.select_for_update().defer("headers", "properties"))
                for row in found:  # as reserve read them (never parsed again: see _json)
                    row.headers = delivery.envelope.headers
                    row.properties = delivery.envelope.properties
                self._bury(found, reason)

    def _bury(self, rows: list[Any], reason: str | Callable[[Any], str]) -> None:
        from ..models import DeadLetterMessage

        letters = [DeadLetterMessage(
            queue=r.queue, message_id=r.message_id, task_name=r.task_name, priority=r.priority,
            headers=r.headers, properties=r.properties, body=r.body, content_type=r.content_type,
            content_encoding=r.content_encoding, attempts=r.attempts, created_at=r.created_at,
            reason=reason(r) if callable(reason) else reason,
        ) for r in rows]
        DeadLetterMessage.objects.using(self.alias).bulk_create(letters)
        self._rows().filter(id__in=[r.id for r in rows])._raw_delete(self.alias)

    @_connection_errors
    def extend_leases(self, deliveries: Sequence[Delivery], lease: float) -> None:
        locked_until = self.now() + timedelta(seconds=lease)
        for rows in self._owned(deliveries):
            rows.update(locked_until=locked_until)

    @_connection_errors
    def recover(self) -> list[DeadLetter]:
        now = self.now()
        skip_locked = connections[self.alias].features.has_select_for_update_skip_locked
        expired = self._rows().filter(state="reserved", locked_until__lt=now)
        with transaction.atomic(using=self.alias):
            # The write comes first: see dead_letter() on SQLite's lock upgrade.
            returned = expired.filter(attempts__lt=self.max_deliveries).update(
                state="ready", locked_until=None, locked_by="", available_at=now)
            poison = list(expired.filter(attempts__gte=self.max_deliveries)
                          .select_for_update(skip_locked=skip_locked))
            if poison:
                self._bury(poison, lambda row: worker_lost_reason(row.attempts))
        if returned:
            self._wake.set()
        return [DeadLetter(self._delivery(tuple(getattr(r, c) for c in _COLUMNS), "").envelope,
                           worker_lost_reason(r.attempts), r.attempts) for r in poison]

    @_connection_errors
    def purge(self, queue: str) -> int:
        count, _ = self._rows().filter(queue=queue, state="ready").delete()
        return int(count)

    @_connection_errors
    def size(self, queue: str) -> int:
        return int(self._rows().filter(queue=queue, state="ready").count())

    @_connection_errors
    def queue_counts(self, queues: Sequence[str]) -> dict[str, QueueCounts]:
        """One grouped COUNT (the claim index leads with state and queue)."""
        names = list(dict.fromkeys(queues))
        if not names:
            return {}
        ready = Q(state="ready")
        rows = self._rows().filter(queue__in=names).values("queue").annotate(
            depth=Count("id", filter=ready),
            scheduled=Count("id", filter=ready & Q(available_at__gt=self.now())),
            in_flight=Count("id", filter=Q(state="reserved"))).order_by()
        found = {row["queue"]: QueueCounts(row["depth"], row["scheduled"], row["in_flight"])
                 for row in rows}
        return {name: found.get(name, QueueCounts(0, 0, 0)) for name in names}

    # -- dead letters ------------------------------------------------------------------------

    def _dead_rows(self) -> Any:
        from ..models import DeadLetterMessage

        return DeadLetterMessage.objects.using(self.alias)

    def _letter(self, row: Any) -> DeadLetter:
        envelope = Envelope(queue=row.queue, body=bytes(row.body), headers=_json(row.headers),
                            content_type=row.content_type,
                            content_encoding=row.content_encoding, priority=row.priority,
                            properties=_json(row.properties))
        return DeadLetter(envelope, row.reason, row.attempts, id=str(row.pk), dead_at=row.dead_at)

    @_connection_errors
    def dead_letter_list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return [self._letter(r) for r in self._dead_rows().order_by("id")[offset:offset + limit]]

    @_connection_errors
    def dead_letter_count(self) -> int:
        return int(self._dead_rows().count())

    @_connection_errors
    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        pks = _pks([letter_id])
        row = self._dead_rows().filter(pk__in=pks).first() if pks else None
        return self._letter(row) if row is not None else None

    @_connection_errors
    def dead_letter_requeue(self, letter_ids: Sequence[str] | None = None) -> int:
        """One transaction: the messages are inserted as new ready rows and the letters go."""
        with transaction.atomic(using=self.alias):
            rows = self._take_dead(letter_ids)
            now = self.now()
            self._rows().bulk_create([self._model(
                queue=r.queue, message_id=r.message_id, task_name=r.task_name,
                priority=r.priority, headers=r.headers, properties=r.properties, body=r.body,
                content_type=r.content_type, content_encoding=r.content_encoding,
                available_at=now, created_at=r.created_at, attempts=0,
            ) for r in rows], batch_size=500)
        if rows:
            self._wake.set()
        return len(rows)

    @_connection_errors
    def dead_letter_purge(self, letter_ids: Sequence[str] | None = None) -> int:
        with transaction.atomic(using=self.alias):
            return len(self._take_dead(letter_ids))

    def _take_dead(self, letter_ids: Sequence[str] | None) -> list[Any]:
        """Lock, read and delete the chosen dead letters (inside the caller's transaction):
        of two concurrent requeues of one letter, the second finds it gone."""
        chosen = self._dead_rows()
        if letter_ids is not None:
            chosen = chosen.filter(pk__in=_pks(letter_ids))
        # Write first: see dead_letter() on SQLite's lock upgrade.
        if not chosen.update(attempts=F("attempts")):
            return []
        rows = list(chosen.select_for_update().order_by("id"))
        self._dead_rows().filter(pk__in=[r.pk for r in rows])._raw_delete(self.alias)
        return rows

    def close(self) -> None:
        """Nothing to do: Django owns the database connections (closed around tasks)."""
