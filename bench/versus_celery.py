#!/usr/bin/env python
"""django_taskq against Celery 5 on the same Redis, side by side, in one invocation.

    .venv/bin/python bench/versus_celery.py
    .venv/bin/python bench/versus_celery.py --tasks 10000 --prefetch 4,100 --roundtrips 1000
    .venv/bin/python bench/versus_celery.py --json --out bench/results-versus-celery-1.json
    .venv/bin/python bench/versus_celery.py --repeat 3 --at-commit HEAD  # medians; HEAD's code
    .venv/bin/python bench/versus_celery.py --profile /tmp/vs-prof   # profiles django_taskq

Both frameworks use Redis database 13 on 127.0.0.1 (``--redis``; FLUSHDB before every phase, so
never point it at a database holding anything else) as broker and result backend, Celery protocol
v2 messages in kombu's JSON list layout, queue ``default``, and ONE worker process with ONE
execution slot started as a subprocess:

* django_taskq: ``bench/taskq_bench_worker.py`` = ``manage.py taskworker -P solo -c 1
  -Q default --prefetch-multiplier P`` (the real management command, settings.configure()).
* Celery: ``celery -A celery_bench_app worker --pool solo -c 1 -Q default
  --prefetch-multiplier P --without-gossip --without-mingle --without-heartbeat``.

Phases (each figure for both, and the ratio django_taskq / Celery):

1. publish: ``noop.delay()`` in a loop (results ignored), and django_taskq's bulk
   ``noop.delay_many([()] * N)``; Celery has no bulk API, so bulk is compared with its loop.
   No worker runs. The loop's messages are kept as each framework's drain backlog.
2. drain: the N messages are loaded into a side list, the worker is started and waits idle
   (blocked in BRPOP/BLPOP, seen in CLIENT LIST), then one MULTI renames the side list onto
   ``default`` (for django_taskq it also pushes wake tokens to ``taskq:wake:default``, which is
   what its producer does). Time from that MULTI until the list is empty and nothing is in
   flight (Celery: kombu's ``unacked`` hash empty; django_taskq: ``taskq:inflight`` empty),
   polled every ``--poll`` seconds. Once per prefetch multiplier in ``--prefetch``.
3. round trip: ``store.delay().get()`` with results stored in Redis, sequentially, after a
   warm-up, one after the other (``--gap`` adds a sleep before each). The worker has nothing else
   to do, so each call finds it parked in its blocking pop. p50, p99, mean.

Also recorded: worker and Redis CPU per task, Redis commands per task (INFO commandstats), and
the CPU other processes used meanwhile (a shared machine makes these figures noisy; use
``--repeat`` and compare medians). Worker subprocesses are killed on any exit; a lock file keeps
two copies off the same database. Results: bench/README.md, "Versus Celery on Redis".

``--broker amqp`` runs only the drain phase, on RabbitMQ (``--amqp``, dedicated queue
``--amqp-queue bench_amqp``): see bench/versus_celery_amqp.py and bench/README.md, "Versus Celery
on RabbitMQ".
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for entry in (str(ROOT), str(BENCH_DIR)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from versus_celery_amqp import (  # noqa: E402 - after the path set-up
    AMQP_QUEUE,
    AMQP_URL,
    check_url,
)

REDIS_URL = "redis://127.0.0.1:6379/13"
QUEUE = "default"
BACKLOG = "bench:backlog"
SEP = "\x06\x16"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
FRAMEWORKS = ("taskq", "celery")
LABEL = {"taskq": "django_taskq", "celery": "Celery"}
#: What "in flight" means for each: claimed or delivered, not yet acked.
INFLIGHT_KEY = {"taskq": "taskq:inflight", "celery": "unacked"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- setup --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", "-n", type=int, default=10000,
                        help="tasks per drain and per publish measurement (default 10000)")
    parser.add_argument("--prefetch", default="4,100",
                        help="comma-separated prefetch multipliers to drain with (default 4,100)")
    parser.add_argument("--roundtrips", type=int, default=1000,
                        help="timed delay().get() calls (default 1000)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="untimed calls before each publish loop and round-trip series")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds to sleep before each round trip (default 0: back to back; "
                             "the worker is parked in its blocking pop by the time the next call "
                             "arrives either way, see redis_commands_per_call in the JSON)")
    parser.add_argument("--poll", type=float, default=0.002,
                        help="seconds between drain-completion polls (default 0.002)")
    add_repeat_argument(parser, 1)
    parser.add_argument("--phases", default="publish,drain,roundtrip",
                        help="comma-separated subset of publish,drain,roundtrip")
    add_redis_arguments(parser, REDIS_URL, "phase")
    parser.add_argument("--profile", metavar="DIR",
                        help="profile django_taskq: its worker during each drain and round-trip "
                             "phase, and the client during the publish and round-trip phases; "
                             "writes .prof (cProfile) and .txt summaries to DIR. Rates are then "
                             "profiled rates.")
    parser.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile",
                        help="for the worker under --profile (the client always uses cProfile)")
    parser.add_argument("--profile-lines", type=int, default=40)
    parser.add_argument("--broker", choices=("redis", "amqp"), default="redis",
                        help="redis (default): every phase on --redis; amqp: only the drain, on "
                             "RabbitMQ at --amqp, queue --amqp-queue (bench/versus_celery_amqp.py)")
    parser.add_argument("--amqp", default=AMQP_URL,
                        help=f"RabbitMQ URL, default vhost only (default {AMQP_URL})")
    parser.add_argument("--amqp-queue", default=AMQP_QUEUE,
                        help=f"the dedicated queue, deleted before and after each drain "
                             f"(default {AMQP_QUEUE})")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.taskq_worker = str(Path(args.taskq_worker).resolve())  # the worker runs in bench/
    args.prefetch = [int(p) for p in args.prefetch.split(",") if p.strip()]
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = (args.phases - {"publish", "drain", "roundtrip"}) | (set(args.frameworks)
                                                                     - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown phase or framework: {', '.join(sorted(unknown))}")
    check_redis(parser, args, REDIS_URL)
    if args.broker == "amqp":
        check_url(parser.error, args.amqp)
        if args.profile or args.at_commit:
            parser.error("--profile and --at-commit are for --broker redis only")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return args


def add_repeat_argument(parser: argparse.ArgumentParser, default: int) -> None:
    """``--repeat``, as every benchmark here takes it (bench/chord_versus_celery.py too)."""
    parser.add_argument("--repeat", type=int, default=default,
                        help="rounds of every measurement, the frameworks alternating; the table "
                             f"shows medians, the JSON every round (default {default})")


def add_redis_arguments(parser: argparse.ArgumentParser, default: str, flushed: str) -> None:
    """``--frameworks``, ``--redis``, ``--taskq-worker`` and ``--at-commit``, as every Redis
    benchmark here takes them (bench/chord_versus_celery.py too); the database is FLUSHDBed
    before every ``flushed`` (a phase, a measurement)."""
    parser.add_argument("--frameworks", default="taskq,celery",
                        help="comma-separated subset of taskq,celery")
    parser.add_argument("--redis", default=default,
                        help=f"loopback Redis URL with a database number (default {default}); "
                             f"it is FLUSHDBed before every {flushed}")
    parser.add_argument("--taskq-worker", default=str(BENCH_DIR / "taskq_bench_worker.py"),
                        help="the django_taskq worker script (default bench/taskq_bench_worker.py; "
                             "another one with the same options can try out a change)")
    parser.add_argument("--at-commit", metavar="REV",
                        help="measure django_taskq/ as it is in this commit (exported with git "
                             "archive to a temporary directory), not the working tree, which "
                             "others may be editing meanwhile")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--out``: what :func:`emit` does with the report."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--out", help="also write the JSON report to this file")


def check_redis(parser: argparse.ArgumentParser, args: argparse.Namespace, default: str) -> None:
    """``--redis`` must be a loopback ``redis://`` URL naming a database other than 0 (it is
    flushed); sets ``args.db``. ``default`` is the script's default URL, named in the errors."""
    parts = urlsplit(args.redis)
    if parts.scheme != "redis" or parts.hostname not in LOOPBACK:
        parser.error("--redis must be a redis:// URL on the loopback interface")
    try:
        args.db = int(parts.path.lstrip("/") or "0")
    except ValueError:
        parser.error(f"--redis must name a database number, e.g. {default}")
    if args.db == 0:
        parser.error("refusing to FLUSHDB database 0: name a scratch database "
                     f"(default {urlsplit(default).path.lstrip('/')})")


