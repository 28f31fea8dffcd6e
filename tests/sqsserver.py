"""A private moto server (an SQS-compatible server in memory, from PyPI's ``moto[server]``) on a
free loopback port, in a subprocess so tests can kill it. Queues live in its memory: a restart
loses them, so tests that cut the connection put tests/tcpproxy.py in front instead."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import uuid

import pytest

from tests import services
from tests.redisserver import free_port


def moto_missing() -> str | None:
    """Why the SQS tests cannot run here (None: they can)."""
    for module in ("moto", "boto3", "flask"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'moto[server]' boto3)"
    return None


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1:<free port>; ``url()`` is an sqs:// URL for it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, **options: object) -> str:
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"sqs://testing:testing@127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not services.reachable("127.0.0.1", self.port, timeout=0.2):
            assert self.proc.poll() is None, "moto server exited at start"
            assert time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_or_skip() -> MotoServer:
    """A started server; skips (fails in CI) when moto is not installed."""
    missing = moto_missing()
    if missing:
        assert not services.REQUIRED, f"the SQS tests need moto: {missing}"
        pytest.skip(missing)
    server = MotoServer()
    server.start()
    return server


def unique_prefix() -> str:
    """A queue name prefix of one test's own, so tests sharing a server never meet."""
    return f"t{uuid.uuid4().hex[:10]}-"
