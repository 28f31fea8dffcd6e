#!/usr/bin/env python
"""The monitoring dashboard and the task results admin with a million results, on PostgreSQL.

    .venv/bin/python bench/admin_million.py                      # fill, then time every page
    .venv/bin/python bench/admin_million.py --reuse --repeat 20  # the tables filled last time
    .venv/bin/python bench/admin_million.py --results 100000 --events 10000 --json

It configures Django itself (the admin, django_taskq, the database broker and results on
database ``taskq_admin_bench``, dropped and recreated unless ``--reuse``), fills the tables with
set-based SQL (``INSERT … SELECT … FROM generate_series``: a million rows in seconds):

* ``taskq_result``: N results over 30 days, 20 task names, 8 workers, 2 % FAILURE with a
  traceback and stored arguments, a few STARTED;
* ``taskq_event``: E events over the last 24 hours (received, started, then succeeded or
  failed; every 10th task the child of the one before), ``taskq_taskminute`` counted from them,
  ``taskq_worker`` rows for the 8 workers, and a backlog of queued and delayed messages;

then ANALYZEs and times each page with Django's test client, signed in as a superuser: one
untimed warm-up, then ``--repeat`` requests; the median and slowest wall time per page, the
number of SQL queries one request makes and the slowest of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_DATABASE = "taskq_admin_bench"
NAMES, WORKERS = 20, 8
DASHBOARD = "/admin/django_taskq/workerstate/"
RESULTS = "/admin/django_taskq/taskresult/"

RESULT_SQL = """
INSERT INTO taskq_result (task_id, task_name, state, result, content_type, content_encoding,
    traceback, worker, retries, date_created, date_started, date_done, task_args, task_kwargs,
    queue)
SELECT md5(i::text)::uuid::text, 'shop.tasks.t' || (i % {names}),
    CASE WHEN i % 50 = 0 THEN 'FAILURE' WHEN i % 5000 = 1 THEN 'STARTED' ELSE 'SUCCESS' END,
    CASE WHEN i % 50 = 0 THEN '{{"exc_type": "ValueError", "exc_message": ["boom"]}}' ELSE '42' END,
    'application/json', 'utf-8',
    CASE WHEN i % 50 = 0 THEN E'Traceback (most recent call last):\\n  ...\\nValueError: boom' END,
    'worker' || (i % {workers}) || '@bench', 0, t, t, t + interval '20 milliseconds',
    '[' || i || ', 2]', '{{}}', 'default'
FROM generate_series(1, {n}) AS i, LATERAL (SELECT now() - i * interval '1 second' * {step}) AS d(t)
"""

# Three events per task: received (with parent_id/root_id), started, then succeeded or failed.
EVENT_SQL = """
INSERT INTO taskq_event (type, task_id, task_name, hostname, timestamp, fields)
SELECT e.type, md5(i::text)::uuid::text, 'shop.tasks.t' || (i % {names}),
    'worker' || (i % {workers}) || '@bench', t + e.k * interval '5 milliseconds',
    jsonb_build_object('uuid', md5(i::text)::uuid::text, 'name', 'shop.tasks.t' || (i % {names}),
        'hostname', 'worker' || (i % {workers}) || '@bench', 'timestamp', extract(epoch FROM t),
        'parent_id', CASE WHEN i % 10 = 0 THEN md5((i + 1)::text)::uuid::text END,
        'root_id', md5(i::text)::uuid::text, 'runtime', 0.02)
FROM generate_series(1, {tasks}) AS i,
    LATERAL (SELECT now() - i * interval '1 second' * {step}) AS d(t),
    LATERAL (VALUES (0, 'task-received'), (1, 'task-started'),
                    (2, CASE WHEN i % 50 = 0 THEN 'task-failed' ELSE 'task-succeeded' END))
        AS e(k, type)
"""

MINUTE_SQL = """
INSERT INTO taskq_taskminute (minute, task_name, received, started, succeeded, failed, retried,
    rejected, revoked, runtime_sum)
SELECT date_trunc('minute', timestamp), task_name,
    count(*) FILTER (WHERE type = 'task-received'), count(*) FILTER (WHERE type = 'task-started'),
    count(*) FILTER (WHERE type = 'task-succeeded'), count(*) FILTER (WHERE type = 'task-failed'),
    0, 0, 0, 0.02 * count(*) FILTER (WHERE type IN ('task-succeeded', 'task-failed'))
FROM taskq_event GROUP BY 1, 2
"""

COUNTER_SQL = """
INSERT INTO taskq_taskcounter (task_name, key, value)
SELECT task_name, 'state:' || state, count(*) FROM taskq_result GROUP BY 1, 2
"""

WORKER_SQL = """
INSERT INTO taskq_worker (hostname, pid, pool, concurrency, queues, sw_ident, sw_ver,
    started_at, last_heartbeat, freq, active, processed, loadavg)
SELECT 'worker' || w || '@bench', 1000 + w, 'prefork', 8, '["default", "mail"]', 'django-taskq',
    'bench', now() - interval '1 day', now(), 3600, w % 3, 100000 + w, '[0.5, 0.4, 0.3]'
FROM generate_series(0, {workers} - 1) AS w
"""

MESSAGE_SQL = """
INSERT INTO taskq_message (queue, message_id, task_name, priority, headers, properties, body,
    content_type, content_encoding, attempts, created_at, state, available_at, locked_by)
SELECT CASE WHEN i % 4 = 0 THEN 'mail' ELSE 'default' END, 'queued-' || i, 'shop.tasks.t1', 0,
    '{{}}', '{{}}', '\\x5b5d'::bytea, 'application/json', 'utf-8', 0, now(), 'ready',
    now() + CASE WHEN i % 10 = 0 THEN interval '1 hour' ELSE interval '0' END, ''
