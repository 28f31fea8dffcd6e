"""The database result backend: one ``taskq_result`` row per task id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone

from .. import states
from ..engines import translating
from ..exceptions import ConfigurationError, ResultBackendConnectionError, ResultBackendError
from ..outcome import Outcome
from .base import ResultBackend, as_text, encode_argument, payload_text, plain_arguments
from .meta import PartResult, ResultMeta

_UPDATED = ["task_name", "state", "result", "content_type", "content_encoding", "traceback",
            "worker", "retries", "date_started", "date_done", "task_args", "task_kwargs",
            "queue"]

# Django's database errors become ours here (a lost connection apart from a refused value).
_translated = translating(ResultBackendError, ResultBackendConnectionError)


class DatabaseResultBackend(ResultBackend):
    """Results in the ``TaskResult`` model of a Django database alias."""

    def __init__(self, alias: str = "default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias = alias
        if self.compression:
            # Results are text that the admin, the dashboard and their searches read; Celery's
            # database backend cannot compress them either (it ignores result_compression).
            raise ConfigurationError(
                f"RESULT_COMPRESSION ({self.compression!r}) is not available with the database "
                "result backend: results are stored as readable text (the admin and dashboard "
                "show and search them). Unset RESULT_COMPRESSION (CELERY_RESULT_COMPRESSION), or "
                "store results in Redis (RESULT_BACKEND = 'redis://...').")

    @property
    def _model(self) -> Any:
        from ..models import TaskResult

        return TaskResult

    def _rows(self) -> Any:
        return self._model.objects.using(self.alias)

    @_translated
    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        now = timezone.now()
        self._rows().bulk_create(
            [self._model(task_id=task_id, task_name=name, state=states.PENDING, date_created=now)
             for task_id, name in records],
            ignore_conflicts=True, batch_size=500)

    @_translated
    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        latest = {o.task_id: o for o in outcomes}  # an upsert may touch each row once
        rows = [self._row(o) for o in latest.values()]
        if not rows:
            return
        features = connections[self.alias].features
        unique = ["task_id"] if features.supports_update_conflicts_with_target else None
        self._rows().bulk_create(rows, update_conflicts=True, unique_fields=unique,
                                 update_fields=_UPDATED, batch_size=500)

    def _row(self, outcome: Outcome) -> Any:
        text, encoding = payload_text(outcome)
        args, kwargs = (as_text(encode_argument(value, outcome.content_type),
                                outcome.content_encoding)[0]
                        for value in plain_arguments(outcome))
        return self._model(
            task_id=outcome.task_id, task_name=outcome.task_name, state=outcome.state,
            result=text, content_type=outcome.content_type, content_encoding=encoding,
            traceback=_text(outcome.traceback), worker=outcome.worker, retries=outcome.retries,
            date_started=outcome.date_started, date_done=outcome.date_done,
            date_created=outcome.date_started or timezone.now(), task_args=args,
            task_kwargs=kwargs, queue=outcome.queue or "")

    @_translated
    def get(self, task_id: str) -> ResultMeta | None:
        row = self._rows().filter(task_id=task_id).first()
        if row is None:
            return None

        def decoded(text: str | None) -> Any:
            return self.decode(text, row.content_type, row.content_encoding)

        return ResultMeta(
            task_id=row.task_id, state=row.state, traceback=row.traceback,
            result=decoded(row.result), task_name=row.task_name or None,
            date_created=row.date_created, date_started=row.date_started,
            date_done=row.date_done, worker=row.worker or None, retries=row.retries,
            args=decoded(row.task_args), kwargs=decoded(row.task_kwargs), queue=row.queue or None)

    @_translated
    def forget(self, task_id: str) -> None:
        self._rows().filter(task_id=task_id).delete()

    # -- saved groups: one ``taskq_groupresult`` row per group id --------------------------

    def _groups(self) -> Any:
        from ..models import GroupResultRecord

        return GroupResultRecord.objects.using(self.alias)

    @_translated
    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        self._groups().update_or_create(group_id=group_id, defaults={
            "task_ids": list(task_ids), "date_created": timezone.now()})

    @_translated
    def restore_group(self, group_id: str) -> list[str] | None:
        row = self._groups().filter(group_id=group_id).first()
        return None if row is None else [str(task_id) for task_id in row.task_ids]

    @_translated
    def delete_group(self, group_id: str) -> None:
        self._groups().filter(group_id=group_id).delete()

    # -- chords: a ``taskq_chord`` row, locked while a header task is counted ----------------

    def _chord_models(self) -> tuple[Any, Any]:
        from ..models import ChordPartRecord, ChordRecord

        return (ChordRecord.objects.using(self.alias), ChordPartRecord.objects.using(self.alias))

    @_translated
    def set_chord_size(self, group_id: str, size: int) -> None:
        chords, parts = self._chord_models()
        with transaction.atomic(using=self.alias):
            row, created = chords.select_for_update().get_or_create(
                group_id=group_id, defaults={"size": size})
            if created:
                return
            if row.sent:  # the same frozen chord sent again after it completed: a new run
                parts.filter(group_id=group_id).delete()
                chords.filter(pk=row.pk).update(size=size, done=0, sent=False,
                                                completed_by=None)
            else:
                chords.filter(pk=row.pk).update(size=size)

    @_translated
    def add_chord_parts(self, parts: Sequence[tuple[str, int | None, Outcome]]
                        ) -> list[list[PartResult] | None]:
        # In group id order, so that two workers lock chord rows in the same order.
        order = sorted(range(len(parts)), key=lambda at: parts[at][0])
        found: dict[int, list[PartResult] | None] = {}
        for at in order:
            found[at] = self.add_chord_part(*parts[at])
        return [found[at] for at in range(len(parts))]

    @_translated
    def add_chord_part(self, group_id: str, index: int | None,
                       outcome: Outcome) -> list[PartResult] | None:
        chords, parts = self._chord_models()
        text, encoding = payload_text(outcome)
        with transaction.atomic(using=self.alias):
            # Writing the chord's row first locks it (SQLite: the database) before anything is
            # read, so header tasks finishing at once are counted one after the other.
            if not chords.filter(group_id=group_id).update(size=F("size")):
                return None
            try:
                with transaction.atomic(using=self.alias):  # a redelivered task: counted once
                    parts.create(group_id=group_id, task_id=outcome.task_id,
                                 index=-1 if index is None else index, state=outcome.state,
                                 result=text, content_type=outcome.content_type,
                                 content_encoding=encoding)
            except IntegrityError:
                pass
            else:
                chords.filter(group_id=group_id).update(done=F("done") + 1)
            # The row this transaction wrote: read as it is now, whatever the isolation level.
            chord = chords.select_for_update().get(group_id=group_id)
            if chord.sent or chord.completed_by not in (None, outcome.task_id) \
                    or chord.done < chord.size:
                return None
            chords.filter(pk=chord.pk).update(completed_by=outcome.task_id)
            rows = parts.select_for_update().filter(group_id=group_id).order_by("index", "id")
            return [PartResult(row.task_id, row.state,
                               self.decode(row.result, row.content_type, row.content_encoding))
                    for row in rows]

    @_translated
    def chord_sent(self, group_id: str) -> None:
        chords, parts = self._chord_models()
        chords.filter(group_id=group_id).update(sent=True)
        parts.filter(group_id=group_id).delete()

    @_translated
    def cleanup(self) -> int:
        cutoff = timezone.now() - timedelta(seconds=self.expires)
        deleted, _ = self._rows().filter(date_done__lt=cutoff).delete()
        groups, _ = self._groups().filter(date_created__lt=cutoff).delete()  # saved groups too
        chords, parts = self._chord_models()
        old_chords = chords.filter(date_created__lt=cutoff)
        parts.filter(group_id__in=old_chords.values("group_id")).delete()
        old_chords.delete()
        return int(deleted) + int(groups)


def _text(value: str | None) -> str | None:
    """Text a database text column takes: PostgreSQL refuses NUL characters (a traceback
    quoting bytes can hold one), so they are written as ``\\x00``."""
    return value.replace("\x00", "\\x00") if value and "\x00" in value else value
