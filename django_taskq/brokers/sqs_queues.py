"""SQS queues by name: clients, queue URLs (created on first use, as kombu does), and the batch
calls the broker makes (send, delete, change visibility, receive, attributes)."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import BrokerError, ConfigurationError, MessageTooLarge
from ..message import Envelope
from .sqs_options import BATCH, MAX_DELAY, MAX_VISIBILITY, SqsOptions, error_code, make_client
from .sqs_wire import to_body

#: SendMessageBatch takes at most 256 KiB in all (AWS raised it to 1 MiB; not every server did).
MAX_BATCH_BYTES = 250_000
#: SQS's largest message (AWS's limit since 2025; a queue's MaximumMessageSize may be lower).
MAX_MESSAGE_BYTES = 1_048_576
#: Dead letters are kept as long as SQS allows (14 days; the default is 4).
DEAD_LETTER_RETENTION = "1209600"
#: Receipt handles that no longer hold a message: the lease is gone, nothing to do.
_GONE = ("ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight")
#: SQS's words when a visibility timeout would keep a message in flight over 12 hours.
_OVER_12_HOURS = "beyond the limit"
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handle:
    """Where a received message is and how to settle it: the delivery tag."""

    url: str
    receipt: str
    client_key: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: its envelope, the headers to send with it, a delay in seconds."""

    envelope: Envelope
    headers: dict[str, Any]
    delay: int = 0
    #: A copy of a message already sent once: it must get a fresh FIFO deduplication id.
    copy: bool = False


def delay_seconds(due_ms: int, now_ms: int) -> int:
    """Whole seconds (rounded up: never early) until ``due_ms``, at most SQS's 900."""
    return min(MAX_DELAY, max(0, math.ceil((due_ms - now_ms) / 1000)))


def visibility(seconds: float) -> int:
    """A lease as a visibility timeout: whole seconds, rounded up, at most 12 hours."""
    return min(MAX_VISIBILITY, max(1, math.ceil(seconds)))


