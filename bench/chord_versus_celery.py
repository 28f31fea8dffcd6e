#!/usr/bin/env python
"""A chord of 1,000 header tasks, django_taskq against Celery 5 on the same Redis: time to callback.

    .venv/bin/python bench/chord_versus_celery.py                     # 3 rounds, prefetch 4 and 100
    .venv/bin/python bench/chord_versus_celery.py --header 1000 --prefetch 4,100 --repeat 3
    .venv/bin/python bench/chord_versus_celery.py --at-commit HEAD --out /tmp/chord-1.json

What is timed: ``chord([add.s(i, i) for i in range(N)])(tsum.s())`` then ``.get()`` on the
result it returns, i.e. from the call that sends the chord until the client has the body's value
(``tsum`` of the header's results, checked against the expected sum). The signatures are built
before the clock starts. Reported for each side: the median over ``--repeat`` rounds of

* time to callback (send + wait for the body's result);
* the time the send call took, and its share of the total;
* when the first and the last header task finished and when the body finished, relative to the
  start of the send (``date_done`` of their results, read back after the run: the worker's wall
  clock, the same machine's);
* worker CPU, Redis CPU and Redis commands per header task, client CPU, and the CPU other
  processes used meanwhile (as in bench/versus_celery.py).

Set-up, as in bench/versus_celery.py (whose helpers this imports): one Redis database,
``redis://127.0.0.1:6379/11`` by default (``--redis``; FLUSHDB before every measurement, so never
point it at a database holding anything else), broker and result backend for both; queue
``default``; ONE worker process with ONE execution slot for each, started as a subprocess once
per measurement and waited for until it is blocked in BRPOP/BLPOP:

* django_taskq: ``bench/taskq_bench_worker.py`` = ``manage.py taskworker -P solo -c 1
  -Q default --prefetch-multiplier P``; its chord counting is ``results/redis_chords.py``.
* Celery: ``celery -A celery_bench_app worker --pool solo -c 1 -Q default --prefetch-multiplier P
  --without-gossip --without-mingle --without-heartbeat``, Celery's defaults otherwise: the Redis
  result backend's native chord join with ``result_chord_ordered`` left at its default (a sorted
  set ``.j``).

Before the timed chord each worker runs an untimed warm-up chord (``--warmup``, 10 header tasks)
so that imports, connections and script loading are not measured, and is then waited for until
it is blocked again. Afterwards: nothing may be left queued or in flight, no dead letters, no
traceback in the worker log. The frameworks alternate within each round. Results: bench/README.md,
"Chord of 1,000 header tasks versus Celery".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # versus_celery.py adds the rest

from versus_celery import (  # noqa: E402 - after the path set-up
    INFLIGHT_KEY,
    LABEL,
    QUEUE,
    SEP,
    Noise,
    Workers,
    add_output_arguments,
    add_redis_arguments,
    add_repeat_argument,
    calls_since,
    check_redis,
    command_calls,
    cpu_seconds,
    emit,
    redis_cpu,
    run_workers,
    set_up,
    tail,
)

REDIS_URL = "redis://127.0.0.1:6379/11"
FRAMEWORKS = ("taskq", "celery")
RESULT_KEY = "celery-task-meta-"  # both frameworks store results under Celery's keys


# -- setup --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header", "-n", type=int, default=1000,
                        help="header tasks in the timed chord (default 1000)")
    parser.add_argument("--prefetch", default="4,100",
                        help="comma-separated prefetch multipliers, one measurement each "
                             "(default 4,100, as bench/versus_celery.py's drain)")
    add_repeat_argument(parser, 3)
    parser.add_argument("--warmup", type=int, default=10,
                        help="header tasks of the untimed warm-up chord each worker runs first "
                             "(default 10; 0: none)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for the body's result (default 300)")
    add_redis_arguments(parser, REDIS_URL, "measurement")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.taskq_worker = str(Path(args.taskq_worker).resolve())  # the worker runs in bench/
    args.prefetch = [int(p) for p in args.prefetch.split(",") if p.strip()]
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if set(args.frameworks) - set(FRAMEWORKS):
        parser.error("--frameworks: taskq and/or celery")
    if args.header < 1 or args.repeat < 1:
        parser.error("--header and --repeat must be at least 1")
    check_redis(parser, args, REDIS_URL)
    args.profiler = "cprofile"  # what Workers expects; nothing is profiled here
    return args


class ChordSide:
    """One framework's client side: its ``chord`` and the ``bench.add``/``bench.tsum`` tasks."""

    def __init__(self, framework: str, admin: Any) -> None:
        self.framework, self.admin = framework, admin
        if framework == "taskq":
            import benchtasks

            from django_taskq import chord

            self.chord, self.add, self.tsum = chord, benchtasks.add, benchtasks.tsum
        else:
            import celery_bench_app
            from celery import chord

            self.chord, self.add, self.tsum = chord, celery_bench_app.add, celery_bench_app.tsum

    def reset(self) -> None:
        """FLUSHDB; for Celery re-create the binding its producer declared before (cached per
        connection, it would not be declared again after a flush)."""
        self.admin.flushdb()
        if self.framework == "celery":
            self.admin.sadd(f"_kombu.binding.{QUEUE}", f"{QUEUE}{SEP}{SEP}{QUEUE}")

    def release(self, result: Any) -> None:
        """Untimed, after a run: Celery's client subscribed to every header task's result and
        keeps each AsyncResult until it is fetched, which the chord's caller never does; let
        them go now (UNSUBSCRIBE), not in ``__del__`` at interpreter exit."""
        if self.framework == "celery":
            for member in result.parent.results:
                member.backend.remove_pending_result(member)

    def build(self, n: int) -> tuple[Any, Any]:
        """The chord of ``n`` header tasks ``add(i, i)`` and its body ``tsum``, not yet sent."""
        return self.chord([self.add.s(i, i) for i in range(n)]), self.tsum.s()


