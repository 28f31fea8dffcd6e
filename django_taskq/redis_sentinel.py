"""Redis Sentinel: ``sentinel://`` URLs for the broker, the result backend and the control store.

Celery's form, one URL per sentinel, ``;``-separated::

    sentinel://:password@host1:26379/0;sentinel://host2:26379;sentinel://host3:26379

The master's user name, password and database come from the first URL (as in kombu and Celery;
a later URL naming another database is refused); query options
(``?master_name=mymaster&socket_timeout=5``) follow the last one. The name of the
monitored master is ``?master_name=`` or ``master_name`` in the transport options
(TASKQ['BROKER_TRANSPORT_OPTIONS'], TASKQ['RESULT_BACKEND_TRANSPORT_OPTIONS'], translated from
Celery's ``broker_transport_options`` and ``result_backend_transport_options``), beside
``sentinel_kwargs`` (redis-py options for the sentinel connections: ``password``, ``ssl``...)
and ``min_other_sentinels``. TLS to the master: ``?ssl=true`` or any of ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (verified unless ``none``).

The client is redis-py's ``Sentinel(...).master_for(name)``: each new connection asks the
sentinels where the master is. After a failover a connection to the old master fails (refused,
reset, or READONLY from the demoted master) and ``redisconn.reconnecting`` makes the call again
(SENTINEL_RETRIES times, backing off from 0.1 s) on a new connection from the pool, which asks
the sentinels and so reaches the new master once they have promoted it. (redis-py's own retry
would reconnect to the old address: it is left off.) While no master is known (the sentinels'
down-after-milliseconds and the election) the caller gets BrokerConnectionError, and a worker
backs off and retries as for any lost Redis.
A retried write whose first attempt did reach the old master may apply twice: delivery is at
least once, as on a reconnect to a plain Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import SplitResult, unquote, urlsplit

from .exceptions import ConfigurationError
from .service_url import ParsedUrl, split_list

DEFAULT_PORT = 26379
#: URL options of a sentinel:// URL besides the deadlines (which redisconn reads).
OPTIONS = ("master_name", "min_other_sentinels", "client_name", "health_check_interval")
#: TLS to the master (redis-py's names, as on rediss://); ``ssl=true`` alone: the system's CAs.
TLS_OPTIONS = ("ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
               "ssl_check_hostname")
#: Which transport options each setting's URL reads.
_TRANSPORT_SETTING = {"BROKER_URL": "BROKER_TRANSPORT_OPTIONS",
                      "RESULT_BACKEND": "RESULT_BACKEND_TRANSPORT_OPTIONS"}


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """The sentinels' addresses and what the first URL says about the master."""

    sentinels: list[tuple[str, int]]
    username: str | None
    password: str | None
    db: int


def parse_sentinels(url: ParsedUrl, setting: str) -> SentinelUrl:
    """The addresses in ``url``'s list, checked.

    Raises:
        ConfigurationError: a URL of the list is not ``sentinel://host[:port]``, a database is
            not a number, or query options stand before the last URL.
    """
    parts = split_list(url.original)
    sentinels = []
    for index, part in enumerate(parts):
        split = urlsplit(part)
        if split.scheme.lower() != "sentinel":
            _fail(url, setting, f"every URL of the list must be sentinel://host:port, not "
                  f"{split.scheme}:// (a Sentinel deployment is reached through its sentinels)")
        if split.query and index < len(parts) - 1:
            _fail(url, setting, "query options (?master_name=...) go after the last sentinel's "
                  "address, once for the whole list")
        sentinels.append(_address(split, url, setting))
    first = urlsplit(parts[0])
    db_text = first.path.strip("/") or "0"
    if not db_text.isdigit():
        _fail(url, setting, f"the database after the first sentinel must be a number, "
              f"not {db_text!r}")
    for part in parts[1:]:  # Celery and kombu read the first URL's: a different one misleads
        other = urlsplit(part).path.strip("/")
        if other and other != db_text:
            _fail(url, setting, f"the database is the first sentinel's (/{db_text}), as in "
                  f"Celery; write /{other} after the first address too, or on none but it")
    return SentinelUrl(sentinels, unquote(first.username) if first.username else None,
                       unquote(first.password) if first.password else None, int(db_text))


def _address(split: SplitResult, url: ParsedUrl, setting: str) -> tuple[str, int]:
    try:
        host, port = split.hostname, split.port or DEFAULT_PORT
    except ValueError:
        port = -1
        host = None
    if not host or port <= 0:
        _fail(url, setting, "each sentinel needs a host and an optional port: "
              "sentinel://host1:26379;sentinel://host2:26379")
    return host, port


