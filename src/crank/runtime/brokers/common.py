"""Pieces every backend shares: ids, defaults, the error of a lost worker, and the
single-item operations of the protocol written once over the batch ones."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.runtime.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from crank.runtime.broker import Claim, PendingClaims, TaskRecord, TaskSpec

DEFAULT_RESULT_TTL_S = 86_400.0


def new_id() -> str:
    return uuid.uuid4().hex


def worker_lost_error(attempts: int) -> dict[str, Any]:
    return {
        "code": "WORKER_LOST",
        "message": f"the task was delivered {attempts} times and its worker never finished it "
        "(the worker process died or hung each time)",
        "type": "WorkerLost",
    }


@dataclass(frozen=True)
class BrokerOptions:
    """Tunables every backend accepts (as keyword arguments or URL query parameters)."""

    retry_base_s: float = 0.5
    retry_max_s: float = 60.0
    result_ttl_s: float = DEFAULT_RESULT_TTL_S

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(base_s=self.retry_base_s, max_s=self.retry_max_s)


@dataclass(frozen=True)
class Claimed:
    """:class:`~crank.runtime.broker.PendingClaims` that already arrived."""

    claims: list[Claim]

    def result(self) -> list[Claim]:
        return self.claims


class BatchBroker(ABC):
    """A backend implements the batch operations, one round trip each; the
    single-item operations of :class:`~crank.runtime.broker.Broker` are batches of one."""

    @abstractmethod
    def submit_many(self, specs: Sequence[TaskSpec]) -> list[TaskRecord]: ...

    @abstractmethod
    def ack_many(self, items: Sequence[tuple[Claim, Any]]) -> None: ...

    @abstractmethod
    def extend_many(self, claims: Sequence[Claim], visibility_timeout_s: float) -> list[bool]: ...

    @abstractmethod
    def ack_and_claim(
        self,
        items: Sequence[tuple[Claim, Any]],
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
        block_s: float = 0.0,
    ) -> list[Claim]: ...

    def begin_ack_and_claim(
        self,
        items: Sequence[tuple[Claim, Any]],
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
    ) -> PendingClaims:
        """In-process backends have nothing to overlap: the work is done before this returns."""
        return Claimed(
            self.ack_and_claim(
                items,
                consumer,
                capabilities=capabilities,
                limit=limit,
                visibility_timeout_s=visibility_timeout_s,
            )
        )

    def submit(self, spec: TaskSpec) -> TaskRecord:
        return self.submit_many([spec])[0]

    def ack(self, claim: Claim, result: Any) -> None:
        self.ack_many([(claim, result)])

    def extend(self, claim: Claim, visibility_timeout_s: float) -> bool:
        return self.extend_many([claim], visibility_timeout_s)[0]

    def claim(
        self,
        consumer: str,
        *,
        capabilities: Collection[str] | None = None,
        limit: int = 1,
        visibility_timeout_s: float = 30.0,
        block_s: float = 0.0,
    ) -> list[Claim]:
        return self.ack_and_claim(
            [],
            consumer,
            capabilities=capabilities,
            limit=limit,
            visibility_timeout_s=visibility_timeout_s,
            block_s=block_s,
        )
