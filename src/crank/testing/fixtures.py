"""Fixtures the plugin provides: ``gpu_strategy``, ``mock_streaming_harness``, ``crank_worker``,
``onnxruntime_gpu_site``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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


@pytest.fixture(scope="session")
def onnxruntime_gpu_site(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A folder holding onnxruntime-gpu, to put first on a subprocess's ``PYTHONPATH``.

    On a machine without CUDA that subprocess sees what onnxruntime-gpu does there: it
    lists ``CUDAExecutionProvider`` and falls back to the CPU. Installed once (pip,
    no dependencies) into the pytest cache. When pip cannot install it the test
    skips, or fails in strict mode (``CI=true``): CI must exercise the fallback.
    """
    from pathlib import Path

    from crank.errors import DependencyMissing
    from crank.testing.gpu_builds import install_onnxruntime_gpu
    from crank.testing.plugin import strict_policy_for

    cache = getattr(pytestconfig, "cache", None)
    root = (
        cache.mkdir("crank-onnxruntime-gpu")
        if cache is not None
        else tmp_path_factory.mktemp("onnxruntime-gpu")
    )
    try:
        return install_onnxruntime_gpu(Path(root))
    except DependencyMissing as exc:
        policy = strict_policy_for(pytestconfig)
        if policy.mode != "off":
            pytest.fail(f"{exc} ({policy.describe()})", pytrace=False)
        pytest.skip(str(exc))


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