def expected(n: int) -> int:
    return sum(i + i for i in range(n))


def run_chord(side: ChordSide, n: int, timeout: float) -> int:
    """An untimed chord (the warm-up)."""
    header, body = side.build(n)
    result = header(body)
    value = result.get(timeout=timeout)
    side.release(result)
    return value


# -- measurement --------------------------------------------------------------------------------


def parse_done(value: Any) -> float | None:
    """``date_done`` of a stored result as seconds since the epoch (naive means UTC)."""
    if not value:
        return None
    when = datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def finish_times(admin: Any, header_ids: list[str], body_id: str) -> dict[str, Any]:
    """When the header tasks and the body finished, from their stored results (read after the
    run, untimed), and their states."""
    ids = [*header_ids, body_id]
    metas = []
    pipe = admin.pipeline(transaction=False)
    for start in range(0, len(ids), 500):
        pipe.mget([RESULT_KEY + task_id for task_id in ids[start:start + 500]])
    for chunk in pipe.execute():
        metas.extend(json.loads(raw) if raw else {} for raw in chunk)
    header, body = metas[:-1], metas[-1]
    states: dict[str, int] = {}
    for meta in header:
        states[meta.get("status", "MISSING")] = states.get(meta.get("status", "MISSING"), 0) + 1
    done = [t for t in (parse_done(meta.get("date_done")) for meta in header) if t is not None]
    return {"header_states": states, "body_state": body.get("status", "MISSING"),
            "first_header_done": min(done) if done else None,
            "last_header_done": max(done) if done else None,
            "body_done": parse_done(body.get("date_done"))}


def leftovers(side: ChordSide) -> list[str]:
    """Anything still queued, in flight or dead after the body's result arrived."""
    admin, problems = side.admin, []
    deadline = time.monotonic() + 5.0
    while True:  # the worker acks the body after storing its result: give it a moment
        queued, held = admin.pipeline(transaction=False).llen(QUEUE).hlen(
            INFLIGHT_KEY[side.framework]).execute()
        if not queued and not held or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if queued or held:
        problems.append(f"{queued} queued and {held} in flight after the body's result")
    if side.framework == "taskq":
        dead = admin.llen("taskq:dead")
        if dead:
            problems.append(f"{dead} dead letters")
    return problems


