"""Prometheus metrics from stored data: the ``/metrics`` view a project mounts in its URLconf.

Each scrape reads what the workers stored (``taskq_worker``, ``taskq_taskcounter`` in
EVENTS_DATABASE) and asks the broker for queue numbers and dead letters. Nothing is counted in
the web process, so every web process serves the same numbers and a restart loses none. Every
query is bounded; a source that fails (broker down) is reported as ``taskq_scrape_errors`` and
the rest still renders. Needs ``prometheus_client`` (``pip install django-taskq[metrics]``);
see docs/monitoring.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("django_taskq.metrics needs prometheus_client: "
                      "pip install django-taskq[metrics]") from exc

from django.contrib.admin.views.decorators import staff_member_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .conf import get_settings
from .events.store import RUNTIME_BUCKETS, bucket_label

logger = logging.getLogger(__name__)

#: Worker rows read per scrape (most recent heartbeat first); rows of workers gone for longer
#: than EVENTS_EXPIRES are pruned anyway.
MAX_WORKERS = 1000
#: Queues whose depth is asked per scrape (DEFAULT_QUEUE and the workers' queues).
MAX_QUEUES = 200
#: Counter rows read per scrape (about 25 per task name).
MAX_COUNTER_ROWS = 25_000
#: The parts a scrape reads; each has a ``taskq_scrape_errors{source}`` sample.
SOURCES = ("broker", "dead_letters", "workers", "counters")

_STATE_PREFIX = "state:"
_BUCKET_PREFIX = "runtime:le:"


class TaskqCollector(Collector):
    """Reads the stored data on every ``collect`` (one scrape) and yields metric families."""

    def __init__(self, broker: Any = None) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        alias = get_settings().EVENTS_DATABASE  # None: nothing stored, only the broker's part
        failed: set[str] = set()
        families: list[Metric] = []
        workers: list[Any] = []
        if alias is not None:
            workers = _guarded(failed, "workers", lambda: _workers(alias))
            families.extend([] if "workers" in failed else _worker_families(workers))
        families.extend(_guarded(failed, "broker", lambda: self._queue_depths(workers)))
        if "broker" in failed:  # down: asking again would wait out another timeout
            failed.add("dead_letters")
        else:
            families.extend(_guarded(failed, "dead_letters", self._dead_letters))
        if alias is not None:
            families.extend(_guarded(failed, "counters", lambda: _counter_families(alias)))
        yield from families
        errors = GaugeMetricFamily("taskq_scrape_errors",
                                   "1 when this source could not be read in this scrape",
                                   labels=["source"])
        for source in SOURCES:
            errors.add_metric([source], 1.0 if source in failed else 0.0)
        yield errors

    def broker(self) -> Any:
        """The broker asked: the one given, or the configured one (BROKER_URL)."""
        if self._broker is None:
            from .brokers import get_broker

            self._broker = get_broker()
        return self._broker

    def _queue_depths(self, workers: list[Any]) -> list[Metric]:
        depth = GaugeMetricFamily("taskq_queue_depth",
                                  "Messages waiting in the queue (ready or delayed, not leased)",
                                  labels=["queue"])
        scheduled = GaugeMetricFamily("taskq_queue_scheduled",
                                      "Messages of the depth waiting for their ETA (countdown, "
                                      "eta, retry delay, rate limit)", labels=["queue"])
        in_flight = GaugeMetricFamily("taskq_queue_in_flight",
                                      "Messages reserved by workers and not yet acknowledged",
                                      labels=["queue"])
        queues = _queues(get_settings().DEFAULT_QUEUE, workers)
        found = self.broker().queue_counts(queues)  # one call: a broker that is down fails once
        for queue in queues:
            counts = found[queue]
            depth.add_metric([queue], float(counts.depth))
            if counts.scheduled is not None:
                scheduled.add_metric([queue], float(counts.scheduled))
            if counts.in_flight is not None:
                in_flight.add_metric([queue], float(counts.in_flight))
        # A number the broker cannot tell is left out, not reported as 0.
        return [depth, *(family for family in (scheduled, in_flight) if family.samples)]

    def _dead_letters(self) -> list[Metric]:
        from .brokers.base import DeadLetterStore

        broker = self.broker()
        if not isinstance(broker, DeadLetterStore):
            return []  # its own tools show them
        return [GaugeMetricFamily("taskq_dead_letters", "Messages in the dead letters",
                                  value=float(broker.dead_letter_count()))]


def _guarded(failed: set[str], source: str, read: Callable[[], list[Any]]) -> Any:
    """``read()``, or ``[]`` with ``source`` marked failed: one source never fails a scrape."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - a scrape reports what it could read
        logger.warning("metrics: reading %s failed", source, exc_info=True)
        failed.add(source)
        return []


