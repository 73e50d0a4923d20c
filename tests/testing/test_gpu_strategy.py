"""GPU strategy selection, its evidence, the header, and the onnxruntime-gpu CPU fallback."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from crank.errors import UsageError
from crank.testing import ensure_dependency, select_gpu_strategy

from .conftest import write_executable

if TYPE_CHECKING:
    from pathlib import Path

NO_GPU = "pynvml is not installed and nvidia-smi is not on PATH"


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch, fake_bin: Path) -> None:
    """No GPU can exist on this machine: nvidia-smi is a stand-in listing one."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    write_executable(fake_bin / "nvidia-smi", "echo 'GPU 0: NVIDIA A10G (UUID: GPU-42)'")


def test_no_gpu_outside_ci_is_cpu_fallback(no_gpu: None) -> None:
    strategy = select_gpu_strategy(environ={})
    assert strategy.name == "cpu_fallback"
    assert strategy.evidence == (NO_GPU, "not in CI: GPU code paths run on the CPU")
    assert not strategy.uses_gpu


def test_no_gpu_in_ci_is_mock_gpu(no_gpu: None) -> None:
    strategy = select_gpu_strategy(environ={"CI": "true"})
    assert strategy.name == "mock_gpu"
    assert strategy.evidence == (NO_GPU, "CI=true: GPU code paths run against mocks")


@pytest.mark.parametrize("name", ["mock_gpu", "cpu_fallback"])
def test_forced_strategies(name: str) -> None:
    strategy = select_gpu_strategy(name, environ={})
    assert (strategy.name, strategy.evidence) == (name, (f"forced by --crank-gpu-strategy={name}",))
    from_env = select_gpu_strategy(environ={"CRANK_GPU_STRATEGY": name})
    assert from_env.evidence == (f"forced by CRANK_GPU_STRATEGY={name}",)


def test_an_unknown_strategy_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        select_gpu_strategy("fast_gpu", environ={})
    assert caught.value.message == "unknown GPU strategy 'fast_gpu' (--crank-gpu-strategy=fast_gpu)"
    assert caught.value.hint == "use one of: auto, full_gpu, mock_gpu, cpu_fallback"