class Workers:
    """Worker subprocesses: started, waited for until idle, stopped; all killed on exit."""

    def __init__(self, args: argparse.Namespace, admin: Any) -> None:
        self.args = args
        self.admin = admin
        self.live: list[tuple[subprocess.Popen[bytes], Any]] = []
        self.logdir = tempfile.mkdtemp(prefix="taskq-vs-celery-")

    def command(self, framework: str, prefetch: int | None, profile: str | None) -> list[str]:
        if framework == "taskq":
            argv = [sys.executable, self.args.taskq_worker, "--redis",
                    self.args.redis, "--queue", QUEUE, "--loglevel", "WARNING"]
            if prefetch is not None:
                argv += ["--prefetch", str(prefetch)]
            if profile:
                argv += ["--profile", profile, "--profiler", self.args.profiler]
            return argv
        argv = [sys.executable, "-m", "celery", "-A", "celery_bench_app", "worker",
                "--pool", "solo", "--concurrency", "1", "-Q", QUEUE, "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if prefetch is not None:
            argv += ["--prefetch-multiplier", str(prefetch)]
        return argv

    def start_amqp(self, framework: str, prefetch: int) -> subprocess.Popen[bytes]:
        """A worker on RabbitMQ (``--amqp``, queue ``--amqp-queue``), not waited for: it starts
        consuming the backlog as soon as it is up."""
        args = self.args
        if framework == "taskq":
            argv = [sys.executable, args.taskq_worker, "--redis", args.redis, "--broker",
                    args.amqp, "--queue", args.amqp_queue, "--loglevel", "WARNING",
                    "--prefetch", str(prefetch)]
        else:
            argv = self.command("celery", prefetch, None)
            argv[argv.index("-Q") + 1] = args.amqp_queue
        return self.spawn(framework, argv, BENCH_CELERY_BROKER=args.amqp,
                          BENCH_CELERY_QUEUE=args.amqp_queue, BENCH_CELERY_MAX_PRIORITY="10")

    def spawn(self, framework: str, argv: list[str], **extra: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, BENCH_CELERY_BROKER=self.args.redis,
                   BENCH_CELERY_BACKEND=self.args.redis,
                   PYTHONPATH=os.pathsep.join(
                       [str(BENCH_DIR), str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                      if os.environ.get("PYTHONPATH") else [])))
        env.update(extra)
        env.pop("TASKQ_BROKER_URL", None)
        env.pop("TASKQ_RESULT_BACKEND", None)
        log = open(Path(self.logdir) / f"{framework}-{len(self.live)}-{time.time():.0f}.log",
                   "w+b")
        proc = subprocess.Popen(argv, cwd=BENCH_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)  # our Ctrl-C is handled here
        self.live.append((proc, log))
        return proc

    def start(self, framework: str, prefetch: int | None, profile: str | None = None
              ) -> subprocess.Popen[bytes]:
        env = dict(os.environ, BENCH_CELERY_BROKER=self.args.redis,
                   BENCH_CELERY_BACKEND=self.args.redis,
                   PYTHONPATH=os.pathsep.join(
                       [str(BENCH_DIR), str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                      if os.environ.get("PYTHONPATH") else [])))
        env.pop("TASKQ_BROKER_URL", None)
        env.pop("TASKQ_RESULT_BACKEND", None)
        log = open(Path(self.logdir) / f"{framework}-{len(self.live)}-{time.time():.0f}.log",
                   "w+b")
        proc = subprocess.Popen(self.command(framework, prefetch, profile), cwd=BENCH_DIR,
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # our Ctrl-C is handled here
        self.live.append((proc, log))
        self.wait_idle(proc, log)
        return proc

    def wait_idle(self, proc: subprocess.Popen[bytes], log: Any, timeout: float = 60.0) -> None:
        """Until a client on our database blocks in BRPOP/BLPOP: the worker waits for work."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode} while starting:\n"
                                 + tail(log))
            for client in self.admin.client_list():
                if int(client.get("db", -1)) == self.args.db and \
                        client.get("cmd") in ("brpop", "blpop"):
                    time.sleep(0.3)  # let the rest of its start-up settle
                    return
            time.sleep(0.05)
        raise SystemExit(f"worker did not become idle within {timeout}s:\n" + tail(log))

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
        """SIGTERM (warm stop; a profiled worker then writes its profile), then SIGKILL."""
        log = next(entry for p, entry in self.live if p is proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.live = [(p, entry) for p, entry in self.live if p is not proc]
        text = tail(log)
        log.close()
        return text

    def kill_all(self) -> None:
        for proc, log in self.live:
            if proc.poll() is None:
                proc.kill()  # by its own pid; it runs in a session of its own
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            log.close()
        self.live = []
        shutil.rmtree(self.logdir, ignore_errors=True)


def tail(log: Any, size: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-size:]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (clock-tick resolution)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return float("nan")


def system_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, /proc/stat), for the noise check."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / CLK_TCK
    return float("nan")


class Noise:
    """CPU used meanwhile by processes other than this one, the worker and Redis: other people's
    work on a shared machine. Reported as a share of one CPU over the measured interval."""

    def __init__(self, admin: Any, worker_pid: int | None) -> None:
        self.admin, self.pid = admin, worker_pid
        self.started = time.perf_counter()
        self.base = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        own = os.times()
        return (system_busy(), own.user + own.system,
                cpu_seconds(self.pid) if self.pid else 0.0, redis_cpu(self.admin))

    def share(self) -> float:
        now, elapsed = self._sample(), time.perf_counter() - self.started
        total, own, worker, server = (b - a for a, b in zip(self.base, now, strict=True))
        return max(0.0, total - own - worker - server) / elapsed if elapsed > 0 else 0.0


def command_calls(admin: Any) -> dict[str, int]:
    """Redis's per-command call counters (INFO commandstats)."""
    return {name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in admin.info("commandstats").items()}


def calls_since(admin: Any, before: dict[str, int], per: int) -> dict[str, float]:
    """Commands run since ``before``, per task (the poller's LLEN/HLEN/INFO included)."""
    after = command_calls(admin)
    return {name: round((count - before.get(name, 0)) / per, 3)
            for name, count in sorted(after.items()) if count != before.get(name, 0)}


def redis_cpu(admin: Any) -> float:
    info = admin.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


# -- the two frameworks' client APIs ------------------------------------------------------------


class Side:
    """One framework's producer-side handles: noop/store tasks and the wire queue key."""

    def __init__(self, framework: str, admin: Any) -> None:
        self.framework = framework
        self.admin = admin
        if framework == "taskq":
            import benchtasks

            self.noop, self.store = benchtasks.noop, benchtasks.store
        else:
            import celery_bench_app

            self.noop, self.store = celery_bench_app.noop, celery_bench_app.store

    def reset(self) -> None:
        """FLUSHDB, and for Celery re-create the binding its worker declares (the producer's
        declaration is cached per connection, so it would not re-declare after a flush)."""
        self.admin.flushdb()
        if self.framework == "celery":
            self.admin.sadd(f"_kombu.binding.{QUEUE}", f"{QUEUE}{SEP}{SEP}{QUEUE}")

    def clear_queue(self) -> None:
        self.admin.delete(QUEUE, f"taskq:wake:{QUEUE}")

    def delay_loop(self, n: int) -> None:
        delay = self.noop.delay
        for _ in range(n):
            delay()

    def roundtrip(self) -> None:
        self.store.delay().get(timeout=30)


@contextlib.contextmanager
def client_profile(args: argparse.Namespace, name: str) -> Any:
    if not args.profile:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        path = Path(args.profile) / f"{name}.prof"
        profiler.dump_stats(path)
        summarize(path, args.profile_lines)


def summarize(path: Path, lines: int) -> None:
    """Write the top functions (cumulative, then own time) next to a .prof file."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)
    path.with_suffix(".txt").write_text(out.getvalue())


# -- measurements -------------------------------------------------------------------------------


def measure_publish(args: argparse.Namespace, side: Side) -> tuple[list[dict[str, Any]],
                                                                   list[bytes]]:
    """Timed ``delay()`` loop (and ``delay_many()`` for django_taskq); returns the loop's
    messages as the drain backlog."""
    n, rows = args.tasks, []
    side.reset()
    side.delay_loop(args.warmup)  # connections, declarations, imports
    side.clear_queue()
    with client_profile(args, f"client-{side.framework}-delay-loop"):
        noise = Noise(side.admin, None)
        started = time.perf_counter()
        side.delay_loop(n)
        elapsed = time.perf_counter() - started
        foreign = noise.share()
    queued = side.admin.llen(QUEUE)
    if queued != n:
        raise SystemExit(f"{LABEL[side.framework]} delay() loop: {queued} of {n} messages queued")
    rows.append({"phase": "publish", "framework": side.framework, "method": "delay() loop",
                 "tasks": n, "seconds": elapsed, "rate": n / elapsed, "other_cpu_share": foreign})
    backlog = side.admin.lrange(QUEUE, 0, -1)

    if side.framework == "taskq":
        side.reset()
        side.noop.delay_many([()] * args.warmup)
        side.clear_queue()
        with client_profile(args, "client-taskq-delay-many"):
            noise = Noise(side.admin, None)
            started = time.perf_counter()
            side.noop.delay_many([()] * n)
            elapsed = time.perf_counter() - started
            foreign = noise.share()
        queued = side.admin.llen(QUEUE)
        if queued != n:
            raise SystemExit(f"django_taskq delay_many(): {queued} of {n} messages queued")
        rows.append({"phase": "publish", "framework": "taskq", "method": "delay_many()",
                     "tasks": n, "seconds": elapsed, "rate": n / elapsed,
                     "other_cpu_share": foreign})
    return rows, backlog


def make_backlog(args: argparse.Namespace, side: Side) -> list[bytes]:
    """N messages from the framework's own ``delay()`` (untimed; when publish was skipped)."""
    side.reset()
    if side.framework == "taskq":
        side.noop.delay_many([()] * args.tasks)  # the same messages delay() makes, faster
    else:
        side.delay_loop(args.tasks)
    return side.admin.lrange(QUEUE, 0, -1)


def load_backlog(admin: Any, backlog: list[bytes]) -> None:
    """The messages into the side list, in the same order (oldest at the right end)."""
    pipe = admin.pipeline(transaction=False)
    for start in range(0, len(backlog), 1000):
        pipe.rpush(BACKLOG, *backlog[start:start + 1000])
    pipe.execute()


def worker_profile(args: argparse.Namespace, side: Side, name: str) -> str | None:
    """Where the django_taskq worker writes its profile under --profile (None: no profile)."""
    if not args.profile or side.framework != "taskq":
        return None
    suffix = "prof" if args.profiler == "cprofile" else "txt"
    return str(Path(args.profile) / f"worker-taskq-{name}.{suffix}")


def drain_problems(side: Side, state: Any) -> list[str]:
    """Anything left over after a drain that means it did not really finish."""
    problems = []
    time.sleep(0.05)
    queued, held = state()
    if queued or held:
        problems.append(f"{queued} queued and {held} in flight after the drain")
    if side.framework == "taskq":
        dead, attempts = side.admin.llen("taskq:dead"), side.admin.hlen("taskq:attempts")
        if dead or attempts:
            problems.append(f"{dead} dead letters, {attempts} attempt counters left")
    return problems


def measure_drain(args: argparse.Namespace, side: Side, workers: Workers, backlog: list[bytes],
                  prefetch: int) -> dict[str, Any]:
    admin, n, label = side.admin, len(backlog), f"{LABEL[side.framework]} drain p={prefetch}"
    side.reset()
    load_backlog(admin, backlog)
    profile = worker_profile(args, side, f"drain-p{prefetch}")
    proc = workers.start(side.framework, prefetch, profile)
    inflight = INFLIGHT_KEY[side.framework]

    def state() -> list[int]:  # one round trip: ready messages, messages in flight
        return admin.pipeline(transaction=False).llen(QUEUE).hlen(inflight).execute()

    appear = admin.pipeline(transaction=True)  # MULTI/EXEC: the backlog appears at once
    appear.rename(BACKLOG, QUEUE)
    if side.framework == "taskq":
        appear.lpush(f"taskq:wake:{QUEUE}", *["1"] * 8)  # what its producer pushes
    calls_before = command_calls(admin)
    cpu_before, redis_before = cpu_seconds(proc.pid), redis_cpu(admin)
    polls, deadline = 0, time.monotonic() + max(120.0, n / 50)
    noise = Noise(admin, proc.pid)
    started = time.perf_counter()
    appear.execute()
    while True:
        time.sleep(args.poll)
        queued, held = state()
        polls += 1
        if not queued and not held:
            finished = time.perf_counter()
            break
        if polls % 250 == 0 and (proc.poll() is not None or time.monotonic() > deadline):
            raise SystemExit(f"{label} stalled: {queued} queued, {held} in flight\n"
                             + workers.stop(proc))
    cpu_after, redis_after = cpu_seconds(proc.pid), redis_cpu(admin)
    foreign = noise.share()
    commands = calls_since(admin, calls_before, n)
    problems = drain_problems(side, state)
    log = workers.stop(proc)
    if problems or "Traceback" in log:
        raise SystemExit(f"{label}: " + "; ".join(problems) + "\n" + log)
    if profile and args.profiler == "cprofile":
        summarize(Path(profile), args.profile_lines)
    elapsed = finished - started
    return {"phase": "drain", "framework": side.framework, "prefetch": prefetch, "tasks": n,
            "seconds": elapsed, "rate": n / elapsed, "polls": polls,
            "worker_cpu_seconds": cpu_after - cpu_before,
            "redis_cpu_seconds": redis_after - redis_before,
            "other_cpu_share": foreign, "redis_commands_per_task": commands}


def measure_roundtrip(args: argparse.Namespace, side: Side, workers: Workers) -> dict[str, Any]:
    admin = side.admin
    side.reset()
    profile = worker_profile(args, side, "roundtrip")
    proc = workers.start(side.framework, None, profile)
    try:
        for _ in range(args.warmup):
            side.roundtrip()
            time.sleep(args.gap)
        took = []
        clock = time.perf_counter
        calls_before = command_calls(admin)
        cpu_before = cpu_seconds(proc.pid)
        noise = Noise(admin, proc.pid)
        with client_profile(args, f"client-{side.framework}-roundtrip"):
            for _ in range(args.roundtrips):
                time.sleep(args.gap)
                started = clock()
                side.roundtrip()
                took.append(clock() - started)
        foreign = noise.share()
        commands = calls_since(admin, calls_before, args.roundtrips)
        worker_cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        log = workers.stop(proc)
    if "Traceback" in log:
        raise SystemExit(f"{LABEL[side.framework]} round trip: worker log\n{log}")
    if profile and args.profiler == "cprofile":
        summarize(Path(profile), args.profile_lines)
    ms = sorted(t * 1000 for t in took)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]

    return {"phase": "roundtrip", "framework": side.framework, "calls": len(ms),
            "gap_seconds": args.gap, "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "mean_ms": statistics.fmean(ms), "min_ms": ms[0], "max_ms": ms[-1],
            "worker_cpu_ms_per_call": worker_cpu / len(ms) * 1000, "other_cpu_share": foreign,
            "redis_commands_per_call": commands}


# -- report -------------------------------------------------------------------------------------


def machine(admin: Any) -> dict[str, Any]:
    import celery
    import django
    import kombu
    import redis

    cpu, memory = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    from redis.utils import HIREDIS_AVAILABLE  # what this process's redis-py uses

    parser = "hiredis" if HIREDIS_AVAILABLE else "pure Python"
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": cpu, "memory": memory,
            "platform": platform.platform(), "python": platform.python_version(),
            "django": django.get_version(), "celery": celery.__version__,
            "kombu": kombu.__version__, "redis_py": redis.__version__, "redis_parser": parser,
            "redis_server": admin.info("server")["redis_version"]}


