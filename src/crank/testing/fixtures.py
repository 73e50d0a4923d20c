"""Fixtures the plugin provides: ``gpu_strategy``, ``mock_streaming_harness``, ``crank_worker``,
``onnxruntime_gpu_site``; and the session state they share with the plugin's hooks.

The plugin registers them in every pytest run where crank is installed, so what
each one needs is imported when a test asks for it (the GPU probe, the streaming
harness, the worker host and its asyncio, pip), not when pytest starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crank.errors import DependencyMissing
from crank.testing.strict import StrictPolicy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from crank.testing.gpu import GpuStrategy
    from crank.testing.streaming import MockStreamingHarness
    from crank.testing.workers import WorkerRunner

#: The session's strict policy, resolved at configure time by the plugin.
policy_key = pytest.StashKey[StrictPolicy]()
#: The session's GPU strategy, chosen once (the report header and the fixture share it).
strategy_key = pytest.StashKey["GpuStrategy"]()


def strict_policy_for(config: pytest.Config) -> StrictPolicy:
    """The session's strict policy (resolved once, at configure time)."""
    return config.stash[policy_key]


def gpu_strategy_for(config: pytest.Config) -> GpuStrategy:
    """Chosen once per session (the header and the fixture share it)."""
    strategy = config.stash.get(strategy_key, None)
    if strategy is None:
        from crank.testing.gpu import select_gpu_strategy  # pytest start-up: see above

        strategy = select_gpu_strategy(config.getoption("crank_gpu_strategy"))
        config.stash[strategy_key] = strategy
    return strategy


@pytest.fixture(scope="session")
def gpu_strategy(pytestconfig: pytest.Config) -> GpuStrategy:
    """The session's GPU strategy; a forced ``full_gpu`` that a session cannot confirm fails."""
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
    from crank.testing.gpu_builds import install_onnxruntime_gpu  # pytest start-up

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
            # not policy.describe(): with nothing declared it says that missing
            # dependencies skip, and this one fails in any strict mode
            pytest.fail(
                f"{exc} (strict mode, {policy.source}: onnxruntime_gpu_site fails instead of "
                "skipping, so that CI exercises the GPU build's fallback)",
                pytrace=False,
            )
        pytest.skip(str(exc))


@pytest.fixture
def mock_streaming_harness() -> MockStreamingHarness:
    """A fresh :class:`~crank.testing.MockStreamingHarness` (100 connections, 16-event buffers)."""
    from crank.testing.streaming import MockStreamingHarness  # pytest start-up: see above

    return MockStreamingHarness()


@pytest.fixture
def crank_worker(request: pytest.FixtureRequest) -> Iterator[WorkerRunner]:
    """Start workers in-process: ``crank_worker("path/crank.yaml" or name).call(cap, data)``.

    A relative path is looked for in the current folder, then under pytest's rootdir.
    Every worker started through it is torn down after the test.
    """
    from crank.testing.workers import WorkerRunner  # pytest start-up: see above

    runner = WorkerRunner(root=request.config.rootpath)
    try:
        yield runner
    finally:
        runner.close()
