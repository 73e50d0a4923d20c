"""The autoscaling policy: a pure function from configuration and metrics to a decision.

It follows the deployment-patterns contract: the pool stays within
``[min_workers, max_workers]``, scales on queue depth, and rebalances per-capability
weights towards the capabilities that carry the queue — never to zero (no
capability is starved) and never by more than ``max_weight_change`` (50 %) of
its previous value in one step. Nothing here does I/O or reads a clock, so the
supervisor, ``crank status`` and the property tests all get the same answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

DecisionType = Literal["scale_up", "scale_down", "rebalance", "maintain"]

#: Weight changes smaller than this are noise; they are not reported or applied.
WEIGHT_EPSILON = 0.01


@dataclass(frozen=True)
class ScalingConfig:
    """The ``worker_pool`` section of the deployment configuration, plus weight limits."""

    min_workers: int = 1
    max_workers: int = 4
    #: busy/total above which the pool grows even if the queue is short.
    scale_up_threshold: float = 0.8
    #: busy/total below which an almost empty queue lets the pool shrink.
    scale_down_threshold: float = 0.2
    target_queue_per_worker: int = 10
    #: the smallest weight any capability keeps (its floor against starvation).
    min_weight: float = 0.05
    #: the largest relative change of one weight in one step (0.5 = 50 %).
    max_weight_change: float = 0.5

    def __post_init__(self) -> None:
        if self.min_workers < 0 or self.max_workers < 1 or self.min_workers > self.max_workers:
            raise ValueError(
                f"scaling bounds are inconsistent: min_workers={self.min_workers}, "
                f"max_workers={self.max_workers} (need 0 <= min <= max, max >= 1)"
            )
        if self.target_queue_per_worker < 1:
            raise ValueError("target_queue_per_worker must be at least 1")
        if not 0.0 < self.min_weight <= 1.0:
            raise ValueError("min_weight must be in (0, 1]")
        if not 0.0 < self.max_weight_change <= 1.0:
            raise ValueError("max_weight_change must be in (0, 1]")


@dataclass(frozen=True)
class RuntimeMetrics:
    """What the supervisor measured in the last interval."""

    queue_depth: Mapping[str, int]
    active_workers: int
    idle_workers: int
    #: worker processes that crashed lately (the supervisor counts a window of minutes).
    failed_workers: int = 0
    #: current weight per capability (relative share of the pool's attention, in (0, 1]).
    weights: Mapping[str, float] = field(default_factory=dict)
    #: tasks waiting that no process here can take (their worker failed or is not
    #: ready, or nobody here declares their capability), by capability: not in
    #: ``queue_depth``, named in the decision's reason.
    left_out: Mapping[str, int] = field(default_factory=dict)

    @property
    def current_workers(self) -> int:
        return max(0, self.active_workers) + max(0, self.idle_workers)

    @property
    def total_pending(self) -> int:
        return sum(max(0, d) for d in self.queue_depth.values())


@dataclass(frozen=True)
class WeightAdjustment:
    previous_weight: float
    new_weight: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "previous_weight": round(self.previous_weight, 6),
            "new_weight": round(self.new_weight, 6),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ScalingDecision:
    timestamp: dt.datetime
    decision_type: DecisionType
    current_workers: int
    target_workers: int
    agent_weight_adjustments: Mapping[str, WeightAdjustment]
    reason: str

    def new_weights(self, previous: Mapping[str, float]) -> dict[str, float]:
        """``previous`` with this decision's adjustments applied."""
        weights = dict(previous)
        for cap, adj in self.agent_weight_adjustments.items():
            weights[cap] = adj.new_weight
        return weights

    def as_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp.isoformat(),
            "decision_type": self.decision_type,
            "current_workers": self.current_workers,
            "target_workers": self.target_workers,
            "agent_weight_adjustments": {
                cap: adj.as_dict() for cap, adj in sorted(self.agent_weight_adjustments.items())
            },
            "reason": self.reason,
        }


