#!/usr/bin/env python
"""Throughput benchmark for the database broker: enqueue rate, and drain rate of one solo worker.

    .venv/bin/python bench/drain.py --db sqlite
    .venv/bin/python bench/drain.py --db postgres --tasks 10000 --prefetch 4,100
    .venv/bin/python bench/drain.py --db postgres --json --out bench/results-postgres-1.json

It configures Django itself (no project needed), migrates a fresh database (SQLite: a file in a
temporary directory; PostgreSQL: database ``taskq_bench``, dropped and recreated), then measures:

* enqueue: ``noop.delay()`` in a loop (one transaction per task), and ``noop.delay_many()``
  (one transaction, multi-row INSERTs of 500) — also for a task whose results are stored, where
  each enqueue also writes the PENDING result row;
* drain: N no-op tasks enqueued up front (untimed), then ONE in-process worker with the solo
  pool (one execution slot) runs ``worker.run(until_empty=True)`` for each prefetch multiplier
  (the size of each batch claim). Two rates are reported:
  ``to last ack`` = N / (time from run() start until the last batch was settled), and
  ``run() wall`` = N / (time until run() returned), which also includes the worker's final
  empty-queue poll and shutdown.

Every phase starts from empty tables (PostgreSQL: TRUNCATE; SQLite: DELETE). Nothing in
django_taskq is patched: the benchmark only wraps the worker's settler and the broker's reserve
(to time the last ack and count batches) and the default connection's execute hook and commit
(to count statements and the time spent in them). ``--breakdown`` lists that time per statement
kind; ``--profile`` runs every timed phase under cProfile (much slower; read it for proportions).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for entry in (str(ROOT), str(BENCH_DIR)):  # django_taskq (not installed) and benchtasks
    if entry not in sys.path:
        sys.path.insert(0, entry)

PG_DATABASE = "taskq_bench"
TABLES = ("taskq_message", "taskq_result", "taskq_deadletter")


# -- setup --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--tasks", type=int, default=10000,
                        help="tasks per measurement (default 10000)")
    parser.add_argument("--loop-tasks", type=int, default=None,
                        help="tasks for the one-by-one delay() loop (default: --tasks)")
    parser.add_argument("--prefetch", default="4,100",
                        help="comma-separated prefetch multipliers to drain with (default 4,100)")
    parser.add_argument("--conn-max-age", default="0",
                        help="Django CONN_MAX_AGE for the database: seconds, or 'none' for "
                             "persistent connections (default 0, Django's default)")
    parser.add_argument("--skip-enqueue", action="store_true", help="only measure the drains")
    parser.add_argument("--skip-store", action="store_true",
                        help="skip the results-stored variants")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="PostgreSQL: ANALYZE the tables after the untimed enqueue that "
                             "precedes each drain, as autovacuum would on a long-lived table "
                             "(default on)")
    parser.add_argument("--profile", action="store_true",
                        help="run each timed phase under cProfile and print the top functions "
                             "to stderr (the rates printed are then profiled rates)")
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument("--breakdown", action="store_true",
                        help="list each statement kind under its row: count, ms each, total")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--out", help="also write the JSON to this file")
    parser.add_argument("--pg-host", default=os.environ.get("TASKQ_BENCH_PG_HOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int,
                        default=int(os.environ.get("TASKQ_BENCH_PG_PORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("TASKQ_BENCH_PG_USER", "postgres"))
    parser.add_argument("--pg-password", default=os.environ.get("TASKQ_BENCH_PG_PASSWORD", ""))
    args = parser.parse_args(argv)
    args.prefetch = [int(p) for p in args.prefetch.split(",") if p.strip()]
    args.conn_max_age = None if args.conn_max_age.lower() == "none" else int(args.conn_max_age)
    if args.loop_tasks is None:
        args.loop_tasks = args.tasks
    return args


def recreate_pg_database(args: argparse.Namespace) -> None:
    """DROP and CREATE ``taskq_bench`` from the maintenance database."""
    import psycopg

    with psycopg.connect(host=args.pg_host, port=args.pg_port, user=args.pg_user,
                         password=args.pg_password or None, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')


def configure(args: argparse.Namespace, workdir: str) -> None:
    """settings.configure() for the chosen database, django.setup(), migrate."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    if args.db == "sqlite":
        database: dict[str, Any] = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(workdir, "taskq_bench.sqlite3"),
            "OPTIONS": {"timeout": 20},
        }
    else:
        recreate_pg_database(args)
        database = {
            "ENGINE": "django.db.backends.postgresql", "HOST": args.pg_host,
            "PORT": args.pg_port, "USER": args.pg_user, "PASSWORD": args.pg_password,
            "NAME": PG_DATABASE,
        }
    database["CONN_MAX_AGE"] = args.conn_max_age
    settings.configure(
        DEBUG=False,
        SECRET_KEY="taskq-bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django_taskq"],
        DATABASES={"default": database},
        TASKQ={"BROKER_URL": "db://default", "RESULT_BACKEND": "db://default",
               "WORKER_POOL": "solo", "EVENTS_DATABASE": None},  # events: events_overhead.py
    )
    django.setup()
    import benchtasks  # noqa: F401 - registers bench.noop and bench.store

    call_command("migrate", verbosity=0, interactive=False)
    if args.db == "sqlite":
        # The broker switches the file to WAL on its first reserve (DatabaseBroker._prepare) and
        # the mode sticks to the file; do it now so enqueues are measured in the steady state.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")


