"""Redis clients for the broker and the result backend: every call has a deadline.

``redis://`` and ``rediss://`` (TLS; redis-py verifies the server certificate unless the URL
says ``ssl_cert_reqs=none``, which is logged as a warning), and ``sentinel://`` lists
(``redis_sentinel``). Query options understood by redis-py pass through; our own
(``socket_timeout``, ``socket_connect_timeout``) have safe defaults instead of "wait forever".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

from .exceptions import BrokerConnectionError, ConfigurationError
from .service_url import ParsedUrl, mask_text

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Seconds to open a connection, and to wait for any reply that is not a blocking wait.
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
#: Calls made again after a lost connection to a Sentinel-managed master (``reconnecting``).
SENTINEL_RETRIES = 3
#: Options of ours that redis-py must not see.
OWN_OPTIONS = ("poll_interval", "prefix")


def redis_module() -> Any:
    """The redis-py package, or a ConfigurationError saying how to install it."""
    try:
        import redis
    except ImportError as exc:
        raise ConfigurationError(
            "The Redis broker and result backend need redis-py: "
            "pip install 'django-taskq[redis]'.") from exc
    return redis


def client_from_url(url: ParsedUrl, setting: str, *, min_timeout: float = 0.0) -> Any:
    """A redis-py client for ``url``, with connect and command deadlines.

    ``min_timeout`` raises the command deadline above the longest blocking wait the caller
    issues (a blocking pop must not look like a dead server).

    Raises:
        ConfigurationError: redis-py missing, or a malformed URL or option.
    """
    redis = redis_module()
    query = {k: v for k, v in url.options.items() if k not in OWN_OPTIONS}
    try:
        command = float(query.pop("socket_timeout", COMMAND_TIMEOUT))
        connect = float(query.pop("socket_connect_timeout", CONNECT_TIMEOUT))
    except ValueError as exc:
        raise ConfigurationError(f"{setting} {url.masked!r}: {mask_text(str(exc))}") from exc
    timeouts = {"socket_timeout": max(command, min_timeout + 5.0),
                "socket_connect_timeout": connect}
    if "ssl_cert_reqs" in query:  # Celery's URLs also say CERT_REQUIRED; redis-py: required
        reqs = query["ssl_cert_reqs"].lower().removeprefix("cert_")
        if reqs not in ("required", "optional", "none"):
            raise ConfigurationError(f"{setting} {url.masked!r}: ssl_cert_reqs must be "
                                     "required, optional or none.")
        query["ssl_cert_reqs"] = reqs
    if url.scheme == "sentinel":
        from .redis_sentinel import sentinel_client

        return sentinel_client(url, setting, query, timeouts)
    if query.get("ssl_cert_reqs", "").lower() == "none" and url.scheme == "rediss":
        warn_unverified(url, setting)
    base = url.original.split("?", 1)[0]
    if query:
        base += "?" + urlencode(query)
    try:
        return redis.Redis.from_url(
            base, **timeouts, socket_keepalive=True, health_check_interval=30, retry_on_timeout=False)
    except ValueError as exc:
        raise ConfigurationError(f"{setting} {url.masked!r}: {mask_text(str(exc))}") from exc


def warn_unverified(url: ParsedUrl, setting: str) -> None:
    """Log that ``url`` (``ssl_cert_reqs=none``) does not verify the server's certificate."""
    logger.warning("%s %s: ssl_cert_reqs=none, the Redis server's TLS certificate is not "
                   "verified (anyone on the path can pose as the server); give its CA "
                   "with ?ssl_ca_certs=/path/ca.pem instead.", setting, url.masked)


def connection_errors() -> tuple[type[BaseException], ...]:
    """The redis-py errors that mean "the server is unreachable or went away"."""
    redis = redis_module()
    return (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise a lost or unreachable Redis as BrokerConnectionError naming ``what``."""
    try:
        yield
    except connection_errors() as exc:
        raise BrokerConnectionError(f"Redis unreachable ({what}): {_text(exc)}{_hint(exc)}") from exc


def _text(exc: BaseException) -> str:
    """The error's text, masked; redis-py's sentinel errors are cut before its client reprs."""
    text = mask_text(str(exc))
    if type(exc).__name__ == "MasterNotFoundError":
        text = text.split(" : ", 1)[0]
    return text


def _hint(exc: BaseException) -> str:
    """What to do about the errors that have a known fix."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (". The Redis server's TLS certificate was not verified: give the CA that signed "
                "it with ?ssl_ca_certs=/path/ca.pem in the rediss:// URL (TASKQ['BROKER_USE_SSL'"
                "] / ['REDIS_BACKEND_USE_SSL'] = {'ssl_ca_certs': ...} also do).")
    if type(exc).__name__ == "MasterNotFoundError":
        return (". No sentinel of the sentinel:// URL named a healthy master: the sentinels are "
                "unreachable (check their addresses, and sentinel_kwargs for their password), "
                "none monitors a master of that name (check master_name), or a failover is "
                "under way.")
    return ""


def reconnecting(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a broker or backend method: connection errors become BrokerConnectionError.

    On a Sentinel-managed client (``self.client``) the call is made again after a lost
    connection, up to SENTINEL_RETRIES times, backing off from 0.1 s: each new connection asks
    the sentinels for the master, so a failover costs the caller no error once it is over.
    """
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        pool = getattr(getattr(self, "client", None), "connection_pool", None)
        retries = SENTINEL_RETRIES if getattr(pool, "sentinel_manager", None) else 0
        with translated(method.__name__):
            for attempt in range(retries):
                try:
                    with _demotion_lost():
                        return method(self, *args, **kwargs)
                except connection_errors():
                    time.sleep(0.1 * 2 ** attempt)
            with _demotion_lost():
                return method(self, *args, **kwargs)
    return wrapper


@contextlib.contextmanager
def _demotion_lost() -> Iterator[None]:
    """A blocked pop's "UNBLOCKED ... (master -> replica?)" error: the server was demoted under
    it (a failover), a lost master like a lost connection, not a bug to stop a worker for."""
    redis = redis_module()
    try:
        yield
    except redis.ResponseError as exc:
        if not str(exc).startswith("UNBLOCKED"):
            raise
        raise redis.ConnectionError(f"the Redis master was demoted: {exc}") from exc