def export_commit(rev: str) -> str:
    """``git archive`` django_taskq/ at ``rev`` into a new temporary directory; its path."""
    target = tempfile.mkdtemp(prefix="taskq-vs-celery-src-")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "django_taskq"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return target


def revision(at_commit: str | None = None) -> dict[str, Any]:
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True,
                              check=True).stdout.rstrip()

    try:
        if at_commit:
            return {"commit": git("rev-parse", at_commit).strip(), "exported": True,
                    "django_taskq_diff_sha1": None, "django_taskq_modified": [],
                    "django_taskq_untracked": []}
        status = git("status", "--porcelain", "--", "django_taskq").splitlines()
        diff = git("diff", "HEAD", "--", "django_taskq")
        return {"commit": git("rev-parse", "HEAD").strip(),
                # tells apart runs of the same commit with different uncommitted code
                "django_taskq_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12]
                if diff else None,
                "django_taskq_modified": [line[3:] for line in status if line[:2] != "??"],
                "django_taskq_untracked": [line[3:] for line in status if line[:2] == "??"]}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "django_taskq_modified": None, "django_taskq_untracked": None}


def comparisons(results: list[dict[str, Any]], prefetches: list[int]) -> list[dict[str, Any]]:
    """The table rows: ours, Celery's, the ratio, and the target where the issue sets one."""
    def find(**match: Any) -> dict[str, Any] | None:
        return next((r for r in results if all(r.get(k) == v for k, v in match.items())), None)

    rows: list[dict[str, Any]] = []

    def add(label: str, ours: float | None, theirs: float | None, unit: str,
            higher_is_better: bool, target: str = "", met: bool | None = None) -> None:
        ratio = None
        if ours and theirs:
            ratio = ours / theirs if higher_is_better else theirs / ours
        rows.append({"measurement": label, "unit": unit, "django_taskq": ours, "celery": theirs,
                     "ratio": ratio, "target": target, "met": met})

    for prefetch in prefetches:
        ours, theirs = (find(phase="drain", framework=f, prefetch=prefetch) for f in FRAMEWORKS)
        a, b = ours and ours["rate"], theirs and theirs["rate"]
        add(f"drain, prefetch {prefetch}", a, b, "tasks/s", True, "≥ 10×",
            (a / b >= 10) if a and b else None)
        add(f"  worker CPU per task, prefetch {prefetch}",
            ours and ours["worker_cpu_seconds"] / ours["tasks"] * 1e6,
            theirs and theirs["worker_cpu_seconds"] / theirs["tasks"] * 1e6, "µs", False)
        add(f"  Redis CPU per task, prefetch {prefetch}",
            ours and ours["redis_cpu_seconds"] / ours["tasks"] * 1e6,
            theirs and theirs["redis_cpu_seconds"] / theirs["tasks"] * 1e6, "µs", False)
    loop_ours = find(phase="publish", framework="taskq", method="delay() loop")
    loop_celery = find(phase="publish", framework="celery", method="delay() loop")
    bulk = find(phase="publish", framework="taskq", method="delay_many()")
    a, b = loop_ours and loop_ours["rate"], loop_celery and loop_celery["rate"]
    add("publish, delay() loop", a, b, "tasks/s", True, "≥ 3×", (a / b >= 3) if a and b else None)
    a = bulk and bulk["rate"]
    add("publish, delay_many() vs Celery delay() loop", a, b, "tasks/s", True, "≥ 10×",
        (a / b >= 10) if a and b else None)
    ours, theirs = (find(phase="roundtrip", framework=f) for f in FRAMEWORKS)
    for key, label, limit in (("p50_ms", "p50", 1.0), ("p99_ms", "p99", 3.0),
                              ("mean_ms", "mean", None), ("p90_ms", "p90", None)):
        a, b = ours and ours[key], theirs and theirs[key]
        add(f"round trip delay().get(), {label}", a, b, "ms", False,
            f"< {limit:g} ms" if limit else "", (a < limit) if a and limit else None)
    return [r for r in rows if r["django_taskq"] is not None or r["celery"] is not None]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f}"
    if unit == "µs":
        return f"{value:.0f}"
    return f"{value:,.0f}"


