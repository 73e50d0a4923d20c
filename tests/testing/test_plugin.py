"""The plugin end to end, through pytester: skip vs error vs strict failure, the summary."""

from __future__ import annotations

import os
import textwrap

import pytest

from crank.testing import ensure_dependency

SUITE = """
    import pytest
    from crank.testing import ensure_dependency

    def test_tool_one():
        ensure_dependency("exe:crank-missing-tool")
        raise AssertionError("must not run")

    def test_tool_two():
        ensure_dependency("exe:crank-missing-tool")

    @pytest.mark.requires("crank_missing_module")
    def test_module_marker():
        raise AssertionError("must not run")

    def test_broken():
        ensure_dependency("crank_broken_mod")

    def test_available():
        assert ensure_dependency("exe:pandoc").available
"""

BROKEN_MODULE = "raise ImportError('libcrankbroken.so.3: cannot open shared object file')\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE, crank_broken_mod=BROKEN_MODULE)
    pytester.syspathinsert()
    return pytester


def summary_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("crank: ") and " test" in line]


def test_missing_skips_broken_fails_and_the_summary_groups_them(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    assert summary_lines(result) == [
        "crank: 2 tests skipped - missing crank-missing-tool (apt-get install crank-missing-tool)",
        "crank: 1 test skipped - missing crank_missing_module (pip install crank_missing_module)",
        "crank: 1 test failed - crank_broken_mod is installed but broken "
        "(pip install --force-reinstall crank_broken_mod, "
        "or install the native libraries it needs)",
    ]


def test_skips_are_reported_where_the_test_asked(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-rs")
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_suite.py:5: missing crank-missing-tool: executable "
            "'crank-missing-tool' is not on PATH (hint: apt-get install crank-missing-tool)",
            "SKIPPED [[]1[]] test_suite.py:9: missing crank-missing-tool: *",
            "SKIPPED [[]1[]] test_suite.py:11: missing crank_missing_module: Python module "
            "'crank_missing_module' is not installed (hint: pip install crank_missing_module)",
        ]
    )


def test_a_broken_dependency_shows_the_real_exception(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-k", "broken")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ImportError: libcrankbroken.so.3: cannot open shared object file",
            "*The above exception was the direct cause of the following exception:*",
            "*DependencyBroken: crank_broken_mod is installed but broken: *",
        ]
    )


def test_strict_all_turns_every_missing_dependency_into_a_failure(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--crank-require=all")
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "crank-missing-tool is required (strict mode: --crank-require=all) but missing: "
            "executable 'crank-missing-tool' is not on PATH "
            "(hint: apt-get install crank-missing-tool)",
        ]
    )
    assert summary_lines(result)[0] == (
        "crank: 2 tests failed - required crank-missing-tool is missing "
        "(apt-get install crank-missing-tool)"
    )


def test_strict_by_name_only_fails_the_named_dependency(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--crank-require=crank_missing_module")
    result.assert_outcomes(passed=1, skipped=2, errors=1, failed=1)


def test_a_require_list_of_no_names_is_a_usage_error(suite: pytest.Pytester) -> None:
    # "--crank-require=," (a list whose names a CI template left empty) required nothing
    result = suite.runpytest("-q", "--crank-require=,")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --crank-require=,: names no dependency",
            "  hint: give all, declared or none, or dependency names: --crank-require=pandoc,*",
        ]
    )


