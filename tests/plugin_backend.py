"""A result store of "another package", plugged in by its dotted path (docs/result-backends.md):
results in an SQLite file, written only with what ``django_taskq.results.api`` exports.

    TASKQ = {"RESULT_BACKEND_SCHEMES": {"sqlitefile": "tests.plugin_backend.SQLiteFileBackend"},
             "RESULT_BACKEND": "sqlitefile:///path/to/results.sqlite3"}

It keeps results and saved groups, not chord counts (the optional chord methods are left out,
so a chord on it says "does not count chords").
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from django_taskq.exceptions import ConfigurationError, ResultBackendError
from django_taskq.results.api import (
    Outcome,
    ParsedUrl,
    ResultBackend,
    ResultMeta,
    decode_group,
    decode_meta,
    encode_group,
    encode_meta,
    encode_pending,
    result_meta,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS result (task_id TEXT PRIMARY KEY, meta BLOB NOT NULL, done REAL);
CREATE TABLE IF NOT EXISTS saved_group (group_id TEXT PRIMARY KEY, meta BLOB NOT NULL);
"""


class SQLiteFileBackend(ResultBackend):
    """Results as Celery meta mappings in one SQLite file; ``get()`` polls (the default)."""

    def __init__(self, url: ParsedUrl, **common: Any) -> None:
        super().__init__(**common)  # accept, expires, serializer, compression
        if not url.rest or url.host:
            raise ConfigurationError(f"RESULT_BACKEND {url.masked!r}: give a file, "
                                     "sqlitefile:///absolute/path.sqlite3")
        self.path = "/" + url.rest
        self._local = threading.local()  # nothing is opened here: checks build us to validate

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
                db.executescript(SCHEMA)
            except sqlite3.Error as exc:
                raise ResultBackendError(f"cannot open {self.path}: {exc}") from exc
            self._local.db = db
        return db

    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        self._db().executemany(
            "INSERT OR IGNORE INTO result (task_id, meta) VALUES (?, ?)",
            [(task_id, encode_pending(self, task_id, name)) for task_id, name in records])

    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        rows = [(o.task_id, encode_meta(self, o), o.date_done.timestamp() if o.date_done else None)
                for o in outcomes]
        self._db().executemany("INSERT OR REPLACE INTO result VALUES (?, ?, ?)", rows)

    def get(self, task_id: str) -> ResultMeta | None:
        row = self._db().execute("SELECT meta FROM result WHERE task_id = ?",
                                 (task_id,)).fetchone()
        return result_meta(task_id, decode_meta(self, task_id, row[0] if row else None))

    def forget(self, task_id: str) -> None:
        self._db().execute("DELETE FROM result WHERE task_id = ?", (task_id,))

    def cleanup(self) -> int:
        cursor = self._db().execute("DELETE FROM result WHERE done < ?",
                                    (time.time() - self.expires,))
        return cursor.rowcount

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
        self._local = threading.local()

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        self._db().execute("INSERT OR REPLACE INTO saved_group VALUES (?, ?)",
                           (group_id, encode_group(self, group_id, list(task_ids))))

    def restore_group(self, group_id: str) -> list[str] | None:
        row = self._db().execute("SELECT meta FROM saved_group WHERE group_id = ?",
                                 (group_id,)).fetchone()
        return decode_group(self, group_id, row[0] if row else None)

    def delete_group(self, group_id: str) -> None:
        self._db().execute("DELETE FROM saved_group WHERE group_id = ?", (group_id,))


class NotABackend:
    """Plugged in by mistake: not a ResultBackend."""


class HalfABackend(ResultBackend):
    """Plugged in by mistake: its abstract methods are missing."""

    def get(self, task_id: str) -> ResultMeta | None:
        return None
