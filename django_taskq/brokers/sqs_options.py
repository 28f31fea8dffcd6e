"""Amazon SQS broker settings: the URL, Celery's transport options, queue names, the client.

``sqs://`` or ``sqs://aws_access_key_id:aws_secret_access_key@`` (the secret URL-encoded), as
Celery writes it; without credentials boto3's own chain applies (environment, ``~/.aws``, an
instance or task role). A host (``sqs://key:secret@localhost:4566``) is an SQS-compatible
server reached at ``http://localhost:4566`` (``is_secure=true``: https), as kombu does it;
``endpoint_url`` says it in full. Options come from the URL's query or from
``TASKQ['BROKER_TRANSPORT_OPTIONS']`` (Celery's ``broker_transport_options``); the URL wins.
"""

from __future__ import annotations

import contextlib
import math
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..exceptions import BrokerConnectionError, BrokerError, ConfigurationError
from ..service_url import ParsedUrl, mask_text

INSTALL_HINT = "pip install 'django-taskq[sqs]'"
#: kombu's queue name rule: '.' becomes '-', other punctuation but '-' and '_' becomes '_'.
_NAME_TABLE = {ord(c): ord("_") for c in string.punctuation if c not in "-_."}
_NAME_TABLE[ord(".")] = ord("-")
#: SQS's limits: a visibility timeout up to 12 hours, a message delay up to 15 minutes, a long
#: poll up to 20 seconds, ten messages per receive or batch.
MAX_VISIBILITY = 43200
MAX_DELAY = 900
MAX_WAIT = 20
BATCH = 10
DEAD_LETTER_QUEUE = "taskq-dead"
#: What boto3 takes as a region name (letters, digits, inner dashes).
_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_WHOLE = {"visibility_timeout": (0, MAX_VISIBILITY), "wait_time_seconds": (0, MAX_WAIT)}
_NUMBERS = ("polling_interval", "connect_timeout", "poll_interval")
_TEXTS = ("region", "queue_name_prefix", "endpoint_url", "dead_letter_queue",
          "message_group_id")
_FLAGS = ("is_secure", "sqs_base64_encoding")
#: Options a URL query may hold; transport options may hold these, ``predefined_queues`` and
#: ``sqs-creation-attributes`` too (other keys there belong to other brokers and are ignored).
KNOWN = frozenset({*_WHOLE, *_NUMBERS, *_TEXTS, *_FLAGS})
#: Celery transport options for SQS that this broker does not offer.
UNSUPPORTED = {"sts_role_arn": "assume the role outside (boto3's chain: AWS_ROLE_ARN, a "
                               "profile with role_arn, an instance or task role)",
               "supports_fanout": "broadcast queues (SNS fan-out) are not offered",
               "predefined_exchanges": "broadcast queues (SNS fan-out) are not offered"}


@dataclass(frozen=True, slots=True)
class PredefinedQueue:
    """A queue that exists already (Celery's ``predefined_queues`` entry)."""

    url: str
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    #: The queue's region when not the broker's (kombu reads it per queue too).
    region: str | None = None


@dataclass(frozen=True, slots=True)
class SqsOptions:
    """What the URL and transport options say, checked, with defaults."""

    masked: str
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    visibility_timeout: int = 1800
    wait_time_seconds: int = 1
    polling_interval: float = 0.5
    connect_timeout: float = 5.0
    queue_name_prefix: str = ""
    dead_letter_queue: str = DEAD_LETTER_QUEUE
    message_group_id: str = "default"
    sqs_base64_encoding: bool = True
    predefined_queues: Mapping[str, PredefinedQueue] = field(default_factory=dict)
    creation_attributes: Mapping[str, str] = field(default_factory=dict)

    def queue_name(self, queue: str) -> str:
        """The SQS name of ``queue``: the prefix, then kombu's character rule (``.fifo`` kept)."""
        return entity_name(self.queue_name_prefix + queue)

    @property
    def dead_letter_name(self) -> str:
        return self.queue_name(self.dead_letter_queue)


