"""The database sink: events kept for a window, workers' last word, per-minute and total counts.

One ``publish`` is one transaction: a bulk insert of the task events, the workers' rows brought
up to date, and the counters added to (events/counters.py). The dashboard, ``manage.py taskq``
and the Prometheus view read these tables; ``prune`` drops what is older than EVENTS_EXPIRES.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ..engines import database_errors
from ..exceptions import ResultBackendConnectionError, ResultBackendError
from .counters import increment
from .models import MINUTE_COUNTS

#: Prometheus' default histogram buckets (seconds), and +Inf.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                   10.0, 30.0, 60.0, 300.0, math.inf)
#: Event type → the TaskMinute column it counts in.
COUNTED = {"task-received": "received", "task-started": "started",
           "task-succeeded": "succeeded", "task-failed": "failed", "task-retried": "retried",
           "task-rejected": "rejected", "task-revoked": "revoked"}
#: Event type → the state its total counts (TaskCounter ``state:<STATE>``).
FINAL_STATES = {"task-succeeded": "SUCCESS", "task-failed": "FAILURE", "task-retried": "RETRY",
                "task-rejected": "REJECTED", "task-revoked": "REVOKED"}
logger = logging.getLogger(__name__)
_WORKER_FIELDS = ("pid", "freq", "active", "processed", "loadavg", "sw_ident", "sw_ver")


def bucket_label(bound: float) -> str:
    """The ``le`` label of a bucket, as Prometheus writes it."""
    return "+Inf" if math.isinf(bound) else repr(bound)


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class DatabaseEventSink:
    """Stores events in the ``EVENTS_DATABASE`` alias."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """Store the batch in one transaction. If the database refuses it for what it holds
        (not for being unreachable), store it event by event, each in a savepoint, dropping
        (and logging) the events it still refuses: a batch that can never be stored would
        otherwise come back at every flush and hold back every event after it."""
        from django.db import transaction

        cleaned = [_prepared(event) for event in events]
        try:
            with database_errors(self.alias, "store events", ResultBackendError,
                                 ResultBackendConnectionError), \
                    transaction.atomic(using=self.alias):
                self._store(cleaned)
        except ResultBackendConnectionError:
            raise
        except Exception:
            if len(cleaned) < 2:
                raise  # kept: with the next events it is tried alone
            self._one_by_one(cleaned)

    def _one_by_one(self, events: Sequence[Prepared]) -> None:
        """Raises ResultBackendError when no event at all could be stored (a missing table,
        a permission: nothing to do with the events, so they are kept)."""
        from django.db import InterfaceError, OperationalError, transaction

        refused: list[Prepared] = []
        with database_errors(self.alias, "store events", ResultBackendError,
                             ResultBackendConnectionError), \
                transaction.atomic(using=self.alias):
            for event in events:
                try:
                    with transaction.atomic(using=self.alias):
                        self._store([event])
                except (OperationalError, InterfaceError):
                    raise  # unreachable: the whole batch comes again next flush
                except Exception:  # noqa: BLE001 - this event only
                    if not refused:
                        logger.warning("events: the database refuses %.300r", event[0],
                                       exc_info=True)
                    refused.append(event)
            if len(refused) == len(events):
                raise ResultBackendError(f"database {self.alias!r} refuses every event of a "
                                         "batch (see the log above)")
        if refused:
            logger.warning("events: %d event(s) the database refuses were dropped",
                           len(refused))

    def _store(self, events: Sequence[Prepared]) -> None:
        rows, minutes = [], _counts()
        totals: defaultdict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: {"value": 0})
        for event, text in events:
            kind = event.get("type", "")
            if kind.startswith("worker-"):
                self._worker(event)
                if kind == "worker-heartbeat":
                    continue
            # Cut as the column is, for the counters too (their key is the stored name).
            name = str(event.get("name") or "")[:255]
            rows.append((kind[:32], str(event.get("uuid") or "")[:255], name,
                         str(event.get("hostname", ""))[:255], _when(event["timestamp"]),
                         text))
            if kind in COUNTED and name:
                _count(minutes, totals, event, kind, name)
        self._insert(rows)
        increment(self.alias, "taskq_taskminute", ("minute", "task_name"), minutes)
        increment(self.alias, "taskq_taskcounter", ("task_name", "key"), totals)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """COPY on PostgreSQL with psycopg 3, else one multi-row INSERT per 500 events: model
        instances cost more than the rest of a task's events together, and psycopg parses a
        long multi-row statement again for every batch size."""
        from django.db import connections

        if not rows:
            return
        connection = connections[self.alias]
        names = ("type", "task_id", "task_name", "hostname", "timestamp", "fields")
        columns = ", ".join(connection.ops.quote_name(c) for c in names)
        with connection.cursor() as cursor:
            raw: Any = getattr(cursor, "cursor", None)
            if connection.vendor == "postgresql" and hasattr(raw, "copy"):
                with raw.copy(f"COPY taskq_event ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return
            adapt = connection.ops.adapt_datetimefield_value
            marks = "(%s, %s, %s, %s, %s, %s)"
            for start in range(0, len(rows), 500):
                chunk = rows[start:start + 500]
                cursor.execute(
                    f"INSERT INTO taskq_event ({columns}) VALUES "
                    f"{', '.join([marks] * len(chunk))}",
                    [v for row in chunk for v in (*row[:4], adapt(row[4]), row[5])])

    def _worker(self, event: dict[str, Any]) -> None:
        from .models import WorkerState

        kind, when = event["type"], _when(event["timestamp"])
        values: dict[str, Any] = {k: event[k] for k in _WORKER_FIELDS if event.get(k) is not None}
        for key in ("pool", "concurrency", "queues"):
            if event.get(key) is not None:
                values[key] = event[key]
        values["last_heartbeat"] = when
        if kind == "worker-online":
            values.update(started_at=when, stopped_at=None)
        elif kind == "worker-heartbeat":
            # A worker that beats is alive: the offline of an older one of the same hostname
            # (draining while this one started, in a deploy) may have come after its online.
            values.update(stopped_at=None)
        elif kind == "worker-offline":
            values.update(stopped_at=when, active=0)
        hostname = str(event.get("hostname", ""))[:255]
        manager = WorkerState.objects.using(self.alias)
        if not manager.filter(hostname=hostname).update(**values):
            manager.update_or_create(hostname=hostname, defaults=values)

    def close(self) -> None:
        """Nothing to release: connections belong to the thread that used them (the monitor
        thread closes its own; the last flush runs on the worker's thread)."""


def _counts() -> defaultdict[tuple[Any, ...], dict[str, float]]:
    return defaultdict(lambda: {column: 0 for column in (*MINUTE_COUNTS, "runtime_sum")})


def _count(minutes: Any, totals: Any, event: dict[str, Any], kind: str, name: str) -> None:
    stamp = int(event["timestamp"]) // 60 * 60
    row = minutes[(_when(stamp), name)]
    row[COUNTED[kind]] += 1
    runtime = event.get("runtime")
    if kind in FINAL_STATES:
        _total(totals, name, f"state:{FINAL_STATES[kind]}")
    if kind in ("task-succeeded", "task-failed") and isinstance(runtime, (int, float)) \
            and math.isfinite(runtime):
        row["runtime_sum"] += runtime
        bound = next(b for b in RUNTIME_BUCKETS if runtime <= b)
        for key, amount in ((f"runtime:le:{bucket_label(bound)}", 1), ("runtime:count", 1),
                            ("runtime:sum", runtime)):
            _total(totals, name, key, amount)


def _total(totals: Any, name: str, key: str, amount: float = 1) -> None:
    totals[(name, key)]["value"] += amount


#: An event and its JSON text, as stored.
Prepared = tuple[dict[str, Any], str]
#: What JSON text shows of a value some database refuses: NUL, a surrogate (a lone one, or
#: half of a pair: both are rare enough to take the careful road).
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _prepared(event: dict[str, Any]) -> Prepared:
    """The event, cleaned only when it needs it, and its JSON text. The common event is
    encoded once and checked on its text; walking every value costs twice the insert."""
    try:
        text = json.dumps(event, allow_nan=False, default=repr)
    except ValueError:  # NaN or an infinity
        text = None
    if text is None or _SUSPECT.search(text):
        event = _clean(event)
        text = json.dumps(event, default=lambda value: _clean(repr(value)))
    return event, text


def _clean(value: Any) -> Any:
    """``value`` as every database stores it: NUL characters written ``\\x00`` (PostgreSQL
    refuses them in text and jsonb; an exception quoting bytes can hold one), lone surrogates
    as ``\\udcff`` (PostgreSQL and MariaDB refuse them), NaN and infinities as text (not JSON)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(_clean(key)): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def prune(alias: str, expires: float, now: datetime | None = None) -> int:
    """Delete events, minutes, control messages and long-gone workers older than ``expires``."""
    from .models import ControlCommand, ControlReply, TaskEvent, TaskMinute, WorkerState

    cutoff = (now or datetime.now(timezone.utc)) - timedelta(seconds=expires)
    removed = 0
    with database_errors(alias, "prune events", ResultBackendError, ResultBackendConnectionError):
        for model, column in ((TaskEvent, "timestamp"), (TaskMinute, "minute"),
                              (WorkerState, "last_heartbeat"), (ControlReply, "created_at")):
            removed += model.objects.using(alias).filter(**{f"{column}__lt": cutoff}).delete()[0]
        removed += ControlCommand.objects.using(alias).filter(
            expires_at__lt=now or datetime.now(timezone.utc)).delete()[0]
    return removed