def test_strict_by_spec_matches_a_spec_written_with_a_constraint(
    pytester: pytest.Pytester,
) -> None:
    """--crank-require=exe:TOOL required the tool only where a test wrote the spec without
    a version; ensure_dependency("exe:TOOL>=2") still skipped."""
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_any_version():
            ensure_dependency("exe:crank-missing-tool")

        def test_a_version():
            ensure_dependency("exe:crank-missing-tool>=2")
        """
    )
    result = pytester.runpytest("--crank-require=exe:crank-missing-tool")
    result.assert_outcomes(failed=2)


def test_strict_from_the_environment(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRANK_REQUIRE", "crank-missing-tool")
    result = suite.runpytest()
    result.assert_outcomes(passed=1, skipped=1, failed=3)
    result.stdout.fnmatch_lines(
        ["crank: dependencies: required: crank-missing-tool (CRANK_REQUIRE=*)"]
    )


@pytest.mark.parametrize(
    ("args", "env", "source", "keyword"),
    [
        (
            (),
            "declared,crank-missing-tool",
            "CRANK_REQUIRE=declared,crank-missing-tool",
            "declared",
        ),
        (("--crank-require=crank-missing-tool,all",), "", "--crank-require=*", "all"),
    ],
)
def test_a_keyword_mixed_with_names_is_a_usage_error_not_a_name(
    suite: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: str,
    source: str,
    keyword: str,
) -> None:
    # taken for a dependency called 'declared', it used to require nothing the
    # manifests declare, in CI, without a word
    if env:
        monkeypatch.setenv("CRANK_REQUIRE", env)
    result = suite.runpytest("-q", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: {source}: '{keyword}' cannot be combined with dependency names",
            "  hint: give all, declared or none alone, or a list of names; *crank_dependencies*",
        ]
    )


MANIFEST = """\
apiVersion: crank.dev/v1
kind: Worker
metadata: {name: demo, version: 1.0.0}
worker: {entrypoint: "demo.worker:Demo"}
dependencies:
  python: ["crank_missing_module>=1"]
  system:
    - {name: crank-missing-tool, check: "exe:crank-missing-tool", apt: crank-missing-tool-pkg,
       hint: "apt-get install crank-missing-tool-pkg"}
capabilities: []
"""


def test_ci_requires_what_the_manifest_declares(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (suite.path / "crank.yaml").write_text(MANIFEST)
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "crank-missing-tool is required (strict mode: CI=true and crank.yaml declares it) "
            "but missing: executable 'crank-missing-tool' is not on PATH "
            "(hint: apt-get install crank-missing-tool-pkg)",
        ]
    )


@pytest.mark.parametrize("option", ["--crank-require=", "--crank-require= "])
def test_a_blank_require_option_leaves_ci_strict(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    """A CI template's --crank-require=$NAMES with no names turned strictness off."""
    (suite.path / "crank.yaml").write_text(MANIFEST)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("CRANK_GPU_STRATEGY", "cpu_fallback")
    result = suite.runpytest(option, "--crank-gpu-strategy= ")
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "crank: dependencies: dependencies declared in crank.yaml required (CI=true)",
            "crank: gpu strategy: cpu_fallback",
            "crank:   - forced by CRANK_GPU_STRATEGY=cpu_fallback",
        ]
    )


def test_ci_requires_a_module_whose_declared_distribution_is_another_build(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's image declares opencv-python-headless or onnxruntime-gpu; its tests ask
    for cv2 and onnxruntime, which CI then skipped although the install step was missing."""
    (pytester.path / "crank.yaml").write_text(
        "dependencies:\n  python: [opencv-python-headless>=4, onnxruntime-gpu>=1.17]\n"
    )
    pytester.makeconftest(
        """
        import sys

        sys.modules["cv2"] = sys.modules["onnxruntime"] = None  # as if not installed
        """
    )
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_cv2():
            ensure_dependency("cv2")

        def test_onnxruntime():
            ensure_dependency("onnxruntime>=1.17")
        """
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "cv2 is required (strict mode: CI=true and crank.yaml declares it) but missing: *"
            "(hint: pip install 'opencv-python-headless>=4')",
        ]
    )


