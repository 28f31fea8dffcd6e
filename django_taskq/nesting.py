"""The nesting limit (JSON_MAX_DEPTH) of decoded data, checked without recursion.

JSON is scanned before it is parsed, at C speed: a deep document is never handed to the
parser. YAML and msgpack are checked once decoded, by an iterative walk.
"""

from __future__ import annotations

import itertools
from typing import Any

from .exceptions import SerializationError

#: Everything but quotes and brackets (deleted), and openers/closers made one kind.
_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
#: Rounds of removing innermost pairs before the running depth is summed instead.
_ROUNDS = 8
#: A bracket's step in depth, by byte value.
_STEP = [1 if b == ord("[") else -1 for b in range(256)]


def too_deep(limit: int) -> SerializationError:
    """The error of data nested deeper than ``limit``, naming the setting."""
    return SerializationError(
        f"Refused: nested deeper than JSON_MAX_DEPTH ({limit} levels of lists and objects); "
        "raise TASKQ['JSON_MAX_DEPTH'] if such data is expected.")


def check_json(data: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` before parsing it, at C speed, no recursion.

    Fewer brackets than the limit cannot nest deeper (two counts). Otherwise brackets inside
    strings are set aside (escapes removed, then quote pairs: a bracket is in a string when an
    odd number of quotes precede it) and the innermost pairs are removed, one level a round;
    data still nested after a few rounds has its running depth summed. Invalid JSON is left to
    the parser.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = data.translate(None, _NOT_MARKS).replace(b'""', b"")  # strings without brackets
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])
    nest = marks.translate(_ONE_KIND)
    if b"[" * (limit + 1) in nest:  # the plain attack, found at once
        raise too_deep(limit)
    rounds = min(limit, _ROUNDS)
    for _ in range(rounds):
        if not nest:
            return
        nest = nest.replace(b"[]", b"")
    if not nest:
        return
    if rounds == limit:
        deeper = b"[]" in nest
    else:  # deep data (or an attack): the running depth of what is left, in one sweep
        left = limit - rounds
        deeper = b"[" * (left + 1) in nest or max(
            itertools.accumulate(map(_STEP.__getitem__, nest))) > left
    if deeper:
        raise too_deep(limit)


def check_value(value: Any, limit: int) -> None:
    """Refuse a decoded value whose lists and mappings nest deeper than ``limit``.

    A container met again no deeper than before is not walked again: YAML's aliases share one
    list many times ("billion laughs"), which a plain walk would visit 10**9 times."""
    if not isinstance(value, (list, tuple, dict)):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest: dict[int, int] = {}
    while stack:
        item, depth = stack.pop()
        if deepest.get(id(item), 0) >= depth:
            continue
        deepest[id(item)] = depth
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            raise too_deep(limit)
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (list, tuple, dict)))
