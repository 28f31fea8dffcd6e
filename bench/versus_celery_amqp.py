"""The ``--broker amqp`` part of ``bench/versus_celery.py``: the drain phase on RabbitMQ.

    .venv/bin/python bench/versus_celery.py --broker amqp --repeat 3

Both frameworks get the same backlog in a dedicated queue (``--amqp-queue``, default
``bench_amqp``, deleted with its exchange before and after every measurement; no other queue is
touched), on the default vhost of ``--amqp`` (default amqp://guest:guest@127.0.0.1:5672//):

    bench.mark, N x bench.noop, bench.mark

published untimed with django_taskq's ``delay_many`` (Celery protocol v2 messages, which both
workers run; the queue is declared with ``x-max-priority 10``, so the Celery app sets
``task_queue_max_priority = 10`` and ``task_default_queue`` to the bench queue). Then ONE
worker process with ONE execution slot starts and consumes: ours is ``taskworker -P solo -c 1``
(``bench/taskq_bench_worker.py --broker``), Celery's ``celery worker --pool solo -c 1`` (remote
control off, so it declares no pidbox queue), both with ``--prefetch-multiplier P``.

Timing. ``bench.mark`` appends ``time.monotonic()`` (system-wide clock) to a file, the same code in
both frameworks. Single consumer, single slot, equal priorities: the first mark runs before any
no-op and the second after all of them, so **rate = N / (second mark - first mark)**: the N
no-ops are received, decoded, executed and acked between the marks, and start-up (imports,
connecting, declaring, the first prefetch) is outside the interval for both. As a check, and a
figure that includes the start-up tail, ``wall`` is measured from the moment a passive
``queue_declare`` on our own connection first shows a consumer until it shows no ready message
and the second mark is written. Afterwards the worker is stopped (warm) and the queue must show
0 ready messages: anything still unacked would have been returned by RabbitMQ when the worker's
channel closed, so this proves all N+2 were acked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
AMQP_QUEUE = "bench_amqp"
FRAMEWORKS = ("taskq", "celery")
LABEL = {"taskq": "django_taskq", "celery": "Celery"}


def connect(url: str) -> Any:
    """A py-amqp connection to ``url``'s default vhost (the admin/observer connection)."""
    import amqp

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    if vhost != "/":
        raise SystemExit("--amqp: only the default vhost '/' is used by this benchmark")
    conn = amqp.Connection(host=f"{parts.hostname}:{parts.port or 5672}",
                           userid=unquote(parts.username or "guest"),
                           password=unquote(parts.password or "guest"), virtual_host="/")
    conn.connect()
    return conn


