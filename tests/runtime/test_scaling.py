"""The scaling policy: invariants as properties, plus the spec's scenarios."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crank.runtime.scaling import (
    RuntimeMetrics,
    ScalingConfig,
    bottleneck,
    decide,
)

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
CAPS = st.sampled_from(["a.x", "b.y", "c.z", "d.w", "e.v"])


@st.composite
def configs(draw: st.DrawFn) -> ScalingConfig:
    lo = draw(st.integers(0, 50))
    hi = draw(st.integers(max(1, lo), 200))
    down = draw(st.floats(0.0, 0.5))
    return ScalingConfig(
        min_workers=lo,
        max_workers=hi,
        scale_up_threshold=draw(st.floats(0.5, 1.0)),
        scale_down_threshold=down,
        target_queue_per_worker=draw(st.integers(1, 100)),
        min_weight=draw(st.floats(0.01, 0.2)),
    )


@st.composite
def metrics(draw: st.DrawFn) -> RuntimeMetrics:
    depth = draw(st.dictionaries(CAPS, st.integers(0, 100_000), max_size=5))
    weights = draw(
        st.dictionaries(
            CAPS, st.floats(1e-6, 1.0, allow_nan=False, allow_infinity=False), max_size=5
        )
    )
    return RuntimeMetrics(
        queue_depth=depth,
        active_workers=draw(st.integers(0, 300)),
        idle_workers=draw(st.integers(0, 300)),
        failed_workers=draw(st.integers(0, 10)),
        weights=weights,
    )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(configs(), metrics())
def test_target_never_leaves_the_bounds(config: ScalingConfig, m: RuntimeMetrics) -> None:
    decision = decide(config, m, NOW)
    assert config.min_workers <= decision.target_workers <= config.max_workers
    assert decision.current_workers == m.active_workers + m.idle_workers


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(configs(), metrics())
def test_weights_never_reach_zero_nor_jump_more_than_half(
    config: ScalingConfig, m: RuntimeMetrics
) -> None:
    decision = decide(config, m, NOW)
    new = decision.new_weights(m.weights)
    for cap, adj in decision.agent_weight_adjustments.items():
        assert adj.new_weight > 0.0, cap
        if adj.previous_weight > 0.0:
            assert abs(adj.new_weight - adj.previous_weight) <= 0.5 * adj.previous_weight + 1e-9
        assert adj.reason
    assert all(w > 0.0 for w in new.values())
    # every capability with queued work or a weight keeps one
    assert set(m.queue_depth) | set(m.weights) <= set(new)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(configs(), metrics())
def test_a_pool_outside_its_bounds_is_brought_back_first(
    config: ScalingConfig, m: RuntimeMetrics
) -> None:
    d = decide(config, m, NOW)
    workers = m.active_workers + m.idle_workers
    if workers < config.min_workers:
        assert (d.decision_type, d.target_workers) == ("scale_up", config.min_workers)
        assert d.reason == f"below min_workers ({workers} < {config.min_workers})"
    elif workers > config.max_workers:
        assert (d.decision_type, d.target_workers) == ("scale_down", config.max_workers)
        assert d.reason == f"above max_workers ({workers} > {config.max_workers})"


@st.composite
def backlogs(draw: st.DrawFn) -> tuple[ScalingConfig, RuntimeMetrics]:
    """A pool inside its bounds, below max, with more pending than its target rate."""
    config = draw(configs().filter(lambda c: c.max_workers > c.min_workers))
    workers = draw(st.integers(config.min_workers, config.max_workers - 1))
    active = draw(st.integers(0, workers))
    threshold = workers * config.target_queue_per_worker
    caps = draw(st.lists(CAPS, min_size=1, max_size=5, unique=True))
    depth = {caps[0]: draw(st.integers(threshold + 1, threshold + 5_000))}
    depth.update({cap: draw(st.integers(0, 100)) for cap in caps[1:]})
    return config, RuntimeMetrics(
        queue_depth=depth, active_workers=active, idle_workers=workers - active
    )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(backlogs())
def test_a_backlog_beyond_the_target_grows_the_pool_at_most_twofold(
    case: tuple[ScalingConfig, RuntimeMetrics],
) -> None:
    config, m = case
    workers = m.active_workers + m.idle_workers
    pending = sum(m.queue_depth.values())
    d = decide(config, m, NOW)
    assert d.decision_type == "scale_up"
    assert workers < d.target_workers <= min(config.max_workers, max(2 * workers, 1))
    # never more than the backlog needs at the target rate, unless one more is the least step
    needed = -(-pending // config.target_queue_per_worker)
    assert d.target_workers <= max(needed, workers + 1)


@st.composite
def idle_pools(draw: st.DrawFn) -> tuple[ScalingConfig, RuntimeMetrics]:
    """A pool above its minimum, nobody busy, nothing queued."""
    config = draw(configs().filter(lambda c: c.max_workers > c.min_workers))
    workers = draw(st.integers(config.min_workers + 1, config.max_workers))
    caps = draw(st.lists(CAPS, max_size=5, unique=True))
    return config, RuntimeMetrics(
        queue_depth=dict.fromkeys(caps, 0), active_workers=0, idle_workers=workers
    )


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(idle_pools())
def test_an_idle_pool_with_an_empty_queue_shrinks_a_quarter_at_a_time(
    case: tuple[ScalingConfig, RuntimeMetrics],
) -> None:
    config, m = case
    workers = m.idle_workers
    d = decide(config, m, NOW)
    assert d.decision_type == "scale_down"
    assert d.target_workers == max(config.min_workers, workers - max(1, workers // 4))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(configs(), metrics())
def test_a_decision_without_a_size_change_rebalances_or_maintains(
    config: ScalingConfig, m: RuntimeMetrics
) -> None:
    d = decide(config, m, NOW)
    if d.target_workers != d.current_workers:
        return
    if d.agent_weight_adjustments:
        assert (d.decision_type, d.reason) == ("rebalance", "capability weights follow the queue")
    else:
        assert d.decision_type == "maintain"


def test_a_decision_as_json() -> None:
    config = ScalingConfig(min_workers=2, max_workers=2)
    m = RuntimeMetrics(
        queue_depth={"a.x": 90, "b.y": 10},
        active_workers=1,
        idle_workers=1,
        weights={"a.x": 0.2, "b.y": 0.8},
    )
    assert decide(config, m, NOW).as_dict() == {
        "timestamp": "2026-11-22T12:00:00+00:00",
        "decision_type": "rebalance",
        "current_workers": 2,
        "target_workers": 2,
        "agent_weight_adjustments": {
            "a.x": {
                "previous_weight": 0.2,
                "new_weight": 0.3,
                "reason": "bottleneck capability: 90% of pending tasks (step limited to 50%)",
            },
            "b.y": {
                "previous_weight": 0.8,
                "new_weight": 0.4,
                "reason": "shrinking share of the queue: 10% of pending tasks "
                "(step limited to 50%)",
            },
        },
        "reason": "capability weights follow the queue",
    }


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(configs(), metrics())
def test_repeated_steps_converge_without_breaking_invariants(
    config: ScalingConfig, m: RuntimeMetrics
) -> None:
    weights = dict(m.weights)
    workers = m.current_workers
    for _ in range(8):
        step = RuntimeMetrics(
            queue_depth=m.queue_depth, active_workers=workers, idle_workers=0, weights=weights
        )
        d = decide(config, step, NOW)
        for adj in d.agent_weight_adjustments.values():
            if adj.previous_weight > 0:
                assert adj.new_weight >= 0.5 * adj.previous_weight - 1e-9
        weights = d.new_weights(weights)
        workers = d.target_workers
        assert config.min_workers <= workers <= config.max_workers


def test_spec_example_scale_up_on_generation_backlog() -> None:
    config = ScalingConfig(min_workers=1, max_workers=50, target_queue_per_worker=10)
    m = RuntimeMetrics(
        queue_depth={"generation.run": 500},
        active_workers=9,
        idle_workers=1,
        weights={"generation.run": 0.5},
    )
    d = decide(config, m, NOW)
    assert (d.decision_type, d.current_workers, d.target_workers) == ("scale_up", 10, 20)


def test_scale_down_when_idle_and_empty() -> None:
    config = ScalingConfig(min_workers=2, max_workers=16)
    m = RuntimeMetrics(
        queue_depth={"a.x": 0}, active_workers=0, idle_workers=8, weights={"a.x": 1.0}
    )
    d = decide(config, m, NOW)
    assert (d.decision_type, d.target_workers) == ("scale_down", 6)


def test_rebalance_moves_weight_to_the_bottleneck_at_most_half() -> None:
    config = ScalingConfig(min_workers=2, max_workers=2)
    m = RuntimeMetrics(
        queue_depth={"a.x": 90, "b.y": 10},
        active_workers=1,
        idle_workers=1,
        weights={"a.x": 0.2, "b.y": 0.8},
    )
    d = decide(config, m, NOW)
    assert d.decision_type == "rebalance"
    assert d.agent_weight_adjustments["a.x"].new_weight == pytest.approx(0.3)
    assert d.agent_weight_adjustments["b.y"].new_weight == pytest.approx(0.4)
    assert "bottleneck" in d.agent_weight_adjustments["a.x"].reason


def test_idle_capability_keeps_its_floor() -> None:
    config = ScalingConfig(min_workers=1, max_workers=1, min_weight=0.05)
    weights = {"a.x": 0.5, "b.y": 0.5}
    for _ in range(20):
        m = RuntimeMetrics(
            queue_depth={"a.x": 1000, "b.y": 0}, active_workers=1, idle_workers=0, weights=weights
        )
        weights = decide(config, m, NOW).new_weights(weights)
    assert weights["b.y"] == pytest.approx(0.05, abs=0.01)


def test_maintain_when_nothing_changes() -> None:
    config = ScalingConfig(min_workers=1, max_workers=4)
    m = RuntimeMetrics(
        queue_depth={"a.x": 5}, active_workers=1, idle_workers=1, weights={"a.x": 1.0}
    )
    assert decide(config, m, NOW).decision_type == "maintain"


def test_bottleneck() -> None:
    assert bottleneck({}) is None
    assert bottleneck({"a.x": 0}) is None
    assert bottleneck({"b.y": 3, "a.x": 3, "c.z": 1}) == "a.x"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"min_workers": 5, "max_workers": 2}, "min_workers=5"),
        ({"target_queue_per_worker": 0}, "target_queue_per_worker"),
        ({"min_weight": 0.0}, "min_weight"),
    ],
)
def test_inconsistent_config_is_refused(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ScalingConfig(**kwargs)  # type: ignore[arg-type]
