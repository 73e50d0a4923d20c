"""A plugin whose every contribution is broken, through real ``crank`` processes:
each broken contribution is named, none is fatal, everything else works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crank.testing.dependencies import check_dependency, clear_dependency_cache

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[2]
#: An example worker whose committed artifacts match its manifest.
WORKER = REPO / "plugins" / "crank-text-streamer"
PLUGIN = "testplugin-misbehaving"
COMMANDS_FAILED = (
    f"crank plugin {PLUGIN!r} failed in crank_register_commands and was skipped: "
    "RuntimeError: command registration is broken on purpose"
)
SQUATTING = (
    f"crank plugin {PLUGIN!r} registered renderer 'dockerfile', which was skipped: "
    "renderer 'dockerfile' is registered twice ('crank.generate.builtin' registered it first)"
)
RENDER_FAILED = (
    f"renderer 'misbehaving' of plugin {PLUGIN!r} failed: "
    "ValueError: the misbehaving template is corrupt"
)


def test_plugins_lists_each_problem_under_the_plugin(test_plugins: Any, run_crank: Any) -> None:
    sites = [test_plugins.good, test_plugins.misbehaving]
    data = run_crank("plugins", "--format", "json", pythonpath=sites)
    assert data.returncode == 1, data.stderr  # problems found
    by_name = {p["name"]: p for p in json.loads(data.stdout)}
    assert by_name[PLUGIN]["status"] == "loaded"
    assert [(p["hook"], p["kind"]) for p in by_name[PLUGIN]["problems"]] == [
        ("crank_register_commands", "failed"),
        ("crank_register_renderers", "duplicate"),
    ]
    assert by_name["testplugin-good"]["problems"] == []
    # each problem is also said once on stderr, as a plain warning line
    assert data.stderr == f"warning: {COMMANDS_FAILED}\nwarning: {SQUATTING}\n"

    text = run_crank("plugins", pythonpath=sites)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(f"{PLUGIN} "))
    assert lines[row + 1 : row + 3] == [
        "    problem: " + COMMANDS_FAILED.removeprefix(f"crank plugin {PLUGIN!r} "),
        "    problem: " + SQUATTING.removeprefix(f"crank plugin {PLUGIN!r} "),
    ]
    assert lines[-1].endswith(" loaded, 0 failed, 0 blocked; 2 contribution problems")


def test_the_command_line_still_works(test_plugins: Any, run_crank: Any) -> None:
    sites = [test_plugins.good, test_plugins.misbehaving]
    shown = run_crank("--help", pythonpath=sites)
    assert shown.returncode == 0
    assert "  lint " in shown.stdout and "  hello-testplugin " in shown.stdout
    assert shown.stderr == f"warning: {COMMANDS_FAILED}\n"
    hello = run_crank("hello-testplugin", "crank", pythonpath=sites)
    assert (hello.returncode, hello.stdout) == (0, "hello crank from crank-testplugin-good\n")


def test_a_lint_rule_that_raises_is_an_error_finding_naming_it(
    test_plugins: Any, run_crank: Any
) -> None:
    manifest = WORKER / "src" / "crank_text_streamer" / "crank.yaml"
    result = run_crank(
        "lint", "--format", "json", str(manifest), pythonpath=[test_plugins.misbehaving]
    )
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    assert [(f["rule"], f["message"], f["hint"]) for f in findings if f["rule"] == "MIS001"] == [
        (
            "MIS001",
            "rule MIS001 crashed: ZeroDivisionError: MIS001 divides by zero",
            "a bug in the rule; skip it with `# crank-lint: disable=MIS001`",
        )
    ]
    # crank's own rules still ran: the other findings are the clean file's notes at most
    assert {f["severity"] for f in findings if f["rule"] != "MIS001"} <= {"info"}


def test_a_renderer_that_raises_is_named_and_the_rest_is_checked(
    test_plugins: Any, run_crank: Any
) -> None:
    sites = [test_plugins.misbehaving]
    render = run_crank("render", "misbehaving", "--project", str(WORKER), pythonpath=sites)
    assert render.returncode == 2
    assert render.stderr.endswith(
        f"error: {RENDER_FAILED}\n  hint: a bug in the plugin: report it to its authors, or "
        "disable it with CRANK_DISABLE_PLUGINS\n"
    )
    # the squatter did not replace crank's Dockerfile
    dockerfile = run_crank("render", "dockerfile", "--project", str(WORKER), pythonpath=sites)
    assert dockerfile.stdout == (WORKER / "Dockerfile").read_text(encoding="utf-8")

    check = run_crank("check", "--format", "json", str(WORKER), pythonpath=sites)
    assert check.returncode == 1
    (project,) = json.loads(check.stdout)["projects"]
    assert [(f["kind"], f["artifact"], f["message"]) for f in project["findings"]] == [
        (
            "renderer",
            "misbehaving",
            f"{RENDER_FAILED}; its files were left as they are (not checked, not removed)",
        )
    ]
    clean = run_crank("check", str(WORKER), CRANK_DISABLE_PLUGINS=PLUGIN, pythonpath=sites)
    assert clean.returncode == 0, clean.stdout


def test_a_checker_that_raises_is_a_broken_dependency_naming_the_plugin(
    test_plugins: Any, plugins_on_path: Callable[..., None]
) -> None:
    plugins_on_path(test_plugins.misbehaving)
    clear_dependency_cache()
    try:
        result = check_dependency("flaky")
        numpy = check_dependency("numpy")
    finally:
        clear_dependency_cache()
    assert (result.available, result.broken) == (False, True)
    assert result.reason == (
        f"the 'flaky' dependency checker of plugin {PLUGIN!r} "
        "(crank_testplugin_misbehaving.flaky_checker) raised OSError: the flaky probe lost "
        "its device"
    )
    assert numpy.available  # the other kinds are unaffected


@pytest.mark.parametrize("kind", ["commands", "renderers"])
def test_blocking_the_plugin_silences_it(test_plugins: Any, run_crank: Any, kind: str) -> None:
    result = run_crank(
        "plugins", pythonpath=[test_plugins.misbehaving], CRANK_DISABLE_PLUGINS=PLUGIN
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert f"crank_register_{kind}" not in result.stdout
