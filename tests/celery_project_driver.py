"""Running tests/celery_project in subprocesses: copies, the switch, a worker and its smoke run.

Used by tests/test_celery_project.py. A run starts a worker (``manage.py taskworker``, or a
real ``celery worker`` for the original project), runs the project's ``manage.py smoke``
against it, stops the worker with SIGTERM and keeps what the project recorded: the smoke report,
the audit trail its handlers and receivers wrote (shop/audit.py), the worker's log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.celery_project_imports import add_installed_app, convert_source

ROOT = Path(__file__).resolve().parent.parent
PROJECT = Path(__file__).resolve().parent / "celery_project"
# Shadows the celery package in the converted copy: a forgotten Celery import fails loudly.
TRIPWIRE = 'raise ImportError("the converted project imported celery")\n'
# Tasks whose outcome nobody waits for; the worker must have started them before it stops.
UNWAITED = ("debug", "visit", "cancel_unknown", "refresh_fresh")


def copy_project(dest: Path, source: Path = PROJECT) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    return dest


def convert(path: Path) -> Path:
    """The switch, applied to a copy: the import table, then the INSTALLED_APPS line."""
    for source in path.rglob("*.py"):
        text = source.read_text()
        converted = convert_source(text)
        if source == path / "proj" / "settings.py":
            converted = add_installed_app(converted)
        if converted != text:
            source.write_text(converted)
    (path / "celery.py").write_text(TRIPWIRE)
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Project:
    """A copy of the project and the environment its processes get (PROJ_* deployment values)."""

    def __init__(self, path: Path, broker_url: str, result_backend: str) -> None:
        self.path = path
        self.audit_log = path / "audit.jsonl"
        # Nothing of the test run leaks in (pytest-django's DJANGO_SETTINGS_MODULE above all).
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("DJANGO_", "TASKQ_", "CELERY_", "PROJ_"))}
        self.env = {**keep, "PYTHONPATH": str(ROOT), "PROJ_DB": str(path / "db.sqlite3"),
                    "PROJ_BROKER_URL": broker_url, "PROJ_RESULT_BACKEND": result_backend,
                    "PROJ_AUDIT_LOG": str(self.audit_log)}

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=self.path, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def audit(self) -> list[dict]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


class Run:
    """What one worker run left behind."""

    def __init__(self, project: Project, worker_pid: int, returncode: int, output: str,
                 report: dict, states: dict, dead_letters: str) -> None:
        self.worker_pid, self.returncode, self.output = worker_pid, returncode, output
        self.report, self.states, self.dead_letters = report, states, dead_letters
        self.audit = project.audit()

    def id(self, name: str) -> str:
        return str(self.report[name]["id"])

    def value(self, name: str):
        return self.report[name]["value"]

    def worker_events(self) -> list[str]:
        """The worker-level audit events of the worker's own process, in order."""
        return [e["event"] for e in self.audit if e["pid"] == self.worker_pid
                and e["event"] in ("after_setup_logger", "after_setup_task_logger",
                                   "worker_ready", "worker_shutting_down")]

    def named_report(self) -> dict:
        """The smoke report with each task id replaced by the name it was sent under (runs
        compare equal whatever ids they drew)."""
        names = {entry["id"]: name for name, entry in self.report.items() if "id" in entry}

        def named(value):
            if isinstance(value, dict):
                return {key: named(item) for key, item in value.items()}
            if isinstance(value, list):
                return [named(item) for item in value]
            return f"<{names[value]}>" if isinstance(value, str) and value in names else value

        return named(self.report)

    def events(self, name: str) -> list[str]:
        """The audit events of the task sent as ``name`` in the smoke report, in order."""
        task_id = self.id(name)
        return [e["event"] for e in self.audit if e.get("task_id") == task_id]


def run_worker(project: Project, command: Sequence[str]) -> Run:
    """Migrate, start ``command`` (a worker), smoke it, stop it with SIGTERM; kill on failure."""
    migrated = project.manage("migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    log = project.path / "worker.log"
    with open(log, "w") as out:
        # A session of its own, so that a failed run can kill the pool processes too.
        worker = subprocess.Popen(list(command), cwd=project.path, env=project.env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: any(e["event"] == "worker_ready" for e in project.audit()),
                 what="worker_ready")
        smoke = project.manage("smoke", "--timeout", "30")
        assert smoke.returncode == 0, smoke.stderr + log.read_text()
        report = json.loads(smoke.stdout)
        unwaited = {report[name]["id"] for name in UNWAITED}
        wait_for(lambda: unwaited <= {e["task_id"] for e in project.audit()
                                      if e["event"] == "task_prerun"}, what="the last tasks")
        worker.send_signal(signal.SIGTERM)  # warm: the started tasks finish first
        returncode = worker.wait(timeout=30)
        looked_up = project.manage("smoke", "--states", *sorted(unwaited))
        assert looked_up.returncode == 0, looked_up.stderr
        states = {name: json.loads(looked_up.stdout)[report[name]["id"]] for name in UNWAITED}
        dead = project.manage("taskq", "dead", "list") if "taskworker" in command else None
        return Run(project, worker.pid, returncode, log.read_text(), report, states,
                   dead.stdout if dead is not None else "")
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # never leave a worker or its children behind
        except ProcessLookupError:
            pass
        worker.wait()


def taskworker() -> list[str]:
    return [sys.executable, "manage.py", "taskworker", "-P", "prefork", "-c", "2",
            "-Q", "main,billing", "-n", "proj@test", "-l", "INFO"]


def celery_worker() -> list[str]:
    """Celery's ``celery -A proj worker`` with the same pool, queues and name."""
    return [sys.executable, "-m", "celery", "-A", "proj", "worker", "-P", "prefork", "-c", "2",
            "-Q", "main,billing", "-n", "proj@test", "-l", "INFO", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]
