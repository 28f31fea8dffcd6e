#!/usr/bin/env python
"""The SQS broker against moto's server (an SQS emulator on loopback): enqueue and drain rates.

    .venv/bin/python bench/sqs.py [--tasks 2000] [--repeat 3] [--prefetch 4,10] [--json]

moto is not AWS: it answers in a millisecond or two on loopback, where a real SQS request
takes 5–30 ms over the network (and costs money per request). These figures measure our
overhead (batching, encoding, the round trips we make), not what SQS would give.

It starts ``python -m moto.server`` on a free loopback port (killed at the end) and measures:

* enqueue: ``noop.delay()`` one by one (one SendMessageBatch of one per task), and
  ``noop.delay_many()`` (SendMessageBatch of ten);
* drain: ``--tasks`` no-op tasks (results ignored) sent up front (untimed), then ONE in-process
  worker (solo pool) runs ``worker.run(until_empty=True)`` for each prefetch multiplier
  (ReceiveMessage takes at most ten messages, so 10 is the largest useful batch; acks are one
  DeleteMessageBatch per batch);
the median tasks/s of ``--repeat`` runs each, each run on fresh queues (a new prefix).
Results: bench/README.md, "SQS".
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for entry in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if entry not in sys.path:
        sys.path.insert(0, entry)


def start_moto() -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto server did not start (pip install 'moto[server]')") from None
            time.sleep(0.05)


def configure(port: int) -> None:
    import django
    from django.conf import settings

    for variable in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND"):
        os.environ.pop(variable, None)
    settings.configure(
        DEBUG=False, SECRET_KEY="bench", USE_TZ=True, TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_taskq"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        TASKQ={"BROKER_URL": broker_url(port), "RESULT_BACKEND": "memory://",
               "WORKER_POOL": "solo", "EVENTS_DATABASE": None, "EVENTS_CELERY": False})
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # the worker reads revocations from the database
    import benchtasks  # noqa: F401 - registers bench.noop


def broker_url(port: int) -> str:
    return (f"sqs://bench:bench@127.0.0.1:{port}?wait_time_seconds=0"
            f"&queue_name_prefix=b{uuid.uuid4().hex[:8]}-")


def fresh_queues(port: int) -> None:
    """Point TASKQ at a new queue prefix: every run starts from an empty queue."""
    from django.conf import settings

    from django_taskq.conf import reset_settings

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": broker_url(port)}
    reset_settings()


def enqueue_rates(port: int, tasks: int) -> dict[str, float]:
    import benchtasks

    fresh_queues(port)
    started = time.perf_counter()
    for _ in range(tasks):
        benchtasks.noop.delay()
    one = tasks / (time.perf_counter() - started)
    fresh_queues(port)
    started = time.perf_counter()
    for start in range(0, tasks, 1000):
        benchtasks.noop.delay_many([()] * min(1000, tasks - start))
    many = tasks / (time.perf_counter() - started)
    return {"delay() tasks/s": one, "delay_many() tasks/s": many}


def drain_rate(port: int, tasks: int, prefetch: int) -> float:
    import benchtasks

    from django_taskq.brokers import get_broker
    from django_taskq.worker import Worker, WorkerOptions

    fresh_queues(port)
    for start in range(0, tasks, 1000):
        benchtasks.noop.delay_many([()] * min(1000, tasks - start))
    worker = Worker(WorkerOptions.from_settings(queues=("default",), pool="solo",
                                                prefetch_multiplier=prefetch), monitor=False)
    started = time.perf_counter()
    worker.run(until_empty=True)
    drained = time.perf_counter() - started
    assert get_broker().size("default") == 0
    worker.heartbeat.stop()
    return tasks / drained


def raw_rates(port: int, tasks: int) -> dict[str, float]:
    """The same traffic made with boto3 alone (no django_taskq): sends in batches of ten of a
    message like ours, then ReceiveMessage (10) + DeleteMessageBatch until empty. What moto
    allows; our rates above are to be read against these."""
    import boto3

    from django_taskq.brokers.sqs_wire import to_body
    from django_taskq.message import SendOptions, build_envelope

    body = to_body(build_envelope("bench.noop", (), {}, str(uuid.uuid4()),
                                  SendOptions(queue="default")), {})
    client = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    url = client.create_queue(QueueName=f"raw{uuid.uuid4().hex[:8]}")["QueueUrl"]
    started = time.perf_counter()
    for start in range(0, tasks, 10):
        client.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": body} for i in range(min(10, tasks - start))])
    sent = tasks / (time.perf_counter() - started)
    started, done = time.perf_counter(), 0
    while done < tasks:
        messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          VisibilityTimeout=60).get("Messages", [])
        client.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        done += len(messages)
    return {"boto3 alone: send, batches of 10, msg/s": sent,
            "boto3 alone: receive 10 + delete, msg/s": tasks / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prefetch", default="4,10")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    proc, port = start_moto()
    try:
        configure(port)
        runs = [enqueue_rates(port, options.tasks) for _ in range(options.repeat)]
        report: dict[str, float] = {key: statistics.median(run[key] for run in runs)
                                    for key in runs[0]}
        for prefetch in (int(p) for p in options.prefetch.split(",")):
            report[f"drain, prefetch {prefetch}, tasks/s"] = statistics.median(
                drain_rate(port, options.tasks, prefetch) for _ in range(options.repeat))
        raw = [raw_rates(port, options.tasks) for _ in range(options.repeat)]
        report.update({key: statistics.median(run[key] for run in raw) for key in raw[0]})
    finally:
        proc.kill()
        proc.wait()
    if options.json:
        print(json.dumps(report, indent=2))
        return
    print("moto server on loopback (not AWS: a real SQS round trip is 5-30 ms)")
    for key, value in report.items():
        print(f"{key:>42}: {value:,.0f}")


if __name__ == "__main__":
    main()