def measure_chord(args: argparse.Namespace, side: ChordSide, workers: Workers,
                  prefetch: int) -> dict[str, Any]:
    admin, n, label = side.admin, args.header, f"{LABEL[side.framework]} chord p={prefetch}"
    side.reset()
    others = [c for c in admin.client_list() if int(c.get("db", -1)) == args.db
              and c.get("cmd") in ("brpop", "blpop")]
    if others:  # a worker left running on our database would take a share of the chord
        raise SystemExit(f"a client is already blocked in BRPOP/BLPOP on {args.redis} before "
                         f"our worker started: {others}")
    proc = workers.start(side.framework, prefetch)
    log = next(entry for p, entry in workers.live if p is proc)
    try:
        if args.warmup:
            value = run_chord(side, args.warmup, args.timeout)
            if value != expected(args.warmup):
                raise SystemExit(f"{label}: warm-up chord gave {value!r}, not "
                                 f"{expected(args.warmup)}")
            problems = leftovers(side)
            if problems:
                raise SystemExit(f"{label}: after the warm-up: {'; '.join(problems)}\n"
                                 + tail(log))
            workers.wait_idle(proc, log)  # parked in its blocking pop again
        header, body = side.build(n)
        gc.collect()
        calls_before = command_calls(admin)
        worker_before, redis_before, own_before = cpu_seconds(proc.pid), redis_cpu(admin), \
            os.times()
        noise = Noise(admin, proc.pid)
        wall = time.time()
        started = time.perf_counter()
        result = header(body)
        sent = time.perf_counter()
        value = result.get(timeout=args.timeout)
        finished = time.perf_counter()
        own_after = os.times()
        worker_cpu = cpu_seconds(proc.pid) - worker_before
        redis_seconds = redis_cpu(admin) - redis_before
        foreign = noise.share()
        commands = calls_since(admin, calls_before, n)
        header_ids = [r.id for r in result.parent.results]
        body_id = result.id
        side.release(result)
        del result
        problems = leftovers(side)
        times = finish_times(admin, header_ids, body_id)
    finally:
        text = workers.stop(proc)
    if value != expected(n):
        problems.append(f"the body returned {value!r}, not {expected(n)}")
    if times["header_states"] != {"SUCCESS": n} or times["body_state"] != "SUCCESS":
        problems.append(f"states: header {times['header_states']}, body {times['body_state']}")
    if problems or "Traceback" in text:
        raise SystemExit(f"{label}: " + "; ".join(problems) + "\n" + text)

    def since(when: float | None) -> float | None:
        return when - wall if when is not None else None

    total = finished - started
    return {"framework": side.framework, "prefetch": prefetch, "header": n,
            "seconds": total, "send_seconds": sent - started, "send_share": (sent - started) / total,
            "wait_seconds": finished - sent,
            "first_header_done": since(times["first_header_done"]),
            "last_header_done": since(times["last_header_done"]),
            "body_done": since(times["body_done"]),
            "worker_cpu_seconds": worker_cpu, "redis_cpu_seconds": redis_seconds,
            "client_cpu_seconds": (own_after.user + own_after.system)
            - (own_before.user + own_before.system),
            "other_cpu_share": foreign, "redis_commands_per_header_task": commands}


# -- report -------------------------------------------------------------------------------------