class Observer:
    """Passive ``queue_declare`` on a connection of its own: ready count and consumers."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue
        self.conn = connect(url)
        self.channel = self.conn.channel()

    def counts(self) -> tuple[int, int]:
        ok = self.channel.queue_declare(self.queue, passive=True)
        return int(ok.message_count), int(ok.consumer_count)

    def delete(self) -> None:
        """The bench queue and its exchange (both named ``queue``), whatever they hold."""
        self.channel.queue_delete(self.queue)
        self.channel.exchange_delete(self.queue)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def measure(args: argparse.Namespace, workers: Any, framework: str, prefetch: int
            ) -> dict[str, Any]:
    import benchtasks
    from versus_celery import cpu_seconds, system_busy

    label, n, queue = f"{LABEL[framework]} amqp drain p={prefetch}", args.tasks, args.amqp_queue
    marks = Path(workers.logdir) / f"marks-{framework}-{prefetch}-{time.time():.0f}.txt"
    observer = Observer(args.amqp, queue)
    try:
        observer.delete()
        # the backlog, untimed, while no worker consumes
        benchtasks.mark.delay_many([()], queue=queue)
        for start in range(0, n, 1000):
            benchtasks.noop.delay_many([()] * min(1000, n - start), queue=queue)
        benchtasks.mark.delay_many([()], queue=queue)
        queued, consumers = observer.counts()
        if queued != n + 2 or consumers:
            raise SystemExit(f"{label}: {queued} of {n + 2} messages queued, "
                             f"{consumers} consumers before the worker started")
        os.environ["BENCH_MARK_FILE"] = str(marks)
        proc = workers.start_amqp(framework, prefetch)
        cpu_before, busy_before, own_before = cpu_seconds(proc.pid), system_busy(), own_cpu()
        started = time.monotonic()
        polls, seen, deadline = 0, None, time.monotonic() + max(120.0, n / 50)
        while True:
            queued, consumers = observer.counts()
            now = time.monotonic()
            polls += 1
            if seen is None and consumers:
                seen = now
            if not queued and seen is not None and marks.exists() and \
                    len(marks.read_text().split()) >= 2:
                emptied = now
                break
            if proc.poll() is not None or now > deadline:
                raise SystemExit(f"{label} stalled: {queued} ready\n" + workers.stop(proc))
            time.sleep(args.poll)
        cpu_after, busy_after, own_after = cpu_seconds(proc.pid), system_busy(), own_cpu()
        # CPU of everything else meanwhile, RabbitMQ included, as a share of one CPU
        foreign = max(0.0, (busy_after - busy_before) - (own_after - own_before)
                      - (cpu_after - cpu_before)) / max(1e-9, time.monotonic() - started)
        log = workers.stop(proc)  # warm stop: the channel closes, unacked messages come back
        time.sleep(0.2)
        left, _ = observer.counts()
        times = [float(t) for t in marks.read_text().split()]
        if left or len(times) != 2 or "Traceback" in log:
            raise SystemExit(f"{label}: {left} messages back in the queue after the worker "
                             f"stopped, {len(times)} marks\n{log}")
        elapsed = times[1] - times[0]
        return {"phase": "drain", "broker": "amqp", "framework": framework,
                "prefetch": prefetch, "tasks": n, "seconds": elapsed, "rate": n / elapsed,
                "wall_seconds": emptied - seen, "wall_rate": (n + 2) / (emptied - seen),
                "polls": polls, "worker_cpu_seconds": cpu_after - cpu_before,
                "other_cpu_share": foreign}
    finally:
        os.environ.pop("BENCH_MARK_FILE", None)
        with contextlib.suppress(Exception):
            observer.delete()
        observer.close()


def own_cpu() -> float:
    own = os.times()
    return own.user + own.system


def run(args: argparse.Namespace, workers: Any) -> list[dict[str, Any]]:
    results = []
    for round_ in range(args.repeat):
        for prefetch in args.prefetch:
            for framework in args.frameworks:
                results.append(dict(measure(args, workers, framework, prefetch), round=round_))
    return results


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"django_taskq vs Celery {m['celery']} drain on RabbitMQ {m.get('rabbitmq', '?')} "
             f"(queue {report['amqp_queue']}), N = {report['tasks']}, one solo worker process "
             f"each, {m['cpus']} CPUs; commit {(report['revision']['commit'] or '?')[:12]}",
             "",
             f"{'measurement':<24}{'django_taskq':>14}{'Celery':>11}{'ratio':>8}  target   "
             f"(wall: first consumer seen -> empty)"]
    rows = {}
    for r in report["rounds"]:
        rows.setdefault(r["prefetch"], {}).setdefault(r["framework"], []).append(r)
    for prefetch, sides in rows.items():
        ours = [r["rate"] for r in sides.get("taskq", [])]
        theirs = [r["rate"] for r in sides.get("celery", [])]
        a = statistics.median(ours) if ours else None
        b = statistics.median(theirs) if theirs else None
        ratio = a / b if a and b else None
        wall = [statistics.median(r["wall_rate"] for r in sides[f]) if sides.get(f) else None
                for f in FRAMEWORKS]
        lines.append(f"{'drain, prefetch ' + str(prefetch):<24}"
                     f"{a or 0:>14,.0f}{b or 0:>11,.0f}"
                     f"{(f'{ratio:.1f}×' if ratio else '-'):>8}  ≥ 3×"
                     f"{(' ✓' if ratio >= 3 else ' ✗') if ratio else '  '}     "
                     f"wall {wall[0] or 0:,.0f} / {wall[1] or 0:,.0f} tasks/s")
    if report["repeat"] > 1:
        lines += ["", f"medians of {report['repeat']} rounds; every round (tasks/s):"]
        for r in report["rounds"]:
            lines.append(f"  round {r['round']}  p={r['prefetch']:<4} {LABEL[r['framework']]:<13}"
                         f"{r['rate']:>8,.0f}  (wall {r['wall_rate']:,.0f}, worker CPU "
                         f"{r['worker_cpu_seconds'] / r['tasks'] * 1e6:.0f} µs/task, "
                         f"others' CPU incl. RabbitMQ "
                         f"{r['other_cpu_share']:.0%})")
    lines.append("rate = N / (time between the bench.mark tasks before and after the N no-ops)")
    return "\n".join(lines)


def rabbitmq_version(url: str) -> str:
    with contextlib.suppress(Exception):
        conn = connect(url)
        try:
            version = conn.server_properties.get("version", "?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            conn.close()
    return "?"


def check_url(parser_error: Any, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "pyamqp"):
        parser_error("--amqp must be an amqp:// URL")


def lock_name(args: argparse.Namespace) -> str:
    parts = urlsplit(args.amqp)
    return str(Path(tempfile.gettempdir())
               / f"taskq-versus-celery-amqp-{parts.port or 5672}-{args.amqp_queue}.lock")


__all__ = ["AMQP_QUEUE", "AMQP_URL", "check_url", "lock_name", "rabbitmq_version", "run",
           "table"]
