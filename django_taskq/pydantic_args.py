"""Celery's ``pydantic=True`` tasks: arguments annotated with a pydantic model are validated
into that model before the task runs, and a model the task returns is dumped to plain data.

Messages carry JSON-like data, so callers pass dicts (``task.delay({"value": 1})``); the task
receives ``Model(value=1)``. ``pydantic_strict``, ``pydantic_context`` and
``pydantic_dump_kwargs`` are passed to ``model_validate`` and ``model_dump``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .options import TaskOptionError

M = TypeVar("M")


async def _dumped(returned: Any, base: type[Any], dump_kwargs: Mapping[str, Any]) -> Any:
    value = await returned
    return value.model_dump(**dump_kwargs) if isinstance(value, base) else value


def validating(task: Any, run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` wrapped to validate model arguments and dump a returned model.

    Raises:
        TaskOptionError: pydantic is not installed.
    """
    try:
        from pydantic import BaseModel
    except ImportError as exc:
        raise TaskOptionError(f"Task {task.name}: pydantic=True needs pydantic 2: "
                              "pip install 'pydantic>=2'.") from exc
    signature = inspect.signature(run)
    found = {name: _model_of(hint, BaseModel) for name, hint in _annotations(run).items()}
    models = {name: model for name, model in found.items() if model is not None}

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        options = task.options  # with TASK_ANNOTATIONS applied
        context = {**options.pydantic_context, "celery_task_name": task.name}
        for name, value in bound.arguments.items():
            model = models.get(name)
            if model is not None and value is not None and not isinstance(value, model):
                bound.arguments[name] = _validate(task, model, value, options, context)
        returned = run(*bound.args, **bound.kwargs)
        if inspect.iscoroutine(returned):  # an async def task: dump what it returns
            return _dumped(returned, BaseModel, options.pydantic_dump_kwargs)
        if isinstance(returned, BaseModel):
            return returned.model_dump(**options.pydantic_dump_kwargs)
        return returned

    return wrapper


def _validate(task: Any, model: Any, value: Any, options: Any, context: dict[str, Any]) -> Any:
    """``model.model_validate(value)``; for hidden arguments (sensitive.py) its error comes
    without the input values, which pydantic writes into the message (stored, logged, sent)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(value, strict=options.pydantic_strict, context=context)
    except ValidationError as exc:
        if not _hidden(task):
            raise
        raise _without_input(exc) from None


def _hidden(task: Any) -> bool:
    from .context import current_request
    from .sensitive import hidden

    request = current_request()
    headers = request.message_headers if request is not None else {}
    return bool(task.options.sensitive) or hidden(task.name, headers)


def _without_input(exc: Any) -> Exception:
    """``exc`` again, its inputs left out (a plain ValueError when pydantic cannot rebuild it)."""
    from pydantic import ValidationError

    errors = exc.errors(include_url=False, include_input=False)
    details: list[Any] = [{"type": e["type"], "loc": e["loc"], "input": None,
                           **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in errors]
    try:
        return ValidationError.from_exception_data(exc.title, details, hide_input=True)
    except Exception:  # noqa: BLE001 - a custom error type: the text alone, still without inputs
        return ValueError(f"{len(errors)} validation error(s) for {exc.title}: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


def _annotations(run: Callable[..., Any]) -> dict[str, Any]:
    function = inspect.unwrap(getattr(run, "__func__", run))
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - an unresolvable hint: use what is written
        return dict(getattr(function, "__annotations__", {}))


def _model_of(annotation: Any, base: type[M]) -> type[M] | None:
    """The model class of ``Model`` or ``Model | None`` / ``Optional[Model]``."""
    if isinstance(annotation, type) and issubclass(annotation, base):
        return annotation
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], base):
        return members[0]
    return None