class Queues:
    """The queues of one broker: lazily built clients, a cache of queue URLs."""

    def __init__(self, options: SqsOptions) -> None:
        self.options = options
        self._clients: dict[str, Any] = {}
        self._urls: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def client(self, key: str = "") -> Any:
        """The client for ``key``: '' is the URL's credentials, else a predefined queue's."""
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                entry = self.options.predefined_queues.get(key)
                client = self._clients[key] = (
                    make_client(self.options, entry.access_key_id, entry.secret_access_key,
                                entry.region)
                    if entry is not None else make_client(self.options))
            return client

    def _key(self, name: str) -> str:
        entry = self.options.predefined_queues.get(name)
        return name if entry is not None and (entry.access_key_id or entry.region) else ""

    def locate(self, queue: str, *, create: bool = True,
               dead: bool = False) -> tuple[str, str] | None:
        """(queue URL, client key) of ``queue`` (our name; ``dead``: the dead letter queue);
        created when missing unless ``create`` is false (then None)."""
        name = self.options.dead_letter_name if dead else self.options.queue_name(queue)
        predefined = self.options.predefined_queues
        if predefined:
            ours = self.options.dead_letter_queue if dead else queue
            found = name if name in predefined else ours if ours in predefined else None
            if found is None and not create:  # counting, purging: a queue we do not have
                return None
            if found is None:
                raise ConfigurationError(
                    f"BROKER_URL {self.options.masked!r}: queue {name!r} is not in the "
                    "transport option predefined_queues; add it (with its 'url').")
            return predefined[found].url, self._key(found)
        url = self._urls.get(name)
        if url is None:
            url = self._lookup(name, create, dead)
            if url is None:
                return None
            self._urls[name] = url
        return url, ""

    def _lookup(self, name: str, create: bool, dead: bool) -> str | None:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        client = self.client()
        try:
            return str(client.get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as exc:
            if error_code(exc) != "QueueDoesNotExist":
                raise
        if not create:
            return None
        attributes = {"VisibilityTimeout": str(self.options.visibility_timeout),
                      **self.options.creation_attributes}
        if name.endswith(".fifo"):
            attributes["FifoQueue"] = "true"
        if dead:
            attributes["MessageRetentionPeriod"] = DEAD_LETTER_RETENTION
        return str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

    def forget(self, exc: BaseException, url: str) -> None:
        """Drop a cached URL whose queue was deleted, so the next call creates it again."""
        if error_code(exc) == "QueueDoesNotExist":
            self._urls = {name: known for name, known in self._urls.items() if known != url}

    # -- batch calls ---------------------------------------------------------------------------

    def send(self, queue: str, outgoing: Sequence[Outgoing], *, dead: bool = False) -> None:
        """Send ``outgoing`` to ``queue`` in batches of ten (or 250 KB); all or an error."""
        if not outgoing:
            return
        located = self.locate(queue, dead=dead)
        assert located is not None
        url, key = located
        fifo = url.endswith(".fifo")
        entries = [self._entry(str(i), item, fifo) for i, item in enumerate(outgoing)]
        limit = self._max_size(url, key)
        for item, entry in zip(outgoing, entries, strict=True):  # all or nothing: checked first
            if len(entry["MessageBody"]) > limit:
                raise _too_large(item.envelope, len(entry["MessageBody"]), limit)
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            length = len(entry["MessageBody"])
            if batch and (len(batch) == BATCH or size + length > MAX_BATCH_BYTES):
                self._send_batch(url, key, batch)
                batch, size = [], 0
            batch.append(entry)
            size += length
        self._send_batch(url, key, batch)

    def _max_size(self, url: str, key: str) -> int:
        """The queue's MaximumMessageSize (read once; SQS's largest when it cannot be read)."""
        from botocore.exceptions import ClientError

        size = self._sizes.get(url)
        if size is None:
            try:
                size = int(self._call(url, key, "get_queue_attributes",
                                      AttributeNames=["MaximumMessageSize"])["Attributes"]
                           .get("MaximumMessageSize") or MAX_MESSAGE_BYTES)
            except (ClientError, KeyError, ValueError):  # no permission: SQS will say
                size = MAX_MESSAGE_BYTES
            self._sizes[url] = size
        return size

    def _entry(self, entry_id: str, item: Outgoing, fifo: bool) -> dict[str, Any]:
        envelope = item.envelope
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": to_body(
            envelope, item.headers, encode=self.options.sqs_base64_encoding)}
        if fifo:  # no per-message delay on a FIFO queue: a due header says when (sqs.py)
            props, headers = envelope.properties, envelope.headers
            entry["MessageGroupId"] = str(props.get("MessageGroupId")
                                          or headers.get("MessageGroupId")
                                          or self.options.message_group_id)
            # A copy or a retry is a new sending: the original's id would have SQS drop it.
            given = None if item.copy or headers.get("retries") else (
                props.get("MessageDeduplicationId") or headers.get("MessageDeduplicationId"))
            entry["MessageDeduplicationId"] = str(given or uuid.uuid4())
        elif item.delay:
            entry["DelaySeconds"] = item.delay
        return entry

    def _send_batch(self, url: str, key: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        reply = self._call(url, key, "send_message_batch", Entries=entries)
        failed = reply.get("Failed") or []
        if failed:
            first = failed[0]
            raise BrokerError(f"SQS refused {len(failed)} of {len(entries)} message(s): "
                              f"{first.get('Code')}: {first.get('Message')}")

    def delete(self, handles: Sequence[Handle]) -> None:
        """Delete the messages of ``handles``; ones whose receipt is stale are left alone."""
        self._settle_all(handles, "delete_message_batch", {})

    def change_visibility(self, handles: Sequence[Handle], seconds: int) -> None:
        """Hide the messages of ``handles`` for ``seconds`` from now (0: visible again)."""
        self._settle_all(handles, "change_message_visibility_batch",
                         {"VisibilityTimeout": seconds})

    def _settle_all(self, handles: Sequence[Handle], method: str, extra: dict[str, Any]) -> None:
        """Every batch is tried (one queue's failure must not leave the others' leases to run
        out); the first failure is raised at the end."""
        failure: Exception | None = None
        for (url, key), receipts in _grouped(handles).items():
            for start in range(0, len(receipts), BATCH):
                entries = [{"Id": str(i), "ReceiptHandle": r, **extra}
                           for i, r in enumerate(receipts[start:start + BATCH])]
                try:
                    self._settle(url, key, method, entries)
                except Exception as exc:  # noqa: BLE001 - raised below, after the others
                    failure = failure or exc
        if failure is not None:
            raise failure

    def _settle(self, url: str, key: str, method: str, entries: list[dict[str, Any]]) -> None:
        reply = self._call_batch(url, key, method, entries)
        failed = reply.get("Failed") or []
        over = [f for f in failed if _OVER_12_HOURS in str(f.get("Message"))]
        if over:
            logger.warning(
                "SQS refused to extend the lease of %d message(s) (%s): SQS keeps a message in "
                "flight 12 hours at most from its sending or receive; it will be handed out "
                "again while its task runs. Split such work.", len(over), over[0].get("Message"))
        failed = [f for f in failed
                  if str(f.get("Code")).rsplit(".", 1)[-1] not in _GONE and f not in over]
        if failed:
            raise BrokerError(f"SQS refused {method}: {failed[0].get('Code')}: "
                              f"{failed[0].get('Message')}")

    def _call_batch(self, url: str, key: str, method: str,
                    entries: list[dict[str, Any]]) -> Any:
        """A batch call; when the server refuses the whole batch for one entry's value (moto
        does, for a lease past 12 hours), each entry on its own, so the others still settle."""
        from botocore.exceptions import ClientError

        try:
            return self._call(url, key, method, Entries=entries)
        except ClientError as exc:
            if error_code(exc) != "InvalidParameterValue":
                raise
            if len(entries) == 1:
                return {"Failed": [_refused(entries[0], exc)]}
        failed = []
        for entry in entries:
            try:
                self._call(url, key, method, Entries=[entry])
            except ClientError as exc:
                if error_code(exc) != "InvalidParameterValue":
                    raise
                failed.append(_refused(entry, exc))
        return {"Failed": failed}

    def receive(self, url: str, key: str, count: int, hide: int, wait: int) -> list[Any]:
        reply = self._call(url, key, "receive_message", MaxNumberOfMessages=min(BATCH, count),
                           VisibilityTimeout=hide, WaitTimeSeconds=wait,
                           MessageSystemAttributeNames=["ApproximateReceiveCount",
                                                        "SentTimestamp"])
        return list(reply.get("Messages") or [])

    def counts(self, url: str, key: str) -> tuple[int, int, int]:
        """(visible, delayed, in flight) of a queue: SQS's approximate numbers."""
        attributes = self._call(url, key, "get_queue_attributes", AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesDelayed"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def _call(self, url: str, key: str, method: str, **arguments: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client(key), method)(QueueUrl=url, **arguments)
        except ClientError as exc:
            self.forget(exc, url)
            raise

    def call(self, url: str, key: str, method: str, **arguments: Any) -> Any:
        """Any other SQS call on one queue (``purge_queue``...)."""
        return self._call(url, key, method, **arguments)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()


def _refused(entry: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    return {"Id": entry["Id"], "Code": "InvalidParameterValue", "Message": str(exc)}


def _too_large(envelope: Envelope, size: int, limit: int) -> MessageTooLarge:
    return MessageTooLarge(
        f"The message of task {envelope.task_name!r} (id {envelope.message_id}) is {size} "
        f"bytes as an SQS message (kombu's layout: about 1.8 times its {len(envelope.body)}-byte "
        f"body), over the queue's MaximumMessageSize of {limit} bytes (SQS's largest is "
        f"{MAX_MESSAGE_BYTES}); nothing was sent. Pass a reference to the data instead of the "
        f"data; TASKQ['MESSAGE_MAX_BYTES'] = {limit * 5 // 9} refuses such messages when they "
        "are made.")


def _grouped(handles: Sequence[Handle]) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for handle in handles:
        grouped.setdefault((handle.url, handle.client_key), []).append(handle.receipt)
    return grouped
