"""A control store that cannot be reached never stops the worker loop or runs a limited task."""

from __future__ import annotations

from types import SimpleNamespace

from django_taskq.exceptions import BrokerConnectionError
from django_taskq.worker.ratelimits import STORE_DOWN_WAIT, RateGate
from django_taskq.worker.revocations import RevocationCache
from tests.testapp import feature_tasks as ft


class DownStore:
    def revocations(self):
        raise BrokerConnectionError("control store unreachable")

    def take(self, bucket, rate, burst=1):
        raise BrokerConnectionError("control store unreachable")


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_revocations_keep_the_last_known_set_when_the_store_is_down(caplog):
    store = SimpleNamespace(revocations=lambda: {"a": True})
    clock = Clock()
    cache = RevocationCache(lambda: current, 0.5, clock=clock)
    current = store
    assert cache.refresh()
    current = DownStore()
    clock.now += 1
    assert not cache.refresh()  # no exception out of the worker's step
    assert cache.is_revoked("a") and cache.to_terminate(["a", "b"]) == ["a"]
    assert "cannot read revocations" in caplog.text
    assert cache.time_left() > 0  # tried again next interval, not every step


def test_rate_limited_task_waits_when_the_store_is_down(caplog):
    job = SimpleNamespace(task_name=ft.limited.name,
                          request=SimpleNamespace(id="x", args=("p",), kwargs={}))
    gate = RateGate(DownStore, clock=Clock())
    assert gate.wait_for(job) == STORE_DOWN_WAIT
    assert "cannot check rate limit" in caplog.text
