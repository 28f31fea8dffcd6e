"""What a result store of another package needs, in one stable module.

Subclass :class:`ResultBackend`, take ``(url: ParsedUrl, **common)`` in the constructor, and
plug the class in with ``TASKQ['RESULT_BACKEND_SCHEMES']`` (docs/result-backends.md). The
helpers encode and decode what the store keeps: Celery's meta mapping (``encode_meta`` /
``decode_meta`` / ``result_meta``, the key/value layout the Redis and cache stores use), saved
groups and chord parts, or the payload as text for a text column (``payload_text``); and the
errors a store raises (ConfigurationError, ResultBackendError, ResultBackendConnectionError).
"""

from __future__ import annotations

from ..exceptions import (
    ConfigurationError,
    ResultBackendConnectionError,
    ResultBackendError,
    SerializationError,
)
from ..outcome import Outcome
from ..service_url import ParsedUrl
from .base import (
    OnInterval,
    OnMessage,
    ResultBackend,
    as_text,
    decompress_payload,
    encode_argument,
    payload_text,
    plain_arguments,
    wait_by_polling,
)
from .keyvalue import (
    GROUP_KEY_PREFIX,
    KEY_PREFIX,
    decode_group,
    decode_meta,
    decode_part,
    encode_group,
    encode_meta,
    encode_part,
    encode_pending,
    result_meta,
)
from .meta import PartResult, ResultMeta

__all__ = ["GROUP_KEY_PREFIX", "KEY_PREFIX", "ConfigurationError", "OnInterval", "OnMessage",
           "Outcome", "ParsedUrl", "PartResult", "ResultBackend", "ResultBackendConnectionError",
           "ResultBackendError", "ResultMeta", "SerializationError", "as_text", "decode_group",
           "decode_meta", "decode_part", "decompress_payload", "encode_argument", "encode_group",
           "encode_meta", "encode_part", "encode_pending", "payload_text", "plain_arguments",
           "result_meta", "wait_by_polling"]