def entity_name(name: str) -> str:
    """kombu's ``Channel.entity_name``: a legal SQS name, a ``.fifo`` suffix kept."""
    if name.endswith(".fifo"):
        return name[:-5].translate(_NAME_TABLE) + ".fifo"
    return name.translate(_NAME_TABLE)


def parse_options(url: ParsedUrl, transport: Mapping[str, Any], poll_interval: float) -> SqsOptions:
    """Check the URL and transport options of an ``sqs://`` broker.

    Raises:
        ConfigurationError: an unknown or invalid option.
    """
    def fail(problem: str) -> ConfigurationError:
        return ConfigurationError(f"BROKER_URL {url.masked!r}: {problem}")

    unknown = sorted(set(url.options) - KNOWN)
    if unknown:
        raise fail(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN))}.")
    for name, why in UNSUPPORTED.items():
        if transport.get(name):
            raise fail(f"transport option {name!r} is not supported: {why}.")
    given = {**{k: v for k, v in transport.items() if k in KNOWN}, **url.options}
    values: dict[str, Any] = {"masked": url.masked, "polling_interval": poll_interval}
    for name, value in given.items():
        key = "polling_interval" if name == "poll_interval" else name
        values[key] = _value(name, value, fail)
    values.update(_address(url, values.pop("is_secure", False)))
    values["predefined_queues"] = _predefined(transport.get("predefined_queues") or {}, fail)
    attributes = transport.get("sqs-creation-attributes") or {}
    if not isinstance(attributes, Mapping):
        raise fail("transport option 'sqs-creation-attributes' must be a dict of CreateQueue "
                   "attributes.")
    values["creation_attributes"] = {str(k): str(v) for k, v in attributes.items()}
    if not values.get("dead_letter_queue", DEAD_LETTER_QUEUE):
        raise fail("dead_letter_queue must be a queue name.")
    options = SqsOptions(**values)
    dead = options.dead_letter_queue
    if options.predefined_queues and not {dead, options.dead_letter_name} & set(
            options.predefined_queues):
        raise fail(f"predefined_queues must list the dead letter queue too: add {dead!r} "
                   "with its 'url' (or name another one with the dead_letter_queue option).")
    return options


def _value(name: str, raw: Any, fail: Any) -> Any:
    """One option's value, from URL text or a transport option's Python value."""
    if name in _FLAGS:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(raw).lower() in ("1", "true", "yes", "on")
        raise fail(f"{name} must be true or false, not {raw!r}.")
    if name in _TEXTS:
        return _text(name, raw, fail)
    try:
        number = float(raw)
    except (TypeError, ValueError):
        number = math.nan
    if name in _WHOLE:
        low, high = _WHOLE[name]
        if not (low <= number <= high and number == int(number)):
            raise fail(f"{name} must be a whole number of seconds from {low} to {high}, "
                       f"not {raw!r}.")
        return int(number)
    if not (number >= 0 if name == "polling_interval" else number > 0) or math.isinf(number):
        raise fail(f"{name} must be a positive number of seconds, not {raw!r}.")
    return number


def _text(name: str, raw: Any, fail: Any) -> str:
    if not isinstance(raw, str):
        raise fail(f"{name} must be text, not {raw!r}.")
    if name == "region" and raw and not _REGION.fullmatch(raw):
        raise fail(f"region must be an AWS region name such as 'eu-west-1', not {raw!r}.")
    return raw


def _address(url: ParsedUrl, secure: bool) -> dict[str, Any]:
    """Credentials and endpoint from ``sqs://key:secret@host:port``."""
    parts = urlsplit(url.original)
    found: dict[str, Any] = {}
    if parts.username:
        found["access_key_id"] = unquote(parts.username)
    if parts.password:
        found["secret_access_key"] = unquote(parts.password)
    if parts.hostname:
        port = f":{parts.port}" if parts.port else ""
        found["endpoint_url"] = f"{'https' if secure else 'http'}://{parts.hostname}{port}"
    return found