def table(report: dict[str, Any]) -> str:
    m, rev = report["machine"], report["revision"]
    dirty = ""
    if rev["django_taskq_modified"]:
        dirty += (" + uncommitted changes (diff " + rev["django_taskq_diff_sha1"] + ") to "
                  + ", ".join(rev["django_taskq_modified"]))
    if rev["django_taskq_untracked"]:
        dirty += f" ({len(rev['django_taskq_untracked'])} untracked files in django_taskq/)"
    if rev.get("exported"):
        dirty = " (django_taskq/ exported from the commit with git archive)"
    lines = [f"django_taskq vs Celery {m['celery']} on Redis {m['redis_server']} "
             f"({report['redis']}), N = {report['tasks']}, one solo worker process each, "
             f"{m['cpus']} CPUs" + (" -- PROFILED" if report["profiled"] else ""),
             f"commit {(rev['commit'] or '?')[:12]}{dirty}; Python {m['python']}, "
             f"kombu {m['kombu']}, redis-py {m['redis_py']} ({m['redis_parser']} parser)"
             + (" -- PACKAGES CHANGED DURING THE RUN" if m.get("changed_during_run") else ""),
             ""]
    width = max(len(r["measurement"]) for r in report["comparison"]) + 2
    lines.append(f"{'measurement':<{width}}{'unit':>8}{'django_taskq':>14}{'Celery':>11}"
                 f"{'ratio':>9}  target")
    for r in report["comparison"]:
        ratio = f"{r['ratio']:.1f}×" if r["ratio"] else "-"
        verdict = {True: " ✓", False: " ✗", None: ""}[r["met"]]
        lines.append(f"{r['measurement']:<{width}}{r['unit']:>8}"
                     f"{fmt(r['django_taskq'], r['unit']):>14}{fmt(r['celery'], r['unit']):>11}"
                     f"{ratio:>9}  {r['target']}{verdict}")
    lines.append("")
    if report["repeat"] > 1:
        lines.append(f"medians of {report['repeat']} rounds; every round:")
        for r in report["results"]:
            unit = "ms p50" if r["phase"] == "roundtrip" else "tasks/s"
            what = r.get("method") or (f"prefetch {r['prefetch']}" if r.get("prefetch") else "")
            lines.append(f"  {LABEL[r['framework']]:<13}{r['phase']:<10}{what:<14}"
                         + " / ".join(fmt(v, 'ms' if unit == 'ms p50' else '') for v in r["rounds"])
                         + f" {unit}")
        lines.append("")
    noisy = [f"{LABEL[r['framework']]} {r['phase']}"
             + (f" p={r['prefetch']}" if r.get("prefetch") else "")
             + (f" {r['method']}" if r.get("method") else "") + f" {r['other_cpu_share']:.0%}"
             for r in report["results"] if r.get("other_cpu_share", 0) >= 0.1]
    lines.append("other processes' CPU during a measurement (share of one CPU, >= 10% listed): "
                 + (", ".join(noisy) if noisy else "none"))
    lines.append("ratio = django_taskq / Celery for rates, Celery / django_taskq for times "
                 "(higher is better for django_taskq)")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def run_phases(args: argparse.Namespace, admin: Any, workers: Workers) -> list[dict[str, Any]]:
    """Every measurement ``--repeat`` times, the two frameworks alternating within each round."""
    results: list[dict[str, Any]] = []
    sides = {f: Side(f, admin) for f in args.frameworks}
    backlogs: dict[str, list[bytes]] = {}
    for round_ in range(args.repeat):
        if "publish" in args.phases:
            for framework, side in sides.items():
                rows, backlogs[framework] = measure_publish(args, side)
                results += [dict(row, round=round_) for row in rows]
        if "drain" in args.phases:
            for framework, side in sides.items():
                if framework not in backlogs:
                    backlogs[framework] = make_backlog(args, side)
            for prefetch in args.prefetch:
                for framework, side in sides.items():
                    row = measure_drain(args, side, workers, backlogs[framework], prefetch)
                    results.append(dict(row, round=round_))
        if "roundtrip" in args.phases:
            results += [dict(measure_roundtrip(args, side, workers), round=round_)
                        for side in sides.values()]
    return results


