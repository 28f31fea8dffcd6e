"""A private memcached (Debian's /usr/bin/memcached) on a free loopback port, one per test
process, started on first use and killed when the process ends (or dies: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests import services
from tests.redisserver import free_port

#: Item size limit of the test server: memcached's default, 1 MB.
ITEM_LIMIT = 1024 * 1024

_server: MemcachedServer | None = None


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MemcachedServer:
    """memcached -l 127.0.0.1 -p <free port>, 64 MB, 1 MB items."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # memcached refuses to run as root
        self.proc = subprocess.Popen(
            [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64",
             "-I", str(ITEM_LIMIT), *user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only
        deadline = time.monotonic() + 10
        while not services.reachable("127.0.0.1", self.port, timeout=0.2):
            assert self.proc.poll() is None, "memcached exited at start"
            assert time.monotonic() < deadline, "memcached did not start within 10 s"
            time.sleep(0.02)
        atexit.register(self.stop)

    @property
    def location(self) -> str:
        """The LOCATION of a Django memcached cache on this server."""
        return f"127.0.0.1:{self.port}"

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(b"flush_all\r\n")
            assert conn.recv(64).startswith(b"OK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def memcached() -> MemcachedServer:
    """This test process's memcached, emptied; skip (fail in CI) when memcached is missing."""
    global _server
    binary = shutil.which("memcached") or ("/usr/bin/memcached"
                                           if os.path.exists("/usr/bin/memcached") else None)
    if binary is None:
        assert not services.REQUIRED, "memcached is required (TASKQ_REQUIRE_SERVICES=1)"
        pytest.skip("memcached is not installed (apt-get install memcached)")
    if _server is None or _server.proc.poll() is not None:
        _server = MemcachedServer(binary)
    _server.flush()
    return _server


def memcached_caches(location: str, alias: str = "results") -> dict[str, dict[str, object]]:
    """CACHES with ``alias`` on the memcached at ``location`` (pymemcache, with deadlines)."""
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            alias: {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                    "LOCATION": location,
                    "OPTIONS": {"connect_timeout": 2, "timeout": 5}}}


def redis_caches(url: str, alias: str = "results") -> dict[str, dict[str, object]]:
    """CACHES with ``alias`` on Redis at ``url`` through Django's own RedisCache."""
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            alias: {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                    "KEY_PREFIX": "taskq-test"}}