def reset_tables(args: argparse.Namespace) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if args.db == "postgres":
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        else:
            for table in TABLES:
                cursor.execute(f"DELETE FROM {table}")


def analyze(args: argparse.Namespace) -> None:
    if args.db != "postgres" or not args.analyze:
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(TABLES)}")


def count(table: str, where: str = "") -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table} {where}")
        return int(cursor.fetchone()[0])


def machine(args: argparse.Namespace) -> dict[str, Any]:
    import django
    from django.db import connection

    cpu, memory = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    with connection.cursor() as cursor:
        if args.db == "postgres":
            cursor.execute("SHOW server_version")
            server = "PostgreSQL " + cursor.fetchone()[0]
            cursor.execute("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', "
                           "'synchronous_commit', 'autovacuum', 'shared_buffers', "
                           "'wal_sync_method') ORDER BY name")
        else:
            cursor.execute("SELECT sqlite_version()")
            server = "SQLite " + cursor.fetchone()[0]
            cursor.execute("SELECT 'journal_mode', journal_mode FROM pragma_journal_mode "
                           "UNION ALL SELECT 'synchronous', synchronous FROM pragma_synchronous")
        server_settings = {name: str(value) for name, value in cursor.fetchall()}
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": cpu, "memory": memory,
            "platform": platform.platform(), "python": platform.python_version(),
            "django": django.get_version(), "database": server,
            "database_settings": server_settings}


