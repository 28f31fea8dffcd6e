"""Message signing: an HMAC-SHA256 over what decides a run, added as the last step before the broker.

Celery's ``auth`` serializer signs the body only, so a message whose ``task`` header was changed
still runs (CELERY.md §3.20). Here the MAC covers, in one canonical form:

- every header except those starting with ``x-`` (a broker's bookkeeping: ``x-taskq-attempts``,
  ``x-death``, ``x-delivery-count`` …, and the signature itself), as JSON with sorted keys, fixed
  separators and ASCII escapes, so any broker's round trip (Redis JSON, a database JSON column,
  an AMQP header table) gives the same bytes;
- ``content_type`` and ``content_encoding``;
- the SHA-256 of the body as sent (after compression);
- the signing time (whole Unix seconds) and the id of the key.

The result travels in one header, ``x-taskq-signature: v1:<key id>:<unix time>:<hex mac>``. The
key id is the head of a hash of the key (never the key), so verification picks the key without
trying each. Retries drop the ``x-taskq-`` headers and are signed again when sent.

No I/O here: ``sign``/``verify`` take the keys and the time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .exceptions import MessageError, SignatureError
from .message import Envelope

#: The header that carries the signature (``x-``: never part of what is signed).
SIGNATURE_HEADER = "x-taskq-signature"
VERSION = "v1"
#: Seconds a signing time may lie ahead of the verifier's clock (clocks of hosts drift).
MAX_CLOCK_SKEW = 60.0
#: How every dead-letter reason of a message refused for its signature starts.
REFUSED = "signature refused"

__all__ = ["MAX_CLOCK_SKEW", "REFUSED", "SIGNATURE_HEADER", "is_refusal", "key_id", "sign",
           "verify"]


@functools.lru_cache(maxsize=64)
def key_id(key: bytes) -> str:
    """A short public name for ``key``: 8 hex digits of a hash of it (the key stays secret)."""
    return hashlib.sha256(b"django_taskq signing key id\0" + key).hexdigest()[:8]


@functools.lru_cache(maxsize=16)
def _keys_by_id(keys: tuple[bytes, ...]) -> dict[str, bytes]:
    return {key_id(key): key for key in reversed(keys)}  # the first key wins a clash


def _plain(value: Any) -> Any:
    """Refuse values JSON cannot hold (an AMQP timestamp, bytes, a Decimal): written as text
    they would sign the same as a string header, one value standing for another."""
    raise TypeError(f"a header value of type {type(value).__name__} cannot be signed")


def canonical(envelope: Envelope, kid: str, signed_at: int) -> bytes:
    """The bytes the MAC covers (see the module docstring).

    Raises:
        MessageError: a header value JSON cannot hold.
    """
    body = envelope.body if isinstance(envelope.body, bytes) else bytes(envelope.body)
    try:
        headers = {key: value for key, value in envelope.headers.items()
                   if not key.startswith("x-")}
        return json.dumps(
            [VERSION, kid, signed_at, envelope.content_type, envelope.content_encoding,
             hashlib.sha256(body).hexdigest(), headers],
            sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
            default=_plain).encode("ascii")
    except (AttributeError, TypeError, ValueError, RecursionError) as exc:  # JSON cannot hold it
        raise MessageError(f"The message's headers cannot be signed: {exc}.") from exc


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign(envelope: Envelope, keys: Sequence[bytes], now: float) -> Envelope:
    """``envelope`` with its signature header, made with ``keys[0]`` at time ``now``.

    Raises:
        MessageError: a header value JSON cannot hold.
    """
    key = keys[0]
    kid, signed_at = key_id(key), int(now)
    mac = _mac(key, canonical(envelope, kid, signed_at))
    return envelope.with_headers(**{SIGNATURE_HEADER: f"{VERSION}:{kid}:{signed_at}:{mac}"})


#: ASCII only: ``str.isdigit`` passes "²" (then ``int`` raises) and ``compare_digest`` raises
#: on non-ASCII text, errors that would escape the worker's check and stop it.
_SIGNATURE = re.compile(VERSION + r":([0-9a-f]{8}):([0-9]{1,12}):([0-9a-f]{64})", re.ASCII)


def _parse(value: Any) -> tuple[str, int, str]:
    found = _SIGNATURE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise SignatureError("bad signature", f"the {SIGNATURE_HEADER} header is not "
                             f"'{VERSION}:<key id>:<unix time>:<hex mac>'")
    return found[1], int(found[2]), found[3]


def verify(envelope: Envelope, keys: Sequence[bytes], max_age: float | None, now: float) -> None:
    """Check ``envelope``'s signature against ``keys`` at time ``now``.

    ``max_age``: seconds a message stays valid, counted from the later of its signing time and
    its ``eta`` header (a countdown does not age a message); None: any age.

    Raises:
        SignatureError: its ``reason`` is "unsigned", "unknown key", "bad signature" (forged or
            changed after signing, header or body), "expired" or "signed in the future".
    """
    if not isinstance(envelope.headers, dict):
        raise SignatureError("unsigned", "the message's headers are not a mapping")
    value = envelope.headers.get(SIGNATURE_HEADER)
    if value is None:
        raise SignatureError("unsigned", f"the message has no {SIGNATURE_HEADER} header; with "
                             "SIGNING_KEYS set only messages signed with one of its keys run "
                             "(Celery clients and producers without the keys send unsigned ones)")
    kid, signed_at, mac = _parse(value)
    key = _keys_by_id(tuple(keys)).get(kid)
    if key is None:
        raise SignatureError("unknown key", f"signed with key id {kid!r}, which no key in "
                             "SIGNING_KEYS has (a key rotated away, or a forged signature); keep "
                             "an old key in the list, after the new one, until its messages are "
                             "drained")
    try:
        expected = _mac(key, canonical(envelope, kid, signed_at))
    except MessageError as exc:
        raise SignatureError("bad signature", str(exc)) from exc
    if not hmac.compare_digest(expected, mac):
        raise SignatureError("bad signature", "the signature does not match the message's "
                             "headers and body: changed after it was signed, or forged")
    if signed_at > now + MAX_CLOCK_SKEW:
        raise SignatureError("signed in the future", f"signed {signed_at - now:.0f}s ahead of "
                             f"this clock (more than {MAX_CLOCK_SKEW:g}s of skew): check the "
                             "clocks of producer and worker")
    start = max(signed_at, _eta(envelope.headers.get("eta")))
    if max_age is not None and now - start > max_age:
        raise SignatureError("expired", f"signed {now - start:.0f}s ago (counted from its eta "
                             f"when later), more than SIGNING_MAX_AGE ({max_age:g}s): a replay, "
                             "or a message that waited too long; send the task again")


def _eta(value: Any) -> float:
    """The ``eta`` header in Unix seconds (0 when absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return 0.0
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def is_refusal(reason: str | None) -> bool:
    """Whether a dead letter's ``reason`` says its message was refused for its signature."""
    return bool(reason) and str(reason).startswith(REFUSED)