def medians(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (framework, prefetch): the median of every number, and each round's total."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rounds:
        groups.setdefault((row["framework"], row["prefetch"]), []).append(row)
    merged = []
    for (framework, prefetch), rows in groups.items():
        row: dict[str, Any] = {"framework": framework, "prefetch": prefetch}
        for name, value in rows[0].items():
            if name in row or name == "round":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values = [r[name] for r in rows if r[name] is not None]
                row[name] = statistics.median(values) if values else None
            else:
                row[name] = value  # the command counts: those of the first round
        row["rounds"] = [r["seconds"] for r in rows]
        merged.append(row)
    return merged


def table(report: dict[str, Any]) -> str:
    m, rev = report["machine"], report["revision"]
    where = " (django_taskq/ exported with git archive)" if rev.get("exported") else ""
    if rev.get("django_taskq_modified"):
        where = (f" + uncommitted changes (diff {rev['django_taskq_diff_sha1']}) to "
                 + ", ".join(rev["django_taskq_modified"]))
    lines = [f"chord of {report['header']} header tasks, django_taskq vs Celery {m['celery']} on "
             f"Redis {m['redis_server']} ({report['redis']}), one solo worker each, "
             f"{m['cpus']} CPUs",
             f"commit {(rev['commit'] or '?')[:12]}{where}; Python {m['python']}, kombu "
             f"{m['kombu']}, redis-py {m['redis_py']} ({m['redis_parser']} parser); medians of "
             f"{report['repeat']} rounds", ""]
    results = report["results"]

    def find(framework: str, prefetch: int) -> dict[str, Any] | None:
        return next((r for r in results if r["framework"] == framework
                     and r["prefetch"] == prefetch), None)

    def cell(row: dict[str, Any] | None, key: str, scale: float, digits: int) -> str:
        value = row and row.get(key)
        return "-" if value is None else f"{value * scale:,.{digits}f}"

    rows = (("time to callback, s", "seconds", 1, 3),
            ("  sending the header, s", "send_seconds", 1, 3),
            ("  sending, share of the total, %", "send_share", 100, 0),
            ("  first header task done, s", "first_header_done", 1, 3),
            ("  last header task done, s", "last_header_done", 1, 3),
            ("  body done, s", "body_done", 1, 3),
            ("worker CPU per header task, µs", "worker_cpu_seconds", 1e6 / report["header"], 0),
            ("Redis CPU per header task, µs", "redis_cpu_seconds", 1e6 / report["header"], 0),
            ("client CPU, s", "client_cpu_seconds", 1, 3))
    width = max(len(label) for label, *_ in rows) + 2
    for prefetch in report["prefetch"]:
        ours, theirs = find("taskq", prefetch), find("celery", prefetch)
        lines.append(f"{'prefetch ' + str(prefetch):<{width}}{'django_taskq':>14}{'Celery':>10}"
                     f"{'ratio':>8}")
        for label, key, scale, digits in rows:
            ratio = ""
            if key in ("seconds", "body_done") and ours and theirs and ours[key] \
                    and theirs[key]:
                ratio = f"{theirs[key] / ours[key]:.1f}×"
            lines.append(f"{label:<{width}}{cell(ours, key, scale, digits):>14}"
                         f"{cell(theirs, key, scale, digits):>10}{ratio:>8}")
        for row in (ours, theirs):
            if row:
                top = sorted(row["redis_commands_per_header_task"].items(),
                             key=lambda item: -item[1])[:7]
                lines.append(f"  Redis commands per header task (Lua's included), "
                             f"{LABEL[row['framework']]}: "
                             + ", ".join(f"{name} {count:g}" for name, count in top))
        lines.append("")
    lines.append("time to callback in every round, s:")
    for row in results:
        lines.append(f"  {LABEL[row['framework']]:<13} prefetch {row['prefetch']:<4} "
                     + " / ".join(f"{s:.3f}" for s in row["rounds"]))
    noisy = [f"{LABEL[r['framework']]} p={r['prefetch']} round {r['round']} "
             f"{r['other_cpu_share']:.0%}" for r in report["rounds"]
             if r["other_cpu_share"] >= 0.1]
    lines.append("other processes' CPU during a measurement (share of one CPU, >= 10% listed): "
                 + (", ".join(noisy) if noisy else "none"))
    lines.append("ratio = Celery's time / django_taskq's (higher is better for django_taskq)")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def run_rounds(args: argparse.Namespace, admin: Any, workers: Workers) -> list[dict[str, Any]]:
    """Every measurement ``--repeat`` times, the frameworks alternating within each round."""
    sides = {f: ChordSide(f, admin) for f in args.frameworks}
    rounds: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        for prefetch in args.prefetch:
            for side in sides.values():
                row = measure_chord(args, side, workers, prefetch)
                rounds.append(dict(row, round=round_))
                print(f"round {round_}: {LABEL[side.framework]} prefetch {prefetch}: "
                      f"{row['seconds']:.3f} s (sending {row['send_seconds']:.3f} s)",
                      file=sys.stderr)
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = set_up(args)  # the same lock as bench/versus_celery.py: one benchmark per database
    rounds = run_workers(args, bench, run_rounds)
    report = {"header": args.header, "redis": args.redis, "prefetch": args.prefetch,
              "warmup": args.warmup, "revision": bench.revision, "machine": bench.machine,
              "load_average_before": bench.load_before, "load_average_after": os.getloadavg(),
              "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "repeat": args.repeat, "rounds": rounds, "results": medians(rounds)}
    return emit(args, report, table)

if __name__ == "__main__":
    sys.exit(main())