def test_a_quiet_run_says_in_the_summary_why_missing_dependencies_skipped(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-q prints no header, where the policy is: a CI run whose crank_manifests glob
    found nothing skipped its tests without a word on why nothing was required."""
    suite.makeini("[pytest]\ncrank_manifests =\n    plugins/*/crank.yaml\n")
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- crank dependencies -*",
            "crank: dependencies: CI=true, but no crank.yaml manifest declares any, so missing "
            "dependencies skip (searched *, plugins/*/crank.yaml; add globs with the "
            "crank_manifests ini option)",
            "crank: 2 tests skipped - *",
        ]
    )


def test_ci_without_a_declaration_still_skips(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest()
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    # no manifest: no header claiming strictness; the summary says what applied
    header = result.outlines[: result.outlines.index("collected 5 items")]
    assert [line for line in header if line.startswith("crank:")] == []
    result.stdout.fnmatch_lines(
        [
            "*- crank dependencies -*",
            "crank: dependencies: CI=true, but no crank.yaml manifest declares any, so missing "
            "dependencies skip (searched crank.yaml, *.crank.yaml, src/*/crank.yaml, "
            "src/*/*.crank.yaml, */crank.yaml, */*.crank.yaml; add globs with the "
            "crank_manifests ini option)",
            "crank: 2 tests skipped - *",
        ]
    )


def test_a_project_that_does_not_use_crank_hears_nothing_from_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pluggy's own suite, say, run where crank is installed and CI=true."""
    pytester.makepyfile(
        """
        import pytest

        def test_plain():
            assert 1 + 1 == 2

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass
        """
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert [line for line in result.outlines if line.startswith("crank")] == []
    assert "crank dependencies" not in result.stdout.str()


def test_the_header_names_the_manifests_that_make_dependencies_required(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (suite.path / "crank.yaml").write_text(MANIFEST)
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("--collect-only")
    header = result.outlines[: result.outlines.index("collected 5 items")]
    assert [line for line in header if line.startswith("crank: dependencies")] == [
        "crank: dependencies: dependencies declared in crank.yaml required (CI=true)"
    ]


def test_a_package_one_folder_down_is_the_project_as_getting_started_shows(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crank.yaml beside text_tools/__init__.py, at the repository root."""
    package = suite.path / "text_tools"
    package.mkdir()
    (package / "crank.yaml").write_text(MANIFEST)
    monkeypatch.setenv("CI", "true")
    # not a package (no __init__.py): an example or a doc, not the project
    result = suite.runpytest()
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    (package / "__init__.py").write_text("")
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "crank: dependencies: dependencies declared in text_tools/crank.yaml required "
            "(CI=true)",
            "*(strict mode: CI=true and text_tools/crank.yaml declares it)*",
        ]
    )


def test_fixture_manifests_are_never_strict(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures = suite.path / "tests" / "fixtures" / "worker"
    fixtures.mkdir(parents=True)
    (fixtures / "crank.yaml").write_text(MANIFEST)
    suite.makeini("[pytest]\ncrank_manifests = tests/**/crank.yaml\n")
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest()
    result.assert_outcomes(passed=1, skipped=3, failed=1)


def test_src_layout_and_ini_globs_are_searched(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = suite.path / "plugins" / "crank-demo" / "src" / "crank_demo"
    worker.mkdir(parents=True)
    (worker / "crank.yaml").write_text(MANIFEST)
    monkeypatch.setenv("CI", "true")
    assert suite.runpytest().parseoutcomes()["skipped"] == 3
    suite.makeini("[pytest]\ncrank_manifests =\n    plugins/*/src/*/crank.yaml\n")
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*(strict mode: CI=true and plugins/crank-demo/src/crank_demo/crank.yaml declares it)*"]
    )


def test_optional_declared_dependencies_may_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (suite.path / "crank.yaml").write_text(
        MANIFEST.replace(
            'hint: "apt-get install crank-missing-tool-pkg"', "optional: true"
        ).replace('["crank_missing_module>=1"]', "[]")
    )
    monkeypatch.setenv("CI", "true")
    suite.runpytest().assert_outcomes(passed=1, skipped=3, failed=1)


def test_require_none_switches_ci_strictness_off(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (suite.path / "crank.yaml").write_text(MANIFEST)
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("--crank-require=none")
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    result.stdout.fnmatch_lines(["crank: dependencies: off (missing dependencies skip)"])


def test_a_manifest_strict_mode_cannot_read_fails_the_test_clearly(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (suite.path / "crank.yaml").write_text("dependencies: [unclosed\n")
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-k", "tool_two")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UsageError: strict mode cannot read manifest *crank.yaml*: *"])


def test_a_manifest_key_given_twice_is_not_read_by_strict_mode(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its last `dependencies:` was used silently, whatever the first declared."""
    (suite.path / "crank.yaml").write_text(MANIFEST + "dependencies: {}\n")
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-k", "tool_two")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*UsageError: strict mode cannot read manifest *crank.yaml:*: duplicate key "
            "'dependencies' (first defined at line *)"
        ]
    )


def test_a_declared_version_command_reads_the_version(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that prints its version only through its own command (``odd --release``)."""
    tools = pytester.mkdir("tools")
    odd = tools / "odd"
    odd.write_text('#!/bin/sh\nif [ "$1" = --release ]; then echo "odd 3.2"; fi\n')
    odd.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    (pytester.path / "crank.yaml").write_text(
        MANIFEST.partition("dependencies:")[0]
        + "dependencies:\n  system:\n"
        + '    - {name: odd, check: "exe:odd>=3", version_command: "odd --release"}\n'
        + "capabilities: []\n"
    )
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_declared():
            assert ensure_dependency("exe:odd>=3").version == "3.2"

        def test_newer_than_installed():
            ensure_dependency("exe:odd>=4")
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*missing odd: odd 3.2 is installed but >=4 is required*"])


def test_the_marker_runs_before_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def expensive():
            raise AssertionError("fixture must not run for a skipped test")

        @pytest.mark.requires("exe:pandoc", "exe:crank-missing-tool", hint="see docs/install.md")
        def test_x(expensive):
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*missing crank-missing-tool: * (hint: see docs/install.md)"])


def test_a_test_marked_to_skip_skips_for_its_own_reason_even_in_strict_mode(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.skip(reason="not today")
        @pytest.mark.requires("exe:crank-missing-tool")
        def test_skip():
            pass

        @pytest.mark.skipif(True, reason="not here")
        @pytest.mark.requires("exe:crank-missing-tool")
        def test_skipif():
            pass
        """
    )
    result = pytester.runpytest("-rs", "--crank-require=all")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED * not today", "SKIPPED * not here"])
    assert "crank dependencies" not in result.stdout.str()  # no dependency caused them


def test_an_xfail_mark_does_not_hide_a_required_or_broken_dependency(
    suite: pytest.Pytester,
) -> None:
    """The strict failure and the broken import were counted as xfailed (a green run
    without the install step) while the summary said the tests had failed."""
    suite.makepyfile(
        test_xfail="""
        import pytest
        from crank.errors import DependencyBroken
        from crank.testing import ensure_dependency

        @pytest.mark.xfail(reason="rounding bug")
        @pytest.mark.requires("exe:crank-missing-tool")
        def test_required():
            assert 0.1 + 0.2 == 0.3

        @pytest.mark.xfail(reason="rounding bug")
        def test_broken():
            ensure_dependency("crank_broken_mod")

        @pytest.mark.xfail(raises=DependencyBroken, reason="broken on this platform")
        def test_broken_expected():
            ensure_dependency("crank_broken_mod")
        """
    )
    result = suite.runpytest("test_xfail.py", "-rxX", "--crank-require=all")
    result.assert_outcomes(failed=1, errors=1, xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL *test_broken_expected - broken on this platform"])
    assert summary_lines(result) == [
        "crank: 1 test failed - required crank-missing-tool is missing "
        "(apt-get install crank-missing-tool)",
        "crank: 1 test failed - crank_broken_mod is installed but broken "
        "(pip install --force-reinstall crank_broken_mod, "
        "or install the native libraries it needs)",
    ]


def test_the_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires("exe:pandoc")
        def test_x():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)
    assert "requires(*specs)" in pytester.runpytest("--markers").stdout.str()


def test_a_marker_written_wrong_is_an_error_at_its_line(pytester: pytest.Pytester) -> None:
    """Naming nothing, a spec that is not a string or not a spec, a misspelled keyword:
    each test errors at setup with where and how to fix it, never passes unchecked, and
    shows no traceback from inside crank."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires()
        def test_names_nothing():
            pass

        @pytest.mark.requires(3)
        def test_not_a_string():
            pass

        @pytest.mark.requires("numpy>>1")
        def test_not_a_spec():
            pass

        @pytest.mark.requires("exe:sh", hints="apt-get install sh")
        def test_misspelled_keyword():
            pass

        @pytest.mark.requires("exe:sh", reason=3)
        def test_reason_not_a_string():
            pass

        @pytest.mark.requires("exe:sh", reason="needs a shell", hint="apt-get install dash")
        def test_written_right():
            pass

        @pytest.mark.requires("exe:sh", reason=None, hint=None)  # the documented defaults
        def test_defaults_given():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=5)
    result.stdout.fnmatch_lines(
        [
            "*test_a_marker_written_wrong_is_an_error_at_its_line.py:3: @pytest.mark.requires: "
            "names no dependency, so it checks nothing",
            "  hint: write it like @pytest.mark.requires('exe:pandoc>=2.17', *",
            "*.py:7: @pytest.mark.requires: takes spec strings, got 3",
            "*.py:11: @pytest.mark.requires: dependency spec 'numpy>>1': '>>1' is not a version "
            "constraint",
            "*.py:15: @pytest.mark.requires: unknown keyword hints=",
            "  hint: it takes reason= and hint=",
            "*.py:19: @pytest.mark.requires: reason= takes a string, got 3",
        ]
    )
    output = result.stdout.str()
    assert "Traceback" not in output and "crank/testing" not in output
    assert "During handling" not in output


def test_a_bad_spec_is_an_error_not_a_skip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_x():
            ensure_dependency("ex:pandoc")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_bad_spec_is_an_error_not_a_skip.py:4: ensure_dependency: dependency spec "
            "'ex:pandoc': unknown kind 'ex'"
        ]
    )


def test_ensure_dependency_called_wrong_fails_at_the_call_without_a_crank_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_not_a_string():
            ensure_dependency(3)

        def test_not_a_constraint():
            ensure_dependency("numpy>>1")

        def test_hint_not_a_string():
            ensure_dependency("exe:crank-nope", install_hint=3)

        def test_empty_version_command():
            ensure_dependency("exe:sh>=1", version_command="")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*.py:4: ensure_dependency: a dependency spec is a string, got 3",
            "  hint: name a module *",
            "*.py:7: ensure_dependency: dependency spec 'numpy>>1': '>>1' is not a version "
            "constraint",
            "*.py:10: ensure_dependency: install_hint= takes a string, got 3",
            "*.py:13: ensure_dependency: version command '' names no program",
        ]
    )
    output = result.stdout.str()
    assert "Traceback" not in output and "crank/testing" not in output
    assert "AttributeError" not in output


def test_a_plugin_kind_through_an_inline_conftest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from crank.hookspecs import hookimpl
        from crank.plugins import get_plugin_manager
        from crank.testing.dependencies import DependencyResult, clear_dependency_cache

        class LibreOffice:
            @hookimpl
            def crank_register_dependency_checkers(self, register):
                register("libreoffice", lambda spec: DependencyResult.missing(
                    spec, "soffice is not on PATH", hint="apt-get install libreoffice-core"))

        def pytest_configure(config):
            get_plugin_manager().register(LibreOffice(), name="libreoffice-test")
            clear_dependency_cache()

        def pytest_unconfigure(config):
            get_plugin_manager().unregister("libreoffice-test")
            clear_dependency_cache()
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from crank.testing import ensure_dependency

        @pytest.mark.requires("libreoffice")
        def test_marker():
            pass

        def test_call():
            ensure_dependency("libreoffice:calc", skip_message="LibreOffice not available")
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=2)
    assert summary_lines(result) == [
        "crank: 1 test skipped - missing libreoffice (apt-get install libreoffice-core)",
        "crank: 1 test skipped - missing libreoffice:calc (apt-get install libreoffice-core)",
    ]
    result.stdout.fnmatch_lines(
        ["*LibreOffice not available (hint: apt-get install libreoffice-core)"]
    )


def test_without_the_plugin_ensure_dependency_still_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            from crank.testing import ensure_dependency

            def test_x():
                ensure_dependency("exe:crank-missing-tool")
            """
        )
    )
    # No entry point plugin at all (that is also what keeps this subprocess quick).
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(skipped=1)