FROM generate_series(1, {n}) AS i
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000, help="about this many events")
    parser.add_argument("--queued", type=int, default=20_000, help="messages waiting")
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per page")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the tables of the last run (no drop, no fill)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--pg-host", default=os.environ.get("TASKQ_BENCH_PG_HOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int,
                        default=int(os.environ.get("TASKQ_BENCH_PG_PORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("TASKQ_BENCH_PG_USER", "postgres"))
    parser.add_argument("--pg-password", default=os.environ.get("TASKQ_BENCH_PG_PASSWORD", ""))
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> None:
    """A fresh ``taskq_admin_bench`` (unless --reuse), settings.configure(), migrate."""
    import django
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    if not args.reuse:
        with psycopg.connect(host=args.pg_host, port=args.pg_port, user=args.pg_user,
                             password=args.pg_password or None, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    settings.configure(
        DEBUG=False, SECRET_KEY="taskq-bench", USE_TZ=True, TIME_ZONE="UTC",
        ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth",
                        "django.contrib.contenttypes", "django.contrib.sessions",
                        "django.contrib.messages", "django_taskq"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware",
                    "django.contrib.messages.middleware.MessageMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True, "OPTIONS": {"context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages"]}}],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql",
                               "HOST": args.pg_host, "PORT": args.pg_port,
                               "USER": args.pg_user, "PASSWORD": args.pg_password,
                               "NAME": PG_DATABASE, "CONN_MAX_AGE": None}},
        TASKQ={"BROKER_URL": "db://default", "RESULT_BACKEND": "db://default",
               "EVENTS_DATABASE": "default"},
    )
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def _urls() -> list[Any]:
    from django.contrib import admin
    from django.urls import path

    return [path("admin/", admin.site.urls)]


def __getattr__(name: str) -> Any:  # ROOT_URLCONF is this module: urlpatterns on first use
    if name == "urlpatterns":
        return _urls()
    raise AttributeError(name)


def fill(args: argparse.Namespace) -> dict[str, float]:
    """Fill every table with set-based SQL; seconds each step took."""
    from django.db import connection

    tasks = max(args.events // 3, 1)
    steps = {
        "results": RESULT_SQL.format(names=NAMES, workers=WORKERS, n=args.results,
                                     step=30 * 86400 / args.results),
        "events": EVENT_SQL.format(names=NAMES, workers=WORKERS, tasks=tasks,
                                   step=86400 / tasks),
        "minutes": MINUTE_SQL, "counters": COUNTER_SQL,
        "workers": WORKER_SQL.format(workers=WORKERS),
        "messages": MESSAGE_SQL.format(n=args.queued),
        "analyze": "ANALYZE",
    }
    took = {}
    with connection.cursor() as cursor:
        for name, sql in steps.items():
            start = time.perf_counter()
            cursor.execute(sql)
            took[name] = time.perf_counter() - start
    return took


def pages() -> dict[str, str]:
    """What is timed: page name → URL."""
    from django_taskq.models import TaskResult

    failed = TaskResult.objects.filter(state="FAILURE").order_by("-date_done").first()
    assert failed is not None, "no FAILURE row: was the table filled?"
    recent = TaskResult.objects.order_by("-date_created").values_list("task_id", flat=True)[5]
    return {
        "dashboard, 1 h": DASHBOARD, "dashboard, 24 h": f"{DASHBOARD}?hours=24",
        "results, first page": RESULTS, "results, page 50": f"{RESULTS}?p=49",
        "results, state=FAILURE": f"{RESULTS}?state=FAILURE",
        "results, task name": f"{RESULTS}?task_name=shop.tasks.t7",
        "results, worker + last hour": f"{RESULTS}?worker=worker3%40bench&created=1h",
        "results, older than 7 days": f"{RESULTS}?created=older",
        "results, search id prefix": f"{RESULTS}?q={recent[:8]}",
        "results, search name part": f"{RESULTS}?q=t13",
        "results, search worker part": f"{RESULTS}?q=worker5",
        "result detail": f"{RESULTS}{failed.pk}/change/",
        "task story": f"{DASHBOARD}task/{recent}/",
    }


def measure(url: str, client: Any, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up, untimed
    assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
    return {"url": url, "median_ms": statistics.median(times), "max_ms": max(times),
            "queries": len(queries.captured_queries),
            "slowest_query_ms": float(slowest["time"]) * 1000,
            "slowest_query": slowest["sql"][:160]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    took = {} if args.reuse else fill(args)
    user = User.objects.filter(username="bench").first() or \
        User.objects.create_superuser("bench", password="bench")
    client = Client()
    client.force_login(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM taskq_result")
        rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM taskq_event")
        events = cursor.fetchone()[0]
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    report = {"results": rows, "events": events, "postgres": version, "repeat": args.repeat,
              "fill_seconds": took,
              "pages": {name: measure(url, client, args.repeat) for name, url in pages().items()}}
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


def table(report: dict[str, Any]) -> str:
    lines = [f"{report['results']:,} results, {report['events']:,} events, PostgreSQL "
             f"{report['postgres']}, {report['repeat']} requests per page",
             *(f"fill {name}: {seconds:.1f} s" for name, seconds in report["fill_seconds"].items()),
             "", "| page | median ms | max ms | queries | slowest query ms |", "|---|---|---|---|---|"]
    for name, page in report["pages"].items():
        lines.append(f"| {name} | {page['median_ms']:.1f} | {page['max_ms']:.1f} | "
                     f"{page['queries']} | {page['slowest_query_ms']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