def _fail(url: ParsedUrl, setting: str, why: str) -> NoReturn:
    raise ConfigurationError(f"{setting} {url.masked!r}: {why}.")


def transport_setting(url: ParsedUrl, setting: str) -> str | None:
    """The TASKQ key of the transport options ``setting``'s URL reads; a control store on the
    broker's or the result backend's URL reads theirs, on a URL of its own none."""
    from .conf import get_settings

    settings = get_settings()
    if setting not in _TRANSPORT_SETTING:
        setting = next((name for name, use_ssl in (("BROKER_URL", "BROKER_USE_SSL"), (
            "RESULT_BACKEND", "REDIS_BACKEND_USE_SSL")) if url.original in _forms(
                getattr(settings, name), getattr(settings, use_ssl), name, use_ssl)), setting)
    return _TRANSPORT_SETTING.get(setting)


def _forms(text: str, use_ssl: Any, setting: str, option: str) -> tuple[str, ...]:
    """``text`` as written and as its USE_SSL setting makes it (the control store's form)."""
    from .service_url import parse
    from .use_ssl import with_tls

    try:
        return text, with_tls(parse(text, setting=setting), use_ssl, setting, option).original
    except ConfigurationError:
        return (text,)


def _tls(url: ParsedUrl, setting: str, query: dict[str, str]) -> dict[str, Any]:
    """The master connections' TLS arguments, taken out of ``query`` (none: plain TCP)."""
    given = {name: query.pop(name) for name in TLS_OPTIONS if name in query}
    if not given or given.pop("ssl", "true").lower() in ("false", "0", "no"):
        return {}
    if given.get("ssl_cert_reqs", "required").lower() not in ("required", "optional", "none"):
        _fail(url, setting, "ssl_cert_reqs must be required, optional or none")
    if given.get("ssl_cert_reqs", "").lower() == "none":
        from .redisconn import warn_unverified

        warn_unverified(url, setting)
    tls: dict[str, Any] = {"ssl": True, **given}
    if "ssl_check_hostname" in given:
        tls["ssl_check_hostname"] = given["ssl_check_hostname"].lower() not in (
            "false", "0", "no")
    return tls


def sentinel_client(url: ParsedUrl, setting: str, query: dict[str, str],
                    timeouts: dict[str, float]) -> Any:
    """A redis-py client for the master the sentinels of ``url`` name.

    ``query`` holds the URL's options other than the deadlines; ``timeouts`` the deadlines,
    used for the master and, unless ``sentinel_kwargs`` sets them, for the sentinels.

    Raises:
        ConfigurationError: a malformed list, no master name, or an unknown option.
    """
    from .redisconn import redis_module

    redis = redis_module()
    where = parse_sentinels(url, setting)
    from .conf import get_settings

    option_setting = transport_setting(url, setting)
    options: Mapping[str, Any] = getattr(get_settings(), option_setting) if option_setting else {}
    unknown = sorted(set(query) - set(OPTIONS) - set(TLS_OPTIONS))
    if unknown:
        _fail(url, setting, f"unknown option {', '.join(unknown)}; a sentinel:// URL takes "
              f"{', '.join(OPTIONS + TLS_OPTIONS)}, socket_timeout and socket_connect_timeout")
    master = query.pop("master_name", None) or options.get("master_name")
    if not master:
        other = (f", or set TASKQ[{option_setting!r}] = {{'master_name': 'mymaster'}} (Celery's "
                 f"{option_setting.lower()})") if option_setting else ""
        _fail(url, setting, "a sentinel:// URL needs the name of the master its sentinels "
              f"monitor: add ?master_name=mymaster to the URL{other}")
    kwargs: dict[str, Any] = {"socket_keepalive": True, "health_check_interval": 30, **timeouts}
    try:
        minimum = int(query.pop("min_other_sentinels", options.get("min_other_sentinels", 0)))
        if "health_check_interval" in query:
            kwargs["health_check_interval"] = float(query.pop("health_check_interval"))
    except ValueError:
        _fail(url, setting, "min_other_sentinels must be a whole number and "
              "health_check_interval a number of seconds")
    kwargs.update(_tls(url, setting, query))
    kwargs.update(query)  # client_name
    kwargs.update((key, value) for key, value in
                  (("username", where.username), ("password", where.password)) if value)
    # One try per sentinel: asking the next sentinel is the retry.
    sentinel_kwargs = {**timeouts, "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
                       **(options.get("sentinel_kwargs") or {})}
    sentinel = redis.sentinel.Sentinel(where.sentinels, min_other_sentinels=minimum,
                                       sentinel_kwargs=sentinel_kwargs, db=where.db,
                                       retry_on_timeout=False, **kwargs)
    return sentinel.master_for(master)
