"""What a pool's ``collect()`` yields for a job: its Outcome, LOST or TERMINATED."""

from __future__ import annotations

from typing import Final

from ..outcome import Outcome


class _Terminated:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TERMINATED"


LOST = None  # collect() yields (key, LOST) for a job whose process died
#: collect() yields (key, TERMINATED) for a job stopped by ``pool.kill(key)``.
TERMINATED: Final = _Terminated()

Finished = tuple[int, "Outcome | _Terminated | None"]
