#!/usr/bin/env python
"""What message signing costs: sealing (sign) and verifying one message, and a drain with it on.

    .venv/bin/python bench/signing.py [--messages 20000] [--tasks 10000] [--repeat 3]
                                      [--redis redis://127.0.0.1:6379/15] [--no-drain] [--json]

Per message (µs, the best of ``--repeat`` rounds of ``--messages`` each, one process):

- ``seal off``: ``producer.seal_all`` with SIGNING_KEYS unset (the MESSAGE_MAX_BYTES check only);
- ``seal on``: ``producer.seal_all`` with SIGNING_KEYS set (the check, then ``signing.sign``);
- ``verify``: ``signing.verify`` of a sealed message, as the worker calls it before decoding;

each for a small body (``add(2, 3)``, about 80 bytes) and a 10 KB one (a 10,000-character
argument). Then, unless ``--no-drain``: ``--tasks`` no-op tasks (results ignored) sent with
``delay_many`` and drained by one in-process worker (solo pool, prefetch 4) on Redis (the
database is flushed before each run), signing off and on alternately; the median tasks/s of
``--repeat`` runs each. Results: bench/README.md, "Message signing".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for entry in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

KEYS = (b"bench-signing-key-0123456789abcdef", b"bench-old-key-0123456789abcdef-xyz")


def configure(redis_url: str) -> None:
    import django
    from django.conf import settings

    for variable in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND"):
        os.environ.pop(variable, None)
    settings.configure(
        DEBUG=False, SECRET_KEY="bench", USE_TZ=True, TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_taskq"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        TASKQ={"BROKER_URL": redis_url, "RESULT_BACKEND": redis_url, "WORKER_POOL": "solo",
               "EVENTS_DATABASE": None, "EVENTS_CELERY": False})
    django.setup()
    import benchtasks  # noqa: F401 - registers bench.noop


def set_keys(keys: tuple[bytes, ...]) -> None:
    from django.conf import settings

    from django_taskq.conf import reset_settings

    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": list(keys)}
    reset_settings()


def per_message(messages: int, repeat: int) -> dict[str, dict[str, float]]:
    """µs per message of seal (off, on) and verify, for a small and a 10 KB body."""
    from django_taskq import producer, signing
    from django_taskq.message import SendOptions, build_envelope

    bodies = {"small": (2, 3), "10 KB": ("x" * 10_000,)}
    figures: dict[str, dict[str, float]] = {}
    for label, args in bodies.items():
        batch = [build_envelope("bench.noop", args, {}, f"id-{i}", SendOptions(queue="default"))
                 for i in range(messages)]
        row: dict[str, float] = {"body bytes": float(len(batch[0].body))}
        set_keys(())
        row["seal off"] = best(lambda batch=batch: producer.seal_all(batch), messages, repeat)
        set_keys(KEYS)
        row["seal on"] = best(lambda batch=batch: producer.seal_all(batch), messages, repeat)
        sealed = producer.seal_all(batch)
        now = time.time()

        def verify_all(sealed=sealed, now=now) -> None:
            for envelope in sealed:
                signing.verify(envelope, KEYS, 86400.0, now)

        row["verify"] = best(verify_all, messages, repeat)
        figures[label] = row
    set_keys(())
    return figures


def best(action, messages: int, repeat: int) -> float:
    """µs per message: the fastest of ``repeat`` timed calls of ``action``."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings) / messages * 1e6


def drain_once(redis_url: str, tasks: int, keys: tuple[bytes, ...]) -> dict[str, float]:
    import redis

    from django_taskq.brokers import get_broker
    from django_taskq.worker import Worker, WorkerOptions

    redis.Redis.from_url(redis_url).flushdb()
    set_keys(keys)
    import benchtasks

    started = time.perf_counter()
    for start in range(0, tasks, 1000):
        benchtasks.noop.delay_many([()] * min(1000, tasks - start))
    sent = time.perf_counter() - started
    worker = Worker(WorkerOptions.from_settings(queues=("default",), pool="solo",
                                                prefetch_multiplier=4), monitor=False)
    started = time.perf_counter()
    worker.run(until_empty=True)
    drained = time.perf_counter() - started
    assert get_broker().size("default") == 0
    worker.heartbeat.stop()
    return {"publish tasks/s": tasks / sent, "drain tasks/s": tasks / drained}


def drains(redis_url: str, tasks: int, repeat: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(repeat):  # alternating, so drift hits both alike
        runs["off"].append(drain_once(redis_url, tasks, ()))
        runs["on"].append(drain_once(redis_url, tasks, KEYS))
    set_keys(())
    return {mode: {key: statistics.median(run[key] for run in done) for key in done[0]}
            for mode, done in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--no-drain", action="store_true")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    configure(options.redis)
    report: dict[str, object] = {"per message (µs)": per_message(options.messages,
                                                                  options.repeat)}
    if not options.no_drain:
        report["drain on Redis"] = drains(options.redis, options.tasks, options.repeat)
    if options.json:
        print(json.dumps(report, indent=2))
        return
    for label, row in report["per message (µs)"].items():  # type: ignore[attr-defined]
        print(f"{label:>6} body ({row['body bytes']:.0f} B): seal off {row['seal off']:.2f} µs,"
              f" seal on {row['seal on']:.2f} µs, verify {row['verify']:.2f} µs")
    for mode, row in (report.get("drain on Redis") or {}).items():  # type: ignore[attr-defined]
        print(f"signing {mode:>3}: publish {row['publish tasks/s']:,.0f} tasks/s, "
              f"drain {row['drain tasks/s']:,.0f} tasks/s")


if __name__ == "__main__":
    main()