@pytest.mark.slow
def test_the_summary_survives_xdist(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_dependency("xdist", install_hint="pip install pytest-xdist")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = suite.runpytest_subprocess(
        "-p", "crank.testing.plugin", "-p", "xdist.plugin", "-n", "2"
    )
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    assert summary_lines(result)[0] == (
        "crank: 2 tests skipped - missing crank-missing-tool (apt-get install crank-missing-tool)"
    )


def test_module_and_class_markers_count_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.requires("exe:crank-missing-tool")

        def test_a():
            pass

        @pytest.mark.requires("crank_missing_module")
        class TestB:
            def test_b1(self):
                pass

            def test_b2(self):
                pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(skipped=3)
    # the closest marker is checked first: the class's, then the module's
    assert summary_lines(result) == [
        "crank: 2 tests skipped - missing crank_missing_module (pip install crank_missing_module)",
        "crank: 1 test skipped - missing crank-missing-tool (apt-get install crank-missing-tool)",
    ]


# --- the suite's own dependencies (crank_dependencies) -----------------------------------


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("ex:redis-server", "dependency spec 'ex:redis-server': unknown kind 'ex'"),
        ("redis-server>>7", "dependency spec 'redis-server>>7': '>>7' is not a version constraint"),
    ],
)
def test_a_suite_dependency_written_wrong_stops_the_run_at_start(
    pytester: pytest.Pytester, spec: str, problem: str
) -> None:
    # it matched no dependency, so CI=true silently did not require it
    pytester.makeini(f"[pytest]\ncrank_dependencies =\n    exe:sh\n    {spec}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: crank_dependencies in *tox.ini: {problem}"])


