"""Running crank's console entry point in-process, as a user's shell would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crank.cli import main

if TYPE_CHECKING:
    import pytest


def crank(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the console entry point; its exit status whether returned or raised."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err
