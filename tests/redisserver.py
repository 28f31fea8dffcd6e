"""A private redis-server on a free loopback port, which tests may kill and restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests import services


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server binary; skip (fail under TASKQ_REQUIRE_SERVICES=1) without one."""
    binary = shutil.which("redis-server")
    if binary is None:
        assert not services.REQUIRED, "redis-server is required (TASKQ_REQUIRE_SERVICES=1)"
        pytest.skip("redis-server is not installed")
    return binary


class RedisServer:
    """redis-server with an fsync-always append-only file in ``directory``, so a kill loses
    nothing that was acknowledged (the restart tests are about our reconnects, not Redis).

    ``args`` are more command-line options (``--replicaof``, ``--requirepass``...); with ``tls``
    the port is a TLS port (``args`` then give the certificate files) and no plain port is open.
    """

    def __init__(self, directory: Path, *, args: Sequence[str] = (), tls: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server")
        self.args, self.tls = list(args), tls

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary, "redis-server is not installed"
        ports = ["--port", "0", "--tls-port", str(self.port)] if self.tls else \
            ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            [self.binary, *ports, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, ping=not self.tls)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_listening(port: int, *, ping: bool = True) -> None:
    """Until the server on ``port`` answers PING (or, without ``ping``, accepts connections)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                if not ping:
                    return
                conn.sendall(b"PING\r\n")
                if conn.recv(64)[:1] in (b"+", b"-"):  # PONG, or NOAUTH from a guarded one
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"redis-server on port {port} did not start"
        time.sleep(0.05)