def _predefined(raw: Any, fail: Any) -> dict[str, PredefinedQueue]:
    if not isinstance(raw, Mapping):
        raise fail("transport option 'predefined_queues' must be a dict: queue name -> "
                   "{'url': ..., 'access_key_id': ..., 'secret_access_key': ...}.")
    queues = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str):
            raise fail(f"predefined_queues[{name!r}] must be a dict with the queue's 'url'.")
        if str(name).endswith(".fifo") != entry["url"].endswith(".fifo"):
            raise fail(f"predefined_queues[{name!r}]: a FIFO queue's name and URL both end "
                       "with .fifo.")
        region = entry.get("region") or None
        if region is not None:
            _text("region", region, fail)
        queues[str(name)] = PredefinedQueue(entry["url"], entry.get("access_key_id"),
                                            entry.get("secret_access_key"), region)
    return queues


def boto3_module() -> Any:
    """boto3, or a ConfigurationError that names the extra to install."""
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigurationError(f"The SQS broker needs boto3: {INSTALL_HINT}.") from exc
    return boto3


def make_client(options: SqsOptions, key: str | None = None, secret: str | None = None,
                region: str | None = None) -> Any:
    """A boto3 SQS client; every wait on it bounded, one retry on a failed connection."""
    boto3 = boto3_module()
    from botocore.config import Config  # type: ignore[import-untyped]

    session = boto3.session.Session(
        aws_access_key_id=key or options.access_key_id,
        aws_secret_access_key=secret or options.secret_access_key)
    region = region or options.region or session.region_name or "us-east-1"
    config = Config(connect_timeout=options.connect_timeout,
                    read_timeout=options.wait_time_seconds + options.connect_timeout + 5,
                    retries={"total_max_attempts": 2, "mode": "standard"})
    return session.client("sqs", region_name=region, endpoint_url=options.endpoint_url,
                          config=config)


def error_code(exc: BaseException) -> str:
    """The SQS error code of a ClientError (both spellings of a missing queue agree)."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    code = str(error.get("QueryErrorCode") or error.get("Code") or "")
    return "QueueDoesNotExist" if code.endswith("NonExistentQueue") else code


@contextlib.contextmanager
def translated(what: str, masked: str) -> Iterator[None]:
    """Re-raise boto3's failures as ours: unreachable → BrokerConnectionError (naming the masked
    URL); no credentials → ConfigurationError; a refusal → BrokerError with SQS's code."""
    from botocore import exceptions as aws  # type: ignore[import-untyped]

    try:
        yield
    except aws.InvalidRegionError as exc:  # from AWS_DEFAULT_REGION or ~/.aws
        raise ConfigurationError(f"BROKER_URL {masked!r}: {exc} Name an AWS region such as "
                                 "'eu-west-1' (the region transport option).") from exc
    except (aws.NoCredentialsError, aws.PartialCredentialsError) as exc:
        raise ConfigurationError(
            f"BROKER_URL {masked!r}: no AWS credentials ({exc}). Put them in the URL "
            "(sqs://KEY_ID:SECRET@, the secret URL-encoded) or where boto3 finds them "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role).") from exc
    except (aws.EndpointConnectionError, aws.ConnectionClosedError, aws.ConnectTimeoutError,
            aws.ReadTimeoutError, aws.HTTPClientError) as exc:
        raise BrokerConnectionError(
            f"SQS unreachable at {masked!r} ({what}): {type(exc).__name__}: "
            f"{mask_text(str(exc))}") from exc
    except aws.ClientError as exc:
        raise BrokerError(f"SQS refused {what} ({masked!r}): {error_code(exc)}: "
                          f"{mask_text(str(exc))}") from exc


__all__ = ["SqsOptions", "entity_name", "make_client", "parse_options", "translated"]