def test_a_blank_strategy_variable_is_unset_as_a_blank_require_is(
    no_gpu: None, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CRANK_GPU_STRATEGY=" " stopped the run as an unknown strategy '' while a blank
    CRANK_REQUIRE counts as unset."""
    assert select_gpu_strategy(environ={"CRANK_GPU_STRATEGY": " "}).name == "cpu_fallback"
    # (no gpu_strategy fixture in the run: it would import onnxruntime in-process)
    pytester.makepyfile("def test_x():\n    pass")
    monkeypatch.setenv("CRANK_GPU_STRATEGY", " ")
    monkeypatch.setenv("CRANK_REQUIRE", " ")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)


def test_a_listed_gpu_is_not_enough_a_session_must_run_on_it(fake_gpu: None) -> None:
    # nvidia-smi lists a GPU, but the installed onnxruntime (CPU build) cannot use it;
    # its UserWarning is caught (filterwarnings=error is on) and kept as evidence.
    strategy = select_gpu_strategy(environ={})
    assert strategy.name == "cpu_fallback"
    assert strategy.evidence[0] == "nvidia-smi -L lists 1 GPU(s): NVIDIA A10G"
    assert (
        "does not offer CUDAExecutionProvider; a session ran all 2 nodes on CPUExecutionProvider"
        in (strategy.evidence[1])
    )
    assert "UserWarning: Specified provider 'CUDAExecutionProvider'" in strategy.evidence[1]
    assert strategy.providers == ("CPUExecutionProvider",)


def test_forced_full_gpu_that_cannot_be_verified_says_so(no_gpu: None) -> None:
    strategy = select_gpu_strategy("full_gpu", environ={})
    assert (strategy.name, strategy.verified) == ("full_gpu", False)
    assert strategy.evidence[0] == "forced by --crank-gpu-strategy=full_gpu"
    assert strategy.evidence[-1] == "full_gpu NOT verified: tests using gpu_strategy fail"


GPU_SUITE = """
    import onnxruntime
    from crank.testing import ensure_dependency

    def test_strategy(gpu_strategy):
        print("STRATEGY", gpu_strategy.name)

    def test_cuda():
        ensure_dependency("onnxruntime:CUDAExecutionProvider")

    def test_which_build():
        print("PROVIDERS", onnxruntime.get_available_providers())
"""


def test_header_and_fixture_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_SUITE)
    result = pytester.runpytest("-s", "--crank-gpu-strategy=mock_gpu")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "crank: gpu strategy: mock_gpu",
            "crank:   - forced by --crank-gpu-strategy=mock_gpu",
            "*STRATEGY mock_gpu*",
        ]
    )


def test_forced_full_gpu_fails_tests_that_use_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_SUITE)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    result = pytester.runpytest("--crank-gpu-strategy=full_gpu")
    result.assert_outcomes(passed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        ["crank: full_gpu was requested but no session ran on the GPU: *full_gpu NOT verified*"]
    )


def test_a_bad_strategy_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--crank-gpu-strategy=fast_gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown GPU strategy 'fast_gpu' (--crank-gpu-strategy=fast_gpu)*"]
    )


@pytest.mark.parametrize("quiet", ["-q", "-qq"])
def test_a_bad_strategy_is_a_usage_error_in_a_quiet_run_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, quiet: str
) -> None:
    # -q prints no header, where the option used to be checked: the tests using the
    # fixture then died inside crank and every other test ran
    pytester.makepyfile("def test_x(gpu_strategy): pass\ndef test_y(): pass")
    monkeypatch.setenv("CRANK_GPU_STRATEGY", "fullgpu")
    result = pytester.runpytest(quiet)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown GPU strategy 'fullgpu' (CRANK_GPU_STRATEGY=fullgpu)*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.slow
def test_the_strategy_a_quiet_project_used_is_reported_under_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No crank manifest, so no header: the strategy goes in the end-of-run summary. Under
    xdist the workers chose it and the summary left it out, as if no test had used it."""
    ensure_dependency("xdist", install_hint="pip install pytest-xdist")
    pytester.makepyfile("def test_x(gpu_strategy): pass\ndef test_y(): pass")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess(
        "-p", "crank.testing.plugin", "-p", "xdist.plugin", "-n", "2"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*- crank dependencies -*", "crank: gpu strategy: *", "crank:   - *"]
    )


# --- onnxruntime-gpu without CUDA libraries -------------------------------------------------


@pytest.mark.slow
def test_onnxruntime_gpu_falling_back_to_cpu_is_detected_and_reported(
    pytester: pytest.Pytester, onnxruntime_gpu_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(GPU_SUITE)
    monkeypatch.setenv(
        "PYTHONPATH", f"{onnxruntime_gpu_site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess("-p", "crank.testing.plugin", "-s", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    # the subprocess really imported the GPU build, which lists CUDA without CUDA libraries
    result.stdout.fnmatch_lines(
        # (older builds list other providers between, e.g. AzureExecutionProvider)
        ["*PROVIDERS [[]*'CUDAExecutionProvider', *'CPUExecutionProvider'[]]*"]
    )
    fallback = (
        "onnxruntime-gpu * lists CUDAExecutionProvider, but a session asked for it fell back "
        "and ran all 2 nodes on CPUExecutionProvider (stderr: Failed to create "
        "CUDAExecutionProvider*"
    )
    result.stdout.fnmatch_lines(
        [
            "crank: gpu strategy: cpu_fallback",
            "crank:   - pynvml is not installed and nvidia-smi is not on PATH",
            f"crank:   - {fallback}",
            "crank:   - not in CI: GPU code paths run on the CPU",
        ]
    )
    result.stdout.fnmatch_lines(
        [f"SKIPPED * missing onnxruntime:CUDAExecutionProvider: {fallback}"]
    )

    forced = pytester.runpytest_subprocess(
        "-p", "crank.testing.plugin", "--crank-gpu-strategy=full_gpu"
    )
    forced.assert_outcomes(passed=1, skipped=1, errors=1)
    forced.stdout.fnmatch_lines(
        [f"*full_gpu was requested but no session ran on the GPU: *{fallback}*"]
    )


GPU_SITE_SUITE = """
    def test_uses_the_gpu_build(onnxruntime_gpu_site):
        assert (onnxruntime_gpu_site / "onnxruntime").is_dir()
"""


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        ((), {"skipped": 1}),
        (("--crank-require=all",), {"errors": 1}),
        # nothing declared: the header says missing dependencies skip; the failure
        # must not quote that as its reason
        (("--crank-require=declared",), {"errors": 1}),
    ],
)
def test_onnxruntime_gpu_that_pip_cannot_install_skips_or_fails_in_strict_mode(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: tuple[str, ...],
    outcome: dict[str, int],
) -> None:
    pytester.makepyfile(GPU_SITE_SUITE)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no index and an empty folder of wheels
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", *args)
    result.assert_outcomes(**outcome)  # type: ignore[arg-type]
    result.stdout.fnmatch_lines(["*pip could not install onnxruntime-gpu<=*"])
    if args:
        result.stdout.fnmatch_lines(
            [
                f"*(strict mode, {args[0]}: onnxruntime_gpu_site fails instead of skipping, so "
                "that CI exercises the GPU build's fallback)"
            ]
        )
        failures = [line for line in result.stdout.lines if "pip could not install" in line]
        assert failures and not any("dependencies skip" in line for line in failures)
