"""The typing regression check: mypy (scripts/test.sh, main leg) checks this file; nothing runs it.

Correct calls carry no ignore; each wrong call carries ``# type: ignore[<code>]`` for the error
mypy must report. With ``warn_unused_ignores`` (mypy strict), an ignore that no longer silences
an error is itself an error: if the decorators' typing regresses (a task's arguments become
``...``, a ``bind=True`` task keeps its ``self``), mypy stops flagging a wrong call and fails.
``assert_type`` pins the inferred types. pytest does not collect it (not a ``test_*.py`` file).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from django_taskq import AsyncResult, Celery, Task, send_task, shared_task, task
from django_taskq.result import EagerResult

app = Celery("typing_check")


# -- @task ---------------------------------------------------------------------------------

@task
def add(x: int, y: int) -> int:
    return x + y


typed_add: Task[[int, int], int] = add
assert_type(add(1, 2), int)
assert_type(add.delay(1, 2), AsyncResult)
add.delay(1, y=2)
add.delay_on_commit(1, 2)
add.apply_async((1, 2), countdown=5, queue="q")  # apply_async takes Celery's untyped tuple
add.delay("x", 2)  # type: ignore[arg-type]
add.delay(1)  # type: ignore[call-arg]
add.delay(1, 2, 3)  # type: ignore[call-arg]
add.delay(1, z=2)  # type: ignore[call-arg]
add("x", 2)  # type: ignore[arg-type]
add.delay_on_commit(1, "2")  # type: ignore[arg-type]
wrong_return: str = add(1, 2)  # type: ignore[assignment]


# -- @shared_task ----------------------------------------------------------------------------

@shared_task
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"Hello {name}{punctuation}"


greet.delay("Ada")
greet.delay("Ada", punctuation="?")
greet.delay(1)  # type: ignore[arg-type]
greet.delay("Ada", punctuation=1)  # type: ignore[arg-type]


@shared_task()
def empty_parentheses(x: int) -> None:
    pass


empty_parentheses.delay(1)
empty_parentheses.delay("1")  # type: ignore[arg-type]


# -- @task(bind=True): self is the task, not an argument ---------------------------------------

@task(bind=True)
def bound(self: Task[Any, Any], x: int) -> str:
    self.retry(countdown=1, throw=False)
    return str(x) + self.name


typed_bound: Task[[int], str] = bound
assert_type(bound(1), str)
bound.delay(1)
bound.delay("1")  # type: ignore[arg-type]
bound.delay(1, 2)  # type: ignore[call-arg]  # with self kept, this would fit


@shared_task(bind=True, max_retries=5)
def bound_untyped_self(self, x: int) -> int:  # type: ignore[no-untyped-def]  # self untyped
    return x


bound_untyped_self.delay(1)
bound_untyped_self.delay(None)  # type: ignore[arg-type]


# -- @task with options (bind absent or False) -----------------------------------------------

@task(name="typing.send_mail", queue="mail", max_retries=3, rate_limit="10/m")
def send_mail(to: str, subject: str = "") -> bool:
    return bool(to)


typed_send_mail: Task[[str, str], bool] = send_mail
send_mail.delay("a@example.com")
send_mail.delay("a@example.com", subject="hi")
send_mail.delay(["a@example.com"])  # type: ignore[arg-type]


@task(bind=False, queue="q")
def unbound(x: float) -> float:
    return x


unbound.delay(1.5)
unbound.delay("1.5")  # type: ignore[arg-type]


def bind_unknown(flag: bool) -> None:
    """A bind= only known at run time: arguments unchecked, the return type kept."""
    loose = task(bind=flag)(lambda *args: 1)
    assert_type(loose(1, "x"), int)


# -- @app.task (the Celery-style app object) ------------------------------------------------

@app.task
def app_plain(x: int) -> int:
    return x


@app.task(bind=True, acks_late=True)
def app_bound(self: Task[Any, Any], x: int, y: str = "") -> list[str]:
    return [y] * x


typed_app_plain: Task[[int], int] = app_plain
typed_app_bound: Task[[int, str], list[str]] = app_bound
app_plain.delay(1)
app_bound.delay(1, y="a")
app_plain.delay("1")  # type: ignore[arg-type]
app_bound.delay("1")  # type: ignore[arg-type]
app_bound.delay(app_bound, 1)  # type: ignore[arg-type]


@app.task(queue="q")
def app_options(x: int) -> None:
    pass


app_options.delay(1)
app_options.delay()  # type: ignore[call-arg]


class AppBase(Task[Any, Any]):  # mypy cannot take Celery's ``class AppBase(app.Task)``
    """A base class for ``base=``."""


@app.task(base=AppBase)
def app_based(x: int) -> int:
    return x


app_based.delay(1)
app_based.delay("1")  # type: ignore[arg-type]


# -- a Task subclass with run() ---------------------------------------------------------------

class Multiply(Task[[int, int], int]):
    name = "typing.multiply"

    def run(self, x: int, y: int) -> int:
        return x * y


multiply = Multiply()
assert_type(multiply(2, 3), int)
multiply.delay(2, 3)
multiply.delay(2, "3")  # type: ignore[arg-type]
app.register_task(multiply).delay(2, 3)  # registered under its name, still typed loosely


# -- async def tasks ---------------------------------------------------------------------------

@task
async def fetch(url: str, tries: int = 1) -> int:
    return len(url) * tries


@task(bind=True)
async def fetch_bound(self: Task[Any, Any], url: str) -> str:
    return url


assert_type(fetch.delay("https://example.com"), AsyncResult)
fetch.delay("https://example.com", tries=2)
pending = assert_type(fetch("u"), Coroutine[Any, Any, int])  # a direct call: the coroutine
pending.close()
fetch.delay(1)  # type: ignore[arg-type]
fetch_bound.delay("u")
fetch_bound.delay("u", 2)  # type: ignore[call-arg]


# -- results and sending by name --------------------------------------------------------------

result = add.delay(1, 2)
assert_type(result.get(timeout=10), Any)  # the value crossed a serializer: not typed
assert_type(result.id, str)
assert_type(add.apply(), EagerResult)
assert_type(send_task("typing.send_mail", args=("a@example.com",)), AsyncResult)
assert_type(app.send_task("typing.send_mail", kwargs={"to": "a@example.com"}), AsyncResult)
assert_type(AsyncResult(result.id).state, str)
send_task(add)  # type: ignore[arg-type]