@pytest.mark.parametrize(
    ("environ", "outcome"), [({}, {"skipped": 1}), ({"CI": "true"}, {"failed": 1})]
)
def test_a_suite_dependency_skips_outside_ci_and_fails_in_it(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    outcome: dict[str, int],
) -> None:
    for name, value in environ.items():  # the conftest removed CI and the like
        monkeypatch.setenv(name, value)
    pytester.makeini("[pytest]\ncrank_dependencies =\n    exe:crank-missing-tool\n")
    pytester.makepyfile(
        """
        from crank.testing import ensure_dependency

        def test_needs_the_tool():
            ensure_dependency("exe:crank-missing-tool")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(**outcome)  # type: ignore[arg-type]
    if environ:
        result.stdout.fnmatch_lines(
            [
                "crank: dependencies: dependencies declared in crank_dependencies of tox.ini "
                "required (CI=true)",
                "*strict mode: CI=true and tox.ini declares it*",
            ]
        )


UNMATCHED = "crank: warning: 'crank-misspelt-tool' (--crank-require=*) matched no dependency*"


def test_a_required_name_that_matches_no_dependency_is_reported(suite: pytest.Pytester) -> None:
    """A misspelt --crank-require name required nothing, and -q hid the header that
    named it: a CI job believed itself strict."""
    result = suite.runpytest("-q", "--crank-require=crank-misspelt-tool,crank-missing-tool")
    result.assert_outcomes(passed=1, skipped=1, failed=3)
    result.stdout.fnmatch_lines([UNMATCHED])
    assert "'crank-missing-tool' (" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "name"),
    [
        # only a deselected test's marker names it: not a misspelling
        (("-k", "tool_one"), "crank_missing_module"),
        # checked by ensure_dependency, found available
        ((), "exe:pandoc"),
        # declared by the suite, never checked by a test
        (
            ("-o", "crank_dependencies=exe:crank-declared-tool", "-k", "available"),
            "crank-declared-tool",
        ),
    ],
)
def test_a_required_name_some_dependency_answers_to_is_not_reported(
    suite: pytest.Pytester, args: tuple[str, ...], name: str
) -> None:
    result = suite.runpytest("-q", f"--crank-require={name}", *args)
    assert "matched no dependency" not in result.stdout.str()


@pytest.mark.slow
def test_an_unmatched_required_name_is_reported_under_xdist(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_dependency("xdist", install_hint="pip install pytest-xdist")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = suite.runpytest_subprocess(
        "-p",
        "crank.testing.plugin",
        "-p",
        "xdist.plugin",
        "-n",
        "2",
        "-q",
        "--crank-require=crank-misspelt-tool,exe:pandoc,crank_broken_mod",
    )
    result.stdout.fnmatch_lines([UNMATCHED])
    assert result.stdout.str().count("matched no dependency") == 1