#: What identifies one measurement across rounds, and the figure each round is listed by.
KEYS = ("phase", "framework", "method", "prefetch")
HEADLINE = {"publish": "rate", "drain": "rate", "roundtrip": "p50_ms"}


def medians(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measurement: the median of each number over the rounds, and every round's
    headline figure under ``rounds``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in results:
        groups.setdefault(tuple(row.get(k) for k in KEYS), []).append(row)
    merged = []
    for rows in groups.values():
        first = rows[0]
        row = {k: first[k] for k in KEYS if k in first}
        for name, value in first.items():
            if name in row or name == "round":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[name] = statistics.median(r[name] for r in rows)
            else:
                row[name] = value  # e.g. the command counts: those of the first round
        row["rounds"] = [r[HEADLINE[first["phase"]]] for r in rows]
        merged.append(row)
    return merged


def hold_lock(path: str | Path, busy: str) -> IO[str]:
    """An exclusive lock on the file ``path``, held as long as the returned file is open (keep a
    reference to it); ``SystemExit(busy)`` if another process holds it."""
    lock = open(path, "w")  # noqa: SIM115 - closed by the caller, at exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise SystemExit(busy) from None
    return lock


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so that ``finally`` blocks kill the workers."""
    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)


@dataclasses.dataclass
class Bench:
    """What :func:`set_up` prepared for a Redis benchmark."""

    admin: Any  #: redis-py client on ``--redis``
    source: str | None  #: the ``--at-commit`` export, removed by :func:`run_workers`
    revision: dict[str, Any]
    machine: dict[str, Any]
    load_before: tuple[float, float, float]
    lock: IO[str]  #: keeps other benchmarks off the database while this one runs


def set_up(args: argparse.Namespace) -> Bench:
    """The client side of a Redis benchmark (here and bench/chord_versus_celery.py): the Celery
    app's environment, the lock on the database (one for every script, so no two of them flush
    it under each other), django_taskq from ``--at-commit``'s export if given, Django configured
    on ``--redis``, an admin client, and the revision, machine and load average before the run."""
    os.environ["BENCH_CELERY_BROKER"] = args.redis  # before celery_bench_app is imported
    os.environ["BENCH_CELERY_BACKEND"] = args.redis
    lock = hold_lock(Path(tempfile.gettempdir())
                     / f"taskq-versus-celery-{urlsplit(args.redis).port or 6379}-{args.db}.lock",
                     f"another benchmark is using {args.redis}; wait for it")
    source = None
    if args.at_commit:
        source = export_commit(args.at_commit)
        os.environ["BENCH_TASKQ_SRC"] = source  # for the worker subprocesses too
        sys.path.insert(0, source)
    from taskq_bench_worker import configure_django

    configure_django(args.redis)
    import django_taskq

    if source and not django_taskq.__file__.startswith(source):
        raise SystemExit(f"imported {django_taskq.__file__}, not the export in {source}")
    import redis

    admin = redis.Redis.from_url(args.redis)
    admin.ping()
    code_revision = revision(args.at_commit)
    machine_before = machine(admin)  # redis-py picks its parser at import: record it now
    return Bench(admin=admin, source=source, revision=code_revision, machine=machine_before,
                 load_before=os.getloadavg(), lock=lock)


def run_workers(args: argparse.Namespace, bench: Bench,
                run: Callable[[argparse.Namespace, Any, Workers], list[dict[str, Any]]]
                ) -> list[dict[str, Any]]:
    """``run(args, admin, workers)``'s results; afterwards, however it ends, every worker is
    killed, the database flushed and the export removed. ``bench.machine`` is marked if the
    machine's packages changed meanwhile."""
    exit_on_sigterm()
    workers = Workers(args, bench.admin)
    try:
        results = run(args, bench.admin, workers)
    finally:
        workers.kill_all()
        with contextlib.suppress(Exception):
            bench.admin.flushdb()
        if bench.source:
            shutil.rmtree(bench.source, ignore_errors=True)
    if machine(bench.admin) != bench.machine:
        # e.g. someone installed hiredis meanwhile: worker processes may have used another parser
        bench.machine["changed_during_run"] = True
    return results


