"""Test middleware: a tenant header set at enqueue and made current while the task runs."""

from __future__ import annotations

from contextvars import ContextVar

from django_taskq import Middleware

current_tenant: ContextVar[str | None] = ContextVar("current_tenant", default=None)
calls: list[str] = []


class Tenant(Middleware):
    def enqueue(self, envelopes, send):
        calls.append(f"enqueue {len(envelopes)}")
        send([envelope.with_headers(tenant=current_tenant.get()) for envelope in envelopes])

    def execute(self, task, request, run):
        token = current_tenant.set(request.headers.get("tenant"))
        try:
            calls.append(f"execute {task.name}")
            return run()
        finally:
            current_tenant.reset(token)


class Outer:
    """Not a subclass: any object with the hooks works; records the wrapping order."""

    def execute(self, task, request, run):
        calls.append("outer before")
        value = run()
        calls.append("outer after")
        return value


class Refuse(Middleware):
    def enqueue(self, envelopes, send):
        raise PermissionError("no sending on Sundays")