def revision() -> dict[str, Any]:
    """The commit being measured, and whether django_taskq/ differs from it."""
    import subprocess

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "django_taskq_modified": bool(git("status", "--porcelain", "--", "django_taskq"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "django_taskq_modified": None}


# -- instrumentation ----------------------------------------------------------------------------


def statement_kind(sql: str) -> str:
    """``UPDATE taskq_message`` etc.: the verb and the first table the statement names."""
    words = sql.replace('"', "").split()
    verb = words[0].upper() if words else "?"
    table = next((w for w in words if w.startswith("taskq_")), "")
    if verb == "SELECT" and "COUNT(" in sql.upper():
        verb = "SELECT COUNT"
    return f"{verb} {table}".strip()


class Counters:
    """Queries, commits, new connections and the time spent in them, on the default alias.

    Time is measured around ``cursor.execute`` (with client-side parameter binding that includes
    psycopg building the SQL text) and around the COMMIT of atomic blocks. It excludes opening
    connections and fetching rows (SQLite finishes, and so commits, an autocommit
    ``UPDATE … RETURNING`` only when its rows are fetched).
    """

    def __init__(self) -> None:
        self.queries = 0
        self.connects = 0
        self.seconds = 0.0
        self.kinds: dict[str, list[float]] = {}  # statement kind -> [count, seconds]

    def _execute(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.queries += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self._record(statement_kind(sql), time.perf_counter() - started)

    def _connected(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias == "default":
            self.connects += 1

    def _record(self, kind: str, took: float) -> None:
        self.seconds += took
        entry = self.kinds.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += took

    @contextlib.contextmanager
    def watch(self) -> Any:
        from django.db import connections
        from django.db.backends.signals import connection_created

        connection = connections["default"]
        commit = connection._commit

        def timed_commit() -> Any:  # the COMMIT that ends an atomic block
            started = time.perf_counter()
            try:
                return commit()
            finally:
                self._record("COMMIT", time.perf_counter() - started)

        connection_created.connect(self._connected, weak=False)
        connection._commit = timed_commit
        try:
            with connection.execute_wrapper(self._execute):
                yield self
        finally:
            del connection._commit
            connection_created.disconnect(self._connected)


# -- measurements -------------------------------------------------------------------------------


@contextlib.contextmanager
def profiled(args: argparse.Namespace, title: str) -> Any:
    """Run the block under cProfile when --profile is given; print the top functions."""
    if not args.profile:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(args.profile_lines)
        stats.sort_stats("cumulative").print_stats(args.profile_lines)
        print(f"\n===== profile: {title} db={args.db} =====", file=sys.stderr)
        print(out.getvalue(), file=sys.stderr)


def kinds(counters: Counters) -> dict[str, dict[str, float]]:
    return {kind: {"count": int(n), "seconds": secs, "ms_each": secs / n * 1000}
            for kind, (n, secs) in sorted(counters.kinds.items())}


def measure_enqueue(args: argparse.Namespace, task: Any, label: str) -> list[dict[str, Any]]:
    rows = []
    reset_tables(args)
    n = args.loop_tasks
    with Counters().watch() as counters:
        with profiled(args, f"enqueue delay() loop {label}"):
            started = time.perf_counter()
            for _ in range(n):
                task.delay()
            elapsed = time.perf_counter() - started
    assert count("taskq_message") == n, "loop enqueue lost messages"
    rows.append({"phase": "enqueue", "method": "delay() loop", "task": label, "tasks": n,
                 "seconds": elapsed, "rate": n / elapsed, "queries": counters.queries,
                 "connects": counters.connects, "db_seconds": counters.seconds,
                 "statements": kinds(counters)})

    reset_tables(args)
    n = args.tasks
    calls = [()] * n
    with Counters().watch() as counters:
        with profiled(args, f"enqueue delay_many() {label}"):
            started = time.perf_counter()
            task.delay_many(calls)
            elapsed = time.perf_counter() - started
    assert count("taskq_message") == n, "bulk enqueue lost messages"
    rows.append({"phase": "enqueue", "method": "delay_many()", "task": label, "tasks": n,
                 "seconds": elapsed, "rate": n / elapsed, "queries": counters.queries,
                 "connects": counters.connects, "db_seconds": counters.seconds,
                 "statements": kinds(counters)})
    return rows


def measure_drain(args: argparse.Namespace, task: Any, label: str, prefetch: int,
                  stores: bool) -> dict[str, Any]:
    from django_taskq.brokers import get_broker
    from django_taskq.worker.worker import Worker, WorkerOptions

    reset_tables(args)
    n = args.tasks
    task.delay_many([()] * n)  # untimed
    analyze(args)

    options = WorkerOptions.from_settings(pool="solo", prefetch_multiplier=prefetch,
                                          queues=("default",))
    worker = Worker(options)

    flushes: list[tuple[float, int]] = []
    settle = worker.settler.flush

    def timed_flush() -> None:
        pending = len(worker.settler)
        settle()
        if pending:
            flushes.append((time.perf_counter(), pending))

    worker.settler.flush = timed_flush  # type: ignore[method-assign]

    broker = get_broker()
    claims: list[int] = []
    reserve = broker.reserve

    def counted_reserve(*a: Any, **kw: Any) -> Any:
        deliveries = reserve(*a, **kw)
        claims.append(len(deliveries))
        return deliveries

    broker.reserve = counted_reserve  # type: ignore[method-assign]
    try:
        with Counters().watch() as counters, \
                profiled(args, f"drain {label} prefetch={prefetch}"):
            started = time.perf_counter()
            worker.run(until_empty=True)
            finished = time.perf_counter()
    finally:
        del broker.reserve  # back to the class's method

    left = count("taskq_message")
    succeeded = count("taskq_result", "WHERE state = 'SUCCESS'") if stores else None
    problems = []
    if worker.processed != n:
        problems.append(f"processed {worker.processed} of {n}")
    if left:
        problems.append(f"{left} messages left in taskq_message")
    if stores and succeeded != n:
        problems.append(f"{succeeded} SUCCESS results of {n}")
    if problems:
        raise SystemExit(f"drain {label} prefetch={prefetch}: " + "; ".join(problems))

    last_ack = flushes[-1][0] if flushes else finished
    result = {
        "phase": "drain", "task": label, "prefetch": prefetch, "tasks": n,
        "seconds_to_last_ack": last_ack - started, "rate_to_last_ack": n / (last_ack - started),
        "seconds_wall": finished - started, "rate_wall": n / (finished - started),
        "claims_nonempty": sum(1 for c in claims if c), "claims_empty": sum(1 for c in claims
                                                                            if not c),
        "median_claim": statistics.median([c for c in claims if c]) if any(claims) else 0,
        "settles": len(flushes),
        "median_settle": statistics.median([p for _, p in flushes]) if flushes else 0,
        "queries": counters.queries, "connects": counters.connects,
        "db_seconds": counters.seconds, "statements": kinds(counters),
    }
    return result


# -- output -------------------------------------------------------------------------------------


def table(report: dict[str, Any], breakdown: bool = False) -> str:
    dirty = " + uncommitted django_taskq changes" if report["revision"]["django_taskq_modified"] \
        else ""
    lines = [f"django_taskq throughput: {report['db']} ({report['machine']['database']}), "
             f"{report['machine']['cpus']} CPUs, CONN_MAX_AGE={report['conn_max_age']}",
             f"commit {(report['revision']['commit'] or '?')[:12]}{dirty}",
             "database settings: " + ", ".join(
                 f"{k}={v}" for k, v in report["machine"]["database_settings"].items()), ""]

    def statements(row: dict[str, Any]) -> None:
        if breakdown:
            for kind, s in row["statements"].items():
                lines.append(f"{'':<16}{kind:<32}{s['count']:>7} x {s['ms_each']:>7.2f} ms"
                             f" = {s['seconds']:>6.3f} s")

    enqueue = [r for r in report["results"] if r["phase"] == "enqueue"]
    if enqueue:
        lines.append(f"{'enqueue':<16}{'task':<18}{'tasks':>7}{'seconds':>9}{'tasks/s':>9}"
                     f"{'queries':>9}{'in DB':>7}")
        for r in enqueue:
            lines.append(f"{r['method']:<16}{r['task']:<18}{r['tasks']:>7}{r['seconds']:>9.2f}"
                         f"{r['rate']:>9.0f}{r['queries']:>9}"
                         f"{r['db_seconds'] / r['seconds']:>7.0%}")
            statements(r)
        lines.append("")
    drains = [r for r in report["results"] if r["phase"] == "drain"]
    if drains:
        lines.append(f"{'drain (solo)':<16}{'task':<18}{'prefetch':>8}{'tasks':>7}"
                     f"{'to last ack/s':>15}{'run() wall/s':>14}{'claims':>8}{'settles':>9}"
                     f"{'queries':>9}{'connects':>9}{'in DB':>7}")
        for r in drains:
            lines.append(f"{'':<16}{r['task']:<18}{r['prefetch']:>8}{r['tasks']:>7}"
                         f"{r['rate_to_last_ack']:>15.0f}{r['rate_wall']:>14.0f}"
                         f"{r['claims_nonempty']:>8}{r['settles']:>9}{r['queries']:>9}"
                         f"{r['connects']:>9}{r['db_seconds'] / r['seconds_wall']:>7.0%}")
            statements(r)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for variable in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND"):  # they would override TASKQ
        if os.environ.pop(variable, None):
            print(f"note: ignoring {variable} from the environment", file=sys.stderr)
    code_revision = revision()  # before the run: the code that was imported
    load_before = os.getloadavg()
    workdir = tempfile.mkdtemp(prefix="taskq-bench-")
    try:
        configure(args, workdir)
        import benchtasks

        tasks = [(benchtasks.noop, "noop (ignored)", False)]
        if not args.skip_store:
            tasks.append((benchtasks.store, "store (results)", True))
        results: list[dict[str, Any]] = []
        if not args.skip_enqueue:
            for task, label, _ in tasks:
                results += measure_enqueue(args, task, label)
        for task, label, stores in tasks:
            for prefetch in args.prefetch:
                results.append(measure_drain(args, task, label, prefetch, stores))
        report = {"db": args.db, "tasks": args.tasks, "conn_max_age": args.conn_max_age,
                  "pool": "solo", "concurrency": 1, "revision": code_revision,
                  "machine": machine(args),
                  "load_average_before": load_before, "load_average_after": os.getloadavg(),
                  "argv": sys.argv[1:], "results": results}
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text if args.json else table(report, breakdown=args.breakdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