def emit(args: argparse.Namespace, report: dict[str, Any],
         table: Callable[[dict[str, Any]], str]) -> int:
    """The report: JSON to ``--out`` if given, JSON (``--json``) or ``table(report)`` printed."""
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text if args.json else table(report))
    return 0


def main_amqp(args: argparse.Namespace) -> int:
    """``--broker amqp``: the drain phase on RabbitMQ (bench/versus_celery_amqp.py)."""
    import versus_celery_amqp as vca

    _lock = hold_lock(vca.lock_name(args),  # a reference: held until main_amqp returns
                      f"another versus_celery.py is using {args.amqp_queue}; wait")
    from taskq_bench_worker import configure_django

    configure_django(args.redis, args.amqp)  # client: publishes the backlog to RabbitMQ
    import redis

    admin = redis.Redis.from_url(args.redis)
    machine_info = dict(machine(admin), rabbitmq=vca.rabbitmq_version(args.amqp))
    exit_on_sigterm()
    workers = Workers(args, admin)
    try:
        results = vca.run(args, workers)
    finally:
        workers.kill_all()
    report = {"broker": "amqp", "amqp": args.amqp, "amqp_queue": args.amqp_queue,
              "tasks": args.tasks, "prefetch": args.prefetch, "revision": revision(),
              "machine": machine_info, "load_average_after": os.getloadavg(),
              "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "repeat": args.repeat, "rounds": results}
    return emit(args, report, vca.table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.broker == "amqp":
        return main_amqp(args)
    bench = set_up(args)
    results = run_workers(args, bench, run_phases)
    report = {"tasks": args.tasks, "redis": args.redis, "prefetch": args.prefetch,
              "roundtrips": args.roundtrips, "gap_seconds": args.gap,
              "profiled": bool(args.profile), "revision": bench.revision,
              "machine": bench.machine, "load_average_before": bench.load_before,
              "load_average_after": os.getloadavg(), "argv": sys.argv[1:],
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "repeat": args.repeat, "rounds": results, "results": medians(results),
              "comparison": comparisons(medians(results), args.prefetch)}
    return emit(args, report, table)

if __name__ == "__main__":
    sys.exit(main())
