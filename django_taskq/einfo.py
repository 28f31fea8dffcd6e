"""ExceptionInfo: a failure as Celery's handlers and signals receive it."""

from __future__ import annotations

import traceback as traceback_module
from types import TracebackType


class ExceptionInfo:
    """The exception, its type and its formatted traceback (``str()`` gives the traceback),
    as Celery passes ``einfo`` to ``on_failure``/``on_retry`` and the failure signals."""

    __slots__ = ("exception", "type", "tb", "traceback", "internal")

    def __init__(self, exc: BaseException, *, internal: bool = False) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb: TracebackType | None = exc.__traceback__
        self.traceback = "".join(traceback_module.format_exception(exc))
        self.internal = internal

    @property
    def exc_info(self) -> tuple[type[BaseException], BaseException, TracebackType | None]:
        """``(type, exception, traceback)``, as ``sys.exc_info()`` gives it."""
        return self.type, self.exception, self.tb

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"
