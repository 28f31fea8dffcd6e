"""An rpc:// result backend whose stored outcomes come back to itself (the contract suite's
"rpc" store): outcomes without a ``reply_to`` are sent to this process's own reply queue, as
a worker sends a result to the process that sent the task."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from django_taskq.brokers.amqp_options import parse_options
from django_taskq.outcome import Outcome
from django_taskq.results.rpc import RpcResultBackend
from django_taskq.service_url import parse


class LoopbackRpcBackend(RpcResultBackend):
    """rpc:// where this process is both the caller and the worker."""

    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        address = self.reply_address()
        super().store_many([o if o.reply_to else dataclasses.replace(o, reply_to=address)
                            for o in outcomes])


def loopback_backend(amqp_url: str, **options: object) -> LoopbackRpcBackend:
    """A loopback rpc:// backend on the RabbitMQ at ``amqp_url``."""
    return LoopbackRpcBackend(parse_options(parse(amqp_url, setting="BROKER_URL")),
                              **options)  # type: ignore[arg-type]
