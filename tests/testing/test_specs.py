"""How a spec string becomes a kind, a name and a constraint."""

from __future__ import annotations

import pytest

from crank.errors import UsageError
from crank.testing.specs import DependencySpec, parse_spec, redact_url, unmet_constraint

KINDS = {"module", "dist", "exe", "gpu", "nvidia-gpu", "onnxruntime", "redis", "tcp"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("torch", DependencySpec("torch", "module", "torch", "torch")),
        ("numpy>=1.26", DependencySpec("numpy>=1.26", "module", "numpy", "numpy", ">=1.26")),
        ("torch.cuda", DependencySpec("torch.cuda", "module", "torch.cuda", "torch.cuda")),
        ("module:yaml", DependencySpec("module:yaml", "module", "yaml", "yaml")),
        ("exe:pandoc", DependencySpec("exe:pandoc", "exe", "pandoc", "pandoc")),
        (
            "exe:pandoc>=2.17,<4",
            DependencySpec("exe:pandoc>=2.17,<4", "exe", "pandoc", "pandoc", ">=2.17,<4"),
        ),
        (
            "dist:nvidia-ml-py",
            DependencySpec("dist:nvidia-ml-py", "dist", "nvidia-ml-py", "nvidia-ml-py"),
        ),
        ("gpu", DependencySpec("gpu", "gpu", "gpu")),
        ("nvidia-gpu", DependencySpec("nvidia-gpu", "nvidia-gpu", "nvidia-gpu")),
        ("onnxruntime", DependencySpec("onnxruntime", "onnxruntime", "onnxruntime")),
        (
            "onnxruntime:CUDAExecutionProvider",
            DependencySpec(
                "onnxruntime:CUDAExecutionProvider",
                "onnxruntime",
                "onnxruntime:CUDAExecutionProvider",
                "CUDAExecutionProvider",
            ),
        ),
        (
            "redis://127.0.0.1:6379",
            DependencySpec(
                "redis://127.0.0.1:6379",
                "redis",
                "redis://127.0.0.1:6379",
                url="redis://127.0.0.1:6379",
            ),
        ),
    ],
)
def test_kind_is_decided_by_prefix_scheme_or_registered_name(
    raw: str, expected: DependencySpec
) -> None:
    assert parse_spec(raw, KINDS) == expected


def test_a_bare_name_is_a_module_even_when_it_looks_like_a_program() -> None:
    # no heuristics: "pandoc" is the Python module pandoc; the program is exe:pandoc
    assert parse_spec("pandoc", KINDS).kind == "module"
    assert parse_spec("pytest_timeout", KINDS).kind == "module"


def test_a_registered_kind_wins_over_the_module_reading() -> None:
    assert parse_spec("libreoffice", {*KINDS, "libreoffice"}).kind == "libreoffice"
    assert parse_spec("libreoffice", KINDS).kind == "module"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("foo:bar", "dependency spec 'foo:bar': unknown kind 'foo'"),
        ("exe:", "dependency spec 'exe:': nothing after 'exe:'"),
        (
            "numpy>=banana",
            "dependency spec 'numpy>=banana': '>=banana' is not a version constraint",
        ),
        (
            "nvidia-ml-py",
            "dependency spec 'nvidia-ml-py': 'nvidia-ml-py' is not a Python module name",
        ),
        (
            "mongodb://localhost",
            "dependency spec 'mongodb://localhost': no checker for mongodb:// services",
        ),
        ("   ", "empty dependency spec"),
        # these were programs and distributions that do not exist: a skip, forever
        ("exe:pandoc 2.17", "dependency spec 'exe:pandoc 2.17': 'pandoc 2.17' is not a program"),
        ("exe:pandoc,>=2", "dependency spec 'exe:pandoc,>=2': 'pandoc,' is not a program"),
        (
            "dist:pytest 7",
            "dependency spec 'dist:pytest 7': 'pytest 7' is not a distribution name",
        ),
        (
            "dist:nvidia-ml-py@12",
            "dependency spec 'dist:nvidia-ml-py@12': 'nvidia-ml-py@12' is not a distribution name",
        ),
    ],
)
def test_bad_specs_are_usage_errors_with_a_hint(raw: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_spec(raw, KINDS)
    assert caught.value.message == message
    assert caught.value.hint


def test_passwords_never_reach_names() -> None:
    spec = parse_spec("redis://:s3cret@127.0.0.1:6380/0", KINDS)
    assert spec.name == "redis://:***@127.0.0.1:6380/0"
    assert spec.url == "redis://:s3cret@127.0.0.1:6380/0"
    assert redact_url("redis://user:pw@host:1") == "redis://user:***@host:1"


def test_unmet_constraint_explains_the_gap() -> None:
    assert unmet_constraint("pandoc", "2.17.1.1", ">=2.17") is None
    assert (
        unmet_constraint("pandoc", "2.17.1.1", ">=3")
        == "pandoc 2.17.1.1 is installed but >=3 is required"
    )
    assert unmet_constraint("x", None, ">=1") == (
        "x is installed but its version is unknown, so >=1 cannot be checked"
    )
    assert unmet_constraint("x", "1.0", None) is None
