"""Where the real services are for tests, and whether they must be there.

Addresses come from the environment (standard loopback ports by default). A test that needs a
service skips when it is unreachable, unless TASKQ_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import socket

REQUIRED = os.environ.get("TASKQ_REQUIRE_SERVICES") == "1"

POSTGRES = {
    "HOST": os.environ.get("TASKQ_TEST_PG_HOST", "127.0.0.1"),
    "PORT": int(os.environ.get("TASKQ_TEST_PG_PORT", "5432")),
    "USER": os.environ.get("TASKQ_TEST_PG_USER", "postgres"),
    "PASSWORD": os.environ.get("TASKQ_TEST_PG_PASSWORD", ""),
    "NAME": os.environ.get("TASKQ_TEST_PG_NAME", "test"),
}
MARIADB = {
    "HOST": os.environ.get("TASKQ_TEST_MYSQL_HOST", "127.0.0.1"),
    "PORT": int(os.environ.get("TASKQ_TEST_MYSQL_PORT", "3306")),
    "USER": os.environ.get("TASKQ_TEST_MYSQL_USER", "root"),
    "PASSWORD": os.environ.get("TASKQ_TEST_MYSQL_PASSWORD", ""),
    "NAME": os.environ.get("TASKQ_TEST_MYSQL_NAME", "test"),
}

REDIS_URL = os.environ.get("TASKQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("TASKQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def url_reachable(url: str) -> bool:
    """Whether the host and port of a service URL accept a TCP connection."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return reachable(parts.hostname or "127.0.0.1", parts.port or 0)


def wanted(config: dict) -> bool:
    """Configure this service: it is reachable, or CI requires it (so its tests fail loudly)."""
    return REQUIRED or reachable(config["HOST"], config["PORT"])
