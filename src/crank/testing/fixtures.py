"""Fixtures the plugin provides: ``gpu_strategy``, ``mock_streaming_harness``, ``crank_worker``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.testing.gpu import GpuStrategy
    from crank.testing.streaming import MockStreamingHarness
    from crank.testing.workers import WorkerRunner


@pytest.fixture(scope="session")
def gpu_strategy(pytestconfig: pytest.Config) -> GpuStrategy:
    """The session's GPU strategy; a forced ``full_gpu`` that a session cannot confirm fails."""
    from crank.testing.plugin import gpu_strategy_for

    strategy = gpu_strategy_for(pytestconfig)
    if strategy.name == "full_gpu" and not strategy.verified:
        pytest.fail(
            "crank: full_gpu was requested but no session ran on the GPU: "
            + "; ".join(strategy.evidence),
            pytrace=False,
        )
    return strategy


@pytest.fixture
def mock_streaming_harness() -> MockStreamingHarness:
    """A fresh :class:`~crank.testing.MockStreamingHarness` (100 connections, 16-event buffers)."""
    from crank.testing.streaming import MockStreamingHarness

    return MockStreamingHarness()


@pytest.fixture
def crank_worker() -> Iterator[WorkerRunner]:
    """Start workers in-process: ``crank_worker("path/crank.yaml" or name).call(cap, data)``.

    Every worker started through it is torn down after the test.
    """
    from crank.testing.workers import WorkerRunner

    runner = WorkerRunner()
    try:
        yield runner
    finally:
        runner.close()
