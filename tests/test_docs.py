"""The generated references in docs/ match the code, and their example is valid."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.cli.group import LazyCommand
from crank.cli.lint import collect_rules
from crank.hookspecs import hookimpl
from crank.manifest.lint import Linter
from crank.plugins import get_plugin_manager

if TYPE_CHECKING:
    from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_docs.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_documented_example_is_a_clean_manifest(tmp_path: Path) -> None:
    example = tmp_path / "crank.yaml"
    example.write_text(load_gen_docs().EXAMPLE, encoding="utf-8")
    # linted on a day the page's example was written for (before its sunset's warning
    # window): with today's date, the test would fail from 30 days before that sunset
    written_for = dt.date(2026, 12, 1)
    findings = Linter(collect_rules(), installed_paths=(), today=written_for).lint_file(example)
    # at most the note that its package is not installed here
    assert [f for f in findings if f.severity != "info"] == []
    assert load_gen_docs().EXAMPLE in (REPO / "docs" / "manifest.md").read_text(encoding="utf-8")


class Ghost:
    @hookimpl
    def crank_register_commands(self, register: Any) -> None:
        register(LazyCommand("ghost", "crank_module_not_written_yet:ghost", "Haunt the CLI."))


def test_a_command_whose_module_is_missing_is_listed_with_a_note() -> None:
    manager = get_plugin_manager()
    manager.register(Ghost(), name="ghost-command")
    try:
        out: list[str] = []
        load_gen_docs()._section(["ghost"], out)
    finally:
        manager.unregister("ghost-command")
    assert out == [
        "## `crank ghost`\n",
        "Haunt the CLI.\n\n*Reference not available: the command could not be loaded "
        "(ModuleNotFoundError).*\n",
    ]


def test_cli_reference_lists_every_command() -> None:
    from crank.cli.builtin import BUILTIN_COMMANDS
    from crank.cli.group import COMMANDS

    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    # crank's own commands; an installed plugin's are documented by the plugin
    builtin = [
        name
        for name, c in get_plugin_manager().collect(COMMANDS).items()
        if c.plugin == "crank.cli.builtin"
    ]
    assert sorted(builtin) == sorted(name for name, _, _ in BUILTIN_COMMANDS)
    for name in builtin:
        assert f"## `crank {name}`" in text


def test_every_local_link_and_picture_in_the_docs_exists() -> None:
    # a renamed page or a screenshot never taken must not leave a dead link behind
    missing, checked = [], 0
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            checked += 1
            if not path.exists():
                missing.append(f"{page.relative_to(REPO)}: {target}")
    assert checked > 7  # the console's screenshots at least
    assert missing == []
