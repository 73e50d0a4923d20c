"""ensure_dependency outside pytest semantics: results and crank errors, never skips."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from crank.errors import DependencyBroken, DependencyMissing, UsageError
from crank.testing import ensure_dependency, self_test_mode
from crank.testing.ensure import in_pytest

if TYPE_CHECKING:
    from pathlib import Path


def test_inside_a_test_the_plugin_says_so() -> None:
    assert in_pytest()
    with self_test_mode():
        assert not in_pytest()


def test_available_returns_the_result() -> None:
    with self_test_mode():
        result = ensure_dependency("exe:pandoc")
    assert result.available and result.name == "pandoc"


def test_missing_raises_dependency_missing_with_hint() -> None:
    with self_test_mode(), pytest.raises(DependencyMissing) as caught:
        ensure_dependency("exe:crank-nope")
    assert caught.value.message == "missing crank-nope: executable 'crank-nope' is not on PATH"
    assert caught.value.hint == "apt-get install crank-nope"
    assert caught.value.subject == "exe:crank-nope"


def test_messages_and_hints_can_be_given() -> None:
    with self_test_mode(), pytest.raises(DependencyMissing) as caught:
        ensure_dependency(
            "exe:crank-nope",
            skip_message="Pandoc not available, skipping conversion tests",
            install_hint="brew install pandoc",
        )
    assert (
        str(caught.value)
        == "Pandoc not available, skipping conversion tests\n  hint: brew install pandoc"
    )


def test_broken_raises_dependency_broken_chained_to_the_real_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crank_broken_ext.py").write_text(
        "raise ImportError('libbroken.so: cannot open shared object file')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with self_test_mode(), pytest.raises(DependencyBroken) as caught:
        ensure_dependency("crank_broken_ext")
    assert caught.value.message.startswith("crank_broken_ext is installed but broken: ")
    assert isinstance(caught.value.__cause__, ImportError)
    assert str(caught.value.__cause__) == "libbroken.so: cannot open shared object file"


def test_a_process_that_merely_inherits_pytest_current_test_raises(tmp_path: Path) -> None:
    # PYTEST_CURRENT_TEST leaks into subprocesses (a worker's self-test started by a test):
    # there, ensure_dependency must raise a crank error, not try to skip.
    script = (
        "from crank.errors import DependencyMissing\n"
        "from crank.testing import ensure_dependency\n"
        "try:\n"
        "    ensure_dependency('exe:crank-nope')\n"
        "except DependencyMissing as exc:\n"
        "    print('raised', exc.message)\n"
    )
    env = {**os.environ, "PYTEST_CURRENT_TEST": "tests/x.py::test_y (call)"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout == "raised missing crank-nope: executable 'crank-nope' is not on PATH\n"


def test_importing_crank_testing_is_cheap() -> None:
    script = (
        "import sys\n"
        "from crank.testing import ensure_dependency, check_dependency, select_gpu_strategy, "
        "MockStreamingHarness\n"
        "names = ('onnxruntime', 'onnx', 'torch', 'numpy', 'jsonschema', 'redis')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


def test_a_spec_that_is_not_a_string_is_a_usage_error_outside_pytest() -> None:
    with self_test_mode(), pytest.raises(UsageError) as caught:
        ensure_dependency(["exe:pandoc"])  # type: ignore[arg-type]
    assert caught.value.message == "a dependency spec is a string, got ['exe:pandoc']"


def test_a_hint_that_is_not_a_string_is_a_usage_error_outside_pytest() -> None:
    with self_test_mode(), pytest.raises(UsageError) as caught:
        ensure_dependency("exe:crank-nope", install_hint=3)  # type: ignore[arg-type]
    assert caught.value.message == "install_hint= takes a string, got 3"


@pytest.mark.parametrize("spec", ["numpy>=1.26", "gpu", "redis://127.0.0.1:1"])
def test_a_version_command_for_a_spec_that_is_not_exe_is_a_usage_error(spec: str) -> None:
    """It was silently ignored: the version it names was never read nor compared."""
    with self_test_mode(), pytest.raises(UsageError) as caught:
        ensure_dependency(spec, version_command="tool --version")
    assert "a version command applies only to exe: specs" in caught.value.message
    assert caught.value.hint is not None


def test_a_version_command_for_a_spec_that_is_not_exe_fails_the_test_at_its_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_x():
            ensure_dependency("numpy>=1.26", version_command="numpy --version")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_version_command*.py:4: ensure_dependency: dependency spec 'numpy>=1.26': "
            "a version command applies only to exe: specs, not to a module spec*"
        ]
    )
