"""The ``crank`` console script: ``crank --help`` from a cache, everything else through click.

``crank --help`` lists the commands of every installed plugin, so answering it means
importing click and pluggy and reading every installed distribution's entry points:
about eight times the start of Python itself. Its text only changes when what it is
made of changes, so it is kept in a small file and shown from there while these stay
the same (the *fingerprint*):

* the interpreter, its import path, and the modification time of every folder on
  it (installing or removing a distribution adds or removes a folder there);
* the modification time of crank's own command-line modules and of every plugin
  module that was loaded when the text was made (an edited editable install);
* ``CRANK_DISABLE_PLUGINS`` and the terminal width.

The text is stored only when making it printed nothing on stderr (a plugin that
fails to load is warned about on every run) and ended with status 0. The cache is
``$XDG_CACHE_HOME/crank`` (else ``~/.cache/crank``); ``CRANK_HELP_CACHE=0`` turns it
off, and a cache that cannot be read or written is ignored. This module imports
nothing beyond the standard library's core until it has to.
"""

from __future__ import annotations

import os
import sys

HELP_ARGS = (["--help"], ["-h"])
CACHE_ENV = "CRANK_HELP_CACHE"
#: the first line of a cache file; a file from another format is not read.
FORMAT = "crank-help-cache 1"


def main() -> int:
    """Console-script entry point (``crank``)."""
    if sys.argv[1:] in HELP_ARGS and os.environ.get(CACHE_ENV, "1") != "0":
        return _help()
    from crank.cli import main as cli_main

    return int(cli_main() or 0)


def _cache_file() -> str:
    """One file per interpreter and import path (a crc32 names it: zlib is built in)."""
    import zlib

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = zlib.crc32("\n".join([sys.executable, *sys.path]).encode())
    return os.path.join(base, "crank", f"help-{key:08x}.txt")


def _mtime(path: str) -> str:
    try:
        return str(os.stat(path).st_mtime_ns)
    except OSError:
        return "-"


def _columns() -> int:
    """The width click formats help for (``shutil.get_terminal_size``'s rule, without
    importing shutil and the compression modules it pulls in)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def _fingerprint(files: list[str]) -> str:
    """What the help text is made of, as one line per part (see the module docstring)."""
    cli_dir = os.path.join(os.path.dirname(__file__), "cli")
    try:
        cli_files = sorted(os.path.join(cli_dir, f) for f in os.listdir(cli_dir))
    except OSError:
        cli_files = []
    parts = [  # each labelled and never empty: an empty line ends the header
        f"python={sys.executable} {sys.version}",
        f"disabled={os.environ.get('CRANK_DISABLE_PLUGINS', '')}",
        f"columns={_columns()}",
        *(f"{p}={_mtime(p)}" for p in sys.path),
        *(f"{p}={_mtime(p)}" for p in cli_files if p.endswith(".py")),
        *(f"{p}={_mtime(p)}" for p in files),
    ]
    return "\n".join(part.replace("\n", " ") for part in parts)


def _read_cache(path: str) -> str | None:
    """The cached text when its fingerprint still holds, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    head, sep, text = raw.partition("\n\n")
    lines = head.split("\n")
    if not sep or len(lines) < 2 or lines[0] != FORMAT or not lines[1].isdigit():
        return None
    count = int(lines[1])
    files, fingerprint = lines[2 : 2 + count], "\n".join(lines[2 + count :])
    return text if fingerprint == _fingerprint(files) else None


def _write_cache(path: str, text: str, files: list[str]) -> None:
    header = "\n".join([FORMAT, str(len(files)), *files, _fingerprint(files)])
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(f"{header}\n\n{text}")
        os.replace(temporary, path)  # readers see the old file or the new one, whole
    except OSError:
        pass  # a read-only home: no cache, the next run makes the text again


def _help() -> int:
    path = _cache_file()
    cached = _read_cache(path)
    if cached is not None:
        sys.stdout.write(cached)
        return 0
    import contextlib
    import io

    from crank.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    status: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli_main(sys.argv[1:])
        except SystemExit as exc:
            status = exc.code
    code = status if isinstance(status, int) else (0 if status is None else 1)
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    if code == 0 and not err.getvalue():
        _write_cache(path, out.getvalue(), _plugin_files())
    return code


def _plugin_files() -> list[str]:
    """The source files of every plugin module loaded for the help text."""
    from crank.plugins import get_plugin_manager

    files = set()
    for plugin in get_plugin_manager().pm.get_plugins():
        module = sys.modules.get(getattr(plugin, "__module__", "") or "")
        name = getattr(plugin, "__file__", None) or getattr(module, "__file__", None)
        if isinstance(name, str):
            files.add(name)
    return sorted(files)


__all__ = ["main"]
