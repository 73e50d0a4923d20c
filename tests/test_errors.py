"""errors.py says where every CrankError lives, and ExitCode documents each status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import crank
from crank.errors import ERROR_HOMES, CrankError, ExitCode


def _every_crank_error() -> dict[type[CrankError], str]:
    found: dict[type[CrankError], str] = {}
    for info in pkgutil.walk_packages(crank.__path__, "crank."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, CrankError)
                and value.__module__ == info.name
            ):
                found[value] = info.name
    return found


def test_every_crank_error_lives_where_errors_py_says() -> None:
    found = _every_crank_error()
    assert len(found) > 20  # the walk saw the whole package
    misplaced = {
        cls.__name__: module
        for cls, module in found.items()
        if module != "crank.errors"
        and not any(
            module.startswith(home) if home.endswith(".") else module == home
            for home in ERROR_HOMES
        )
    }
    assert misplaced == {}
    # and each listed home really holds some
    for home in ERROR_HOMES:
        assert any(
            m.startswith(home) if home.endswith(".") else m == home for m in found.values()
        ), home


def test_every_exit_code_has_a_meaning() -> None:
    assert [code.value for code in ExitCode] == [0, 1, 2, 3, 4, 130]
    assert all(code.meaning for code in ExitCode)