def _workers(alias: str) -> list[Any]:
    from .events.models import WorkerState

    rows = WorkerState.objects.using(alias).only(
        "hostname", "queues", "last_heartbeat", "freq", "stopped_at", "active", "processed")
    return list(rows.order_by("-last_heartbeat")[:MAX_WORKERS])


def _queues(default: str, workers: Iterable[Any]) -> list[str]:
    """DEFAULT_QUEUE, then the queues the workers consume, each once (at most MAX_QUEUES)."""
    names = {default: None}
    for worker in workers:
        queues = worker.queues if isinstance(worker.queues, list) else []
        names.update((str(queue), None) for queue in queues if queue)
    return list(names)[:MAX_QUEUES]


def _worker_families(workers: list[Any]) -> list[Metric]:
    count = GaugeMetricFamily("taskq_workers", "Workers by state (online: heart-beating)",
                              labels=["state"])
    active = GaugeMetricFamily("taskq_worker_active_tasks",
                               "Tasks running on the worker at its last heartbeat (0 offline)",
                               labels=["worker"])
    processed = CounterMetricFamily("taskq_worker_processed",
                                    "Tasks the worker finished since it started",
                                    labels=["worker"])
    online = 0
    for worker in workers:
        is_online = worker.online
        online += is_online
        active.add_metric([worker.hostname], float(worker.active if is_online else 0))
        processed.add_metric([worker.hostname], float(worker.processed))
    count.add_metric(["online"], float(online))
    count.add_metric(["offline"], float(len(workers) - online))
    return [count, active, processed]


def _counter_rows(alias: str) -> list[tuple[str, str, float]]:
    """(task, key, value) rows, by task; a task cut by the row limit is left out whole."""
    from .events.models import TaskCounter

    rows = list(TaskCounter.objects.using(alias).order_by("task_name", "key")
                .values_list("task_name", "key", "value")[:MAX_COUNTER_ROWS])
    if len(rows) == MAX_COUNTER_ROWS:
        cut = rows[-1][0]
        logger.warning("metrics: more than %d counter rows; tasks from %r on are left out",
                       MAX_COUNTER_ROWS, cut)
        rows = [row for row in rows if row[0] != cut]
    return rows


def _counter_families(alias: str) -> list[Metric]:
    tasks = CounterMetricFamily("taskq_tasks", "Tasks that reached a state, by task name",
                                labels=["task", "state"])
    runtime = HistogramMetricFamily("taskq_task_runtime_seconds",
                                    "Run time of finished tasks (succeeded or failed)",
                                    labels=["task"])
    histograms: dict[str, dict[str, float]] = {}
    for task, key, value in _counter_rows(alias):
        if key.startswith(_STATE_PREFIX):
            tasks.add_metric([task, key[len(_STATE_PREFIX):]], value)
        elif key.startswith("runtime:"):
            histograms.setdefault(task, {})[key] = value
    for task, keys in histograms.items():
        buckets, total = _cumulative(keys)
        runtime.add_metric([task], buckets, total)
    return [tasks, runtime]


def _cumulative(keys: dict[str, float]) -> tuple[list[tuple[str, float]], float]:
    """Prometheus buckets from stored ones: stored per bucket (a run counts in one), summed up
    here; every default bound is present, and +Inf holds the count."""
    counts = {bound: 0.0 for bound in RUNTIME_BUCKETS}
    for key, value in keys.items():
        if key.startswith(_BUCKET_PREFIX):
            try:
                bound = float(key[len(_BUCKET_PREFIX):])
            except ValueError:
                continue
            counts[bound] = counts.get(bound, 0.0) + value
    counts.setdefault(math.inf, 0.0)
    buckets, running = [], 0.0
    for bound in sorted(counts):
        running += counts[bound]
        buckets.append((bucket_label(bound), running))
    return buckets, keys.get("runtime:sum", 0.0)


def render(broker: Any = None) -> bytes:
    """One scrape in the Prometheus text format (a private registry: never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskqCollector(broker))
    return generate_latest(registry)


@transaction.non_atomic_requests  # read only; a failed query must not poison ATOMIC_REQUESTS
@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus metrics of the task queue; unprotected: mount it where only Prometheus
    reaches it, or use :func:`metrics_view_for_staff` (docs/monitoring.md)."""
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


#: :func:`metrics_view` for logged-in staff only (others are sent to the admin login).
metrics_view_for_staff = staff_member_required(metrics_view)

__all__ = ["TaskqCollector", "metrics_view", "metrics_view_for_staff", "render"]