def bottleneck(queue_depth: Mapping[str, int]) -> str | None:
    """The capability with the deepest queue (ties broken by name), None when all are empty."""
    deepest = max((d for d in queue_depth.values()), default=0)
    if deepest <= 0:
        return None
    return min(cap for cap, d in queue_depth.items() if d == deepest)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def target_workers(config: ScalingConfig, metrics: RuntimeMetrics) -> tuple[int, str]:
    """The pool size for this step and why."""
    current = metrics.current_workers
    pending = metrics.total_pending
    lo, hi = config.min_workers, config.max_workers
    busy = max(0, metrics.active_workers)
    utilization = busy / current if current else 1.0
    needed = math.ceil(pending / config.target_queue_per_worker)
    if current < lo:
        return lo, f"below min_workers ({current} < {lo})"
    if current > hi:
        return hi, f"above max_workers ({current} > {hi})"
    if pending > current * config.target_queue_per_worker or (
        pending > 0 and utilization >= config.scale_up_threshold
    ):
        # Grow towards what the queue needs, at most doubling per step.
        grow_to = max(needed, current + 1)
        target = _clamp(min(grow_to, max(2 * current, 1)), lo, hi)
        return target, (
            f"{pending} pending tasks for {current} workers "
            f"(target {config.target_queue_per_worker} per worker, utilization {utilization:.0%})"
        )
    if (
        utilization <= config.scale_down_threshold
        and pending <= current * config.target_queue_per_worker * config.scale_down_threshold
    ):
        # Shrink gently: a quarter of the pool per step, never below what the queue needs.
        target = _clamp(max(needed, current - max(1, current // 4)), lo, hi)
        if target < current:
            return target, f"utilization {utilization:.0%} with {pending} pending tasks"
    return current, "queue depth within the target band"


def weight_adjustments(
    config: ScalingConfig, metrics: RuntimeMetrics
) -> dict[str, WeightAdjustment]:
    """Move weights towards each capability's share of the queue, within the step limit."""
    caps = sorted(set(metrics.queue_depth) | set(metrics.weights))
    if not caps:
        return {}
    pending = metrics.total_pending
    hot = bottleneck(metrics.queue_depth)
    adjustments: dict[str, WeightAdjustment] = {}
    for cap in caps:
        # Weights live in (0, 1]; a larger configured value counts as 1.
        previous = min(1.0, float(metrics.weights.get(cap, 0.0)))
        if not previous > 0.0:
            start = max(config.min_weight, 1.0 / len(caps))
            adjustments[cap] = WeightAdjustment(previous, start, "capability had no weight yet")
            continue
        share = max(0, metrics.queue_depth.get(cap, 0)) / pending if pending else previous
        desired = min(1.0, max(config.min_weight, share))
        low = previous * (1.0 - config.max_weight_change)
        high = min(1.0, previous * (1.0 + config.max_weight_change))
        new = min(high, max(low, desired))
        if abs(new - previous) < WEIGHT_EPSILON:
            continue
        if new > previous:
            why = "bottleneck capability" if cap == hot else "growing share of the queue"
            reason = f"{why}: {share:.0%} of pending tasks"
        else:
            reason = f"shrinking share of the queue: {share:.0%} of pending tasks"
        if new != desired:
            reason += f" (step limited to {config.max_weight_change:.0%})"
        adjustments[cap] = WeightAdjustment(previous, new, reason)
    return adjustments


def decide(config: ScalingConfig, metrics: RuntimeMetrics, now: dt.datetime) -> ScalingDecision:
    """The scaling decision for one control-loop step (pure: same inputs, same output)."""
    current = metrics.current_workers
    target, reason = target_workers(config, metrics)
    adjustments = weight_adjustments(config, metrics)
    kind: DecisionType
    if target > current:
        kind = "scale_up"
    elif target < current:
        kind = "scale_down"
    elif adjustments:
        kind, reason = "rebalance", "capability weights follow the queue"
    else:
        kind = "maintain"
    left_out = {cap: n for cap, n in sorted(metrics.left_out.items()) if n > 0}
    if left_out:
        named = ", ".join(f"{cap} ({n})" for cap, n in left_out.items())
        reason += f"; left out {sum(left_out.values())} tasks no worker here can take now: {named}"
    return ScalingDecision(
        timestamp=now,
        decision_type=kind,
        current_workers=current,
        target_workers=target,
        agent_weight_adjustments=adjustments,
        reason=reason,
    )


__all__ = [
    "RuntimeMetrics",
    "ScalingConfig",
    "ScalingDecision",
    "WeightAdjustment",
    "bottleneck",
    "decide",
    "target_workers",
    "weight_adjustments",
]
