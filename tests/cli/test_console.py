"""``crank --help`` from its cache: the same text, fresh whenever what makes it changes."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import PluginSites

CONSOLE = "import sys; from crank.console import main; sys.exit(main())"


def crank_help(
    cache: Path, *args: str, pythonpath: list[Path] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``crank --help`` through the console script's entry point, with ``-X importtime``."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CRANK_DISABLE_PLUGINS", "CRANK_HELP_CACHE", "PYTHONPATH")
    }
    environ.update(XDG_CACHE_HOME=str(cache), COLUMNS="100", **env)
    if pythonpath:
        environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CONSOLE, *(args or ("--help",))],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def imported_click(result: subprocess.CompletedProcess[str]) -> bool:
    return any(
        line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == "click"
        for line in result.stderr.splitlines()
    )


def messages(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if not line.startswith("import time:")]


def test_the_second_help_comes_from_the_cache(tmp_path: Path) -> None:
    first = crank_help(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Usage: crank [OPTIONS] COMMAND [ARGS]...")
    assert imported_click(first)
    assert [p.parent.name for p in tmp_path.glob("crank/help-*.txt")] == ["crank"]

    second = crank_help(tmp_path)
    assert (second.returncode, second.stdout) == (0, first.stdout)
    assert not imported_click(second)
    assert messages(second) == []
    # the same text as click makes it with the cache off
    uncached = crank_help(tmp_path, CRANK_HELP_CACHE="0")
    assert uncached.stdout == first.stdout
    assert imported_click(uncached)
    # -h too; any other command goes through click
    short = crank_help(tmp_path, "-h")
    assert (short.stdout, imported_click(short)) == (first.stdout, False)
    assert imported_click(crank_help(tmp_path, "lint", "--help"))


@pytest.mark.slow
def test_an_installed_plugin_shows_at_once(tmp_path: Path, test_plugins: PluginSites) -> None:
    before = crank_help(tmp_path)
    assert "hello-testplugin" not in before.stdout
    with_plugin = crank_help(tmp_path, pythonpath=[test_plugins.good])
    assert "hello-testplugin" in with_plugin.stdout
    assert imported_click(with_plugin)
    assert crank_help(tmp_path, pythonpath=[test_plugins.good]).stdout == with_plugin.stdout
    # blocking it changes the text too
    blocked = crank_help(
        tmp_path, pythonpath=[test_plugins.good], CRANK_DISABLE_PLUGINS="testplugin-good"
    )
    assert "hello-testplugin" not in blocked.stdout


@pytest.mark.slow
def test_an_edited_plugin_module_is_read_again(tmp_path: Path, test_plugins: PluginSites) -> None:
    crank_help(tmp_path, pythonpath=[test_plugins.good])
    assert not imported_click(crank_help(tmp_path, pythonpath=[test_plugins.good]))
    # an editable install's module changed: its command's help may have changed
    module = test_plugins.good / "crank_testplugin_good" / "__init__.py"
    stat = module.stat()
    try:
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert imported_click(crank_help(tmp_path, pythonpath=[test_plugins.good]))
    finally:
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.slow
def test_a_broken_plugin_is_warned_about_every_time(
    tmp_path: Path, test_plugins: PluginSites
) -> None:
    for _ in range(2):
        result = crank_help(tmp_path, pythonpath=[test_plugins.broken])
        assert result.returncode == 0
        assert any("warning:" in line for line in messages(result))
        assert imported_click(result)
    assert list(tmp_path.glob("crank/help-*.txt")) == []


def test_a_cache_that_cannot_be_used_is_ignored(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = crank_help(not_a_folder)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: crank")
    assert messages(result) == []

    good = crank_help(tmp_path)
    (cache,) = tmp_path.glob("crank/help-*.txt")
    cache.write_bytes(b"\xff\xfe not a cache")
    again = crank_help(tmp_path)
    assert (again.stdout, imported_click(again)) == (good.stdout, True)
    assert cache.read_text(encoding="utf-8").startswith("crank-help-cache 1\n")
