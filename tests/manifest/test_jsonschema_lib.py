"""jsonschema is imported without rfc3987-syntax, whose import builds a grammar (over a
second), and still checks the IRI formats with it when a schema uses them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_refusing_an_input_does_not_import_the_iri_grammar() -> None:
    out = run_python(
        """
        import sys
        from crank.worker.validation import SchemaValidator

        schema = {"type": "object", "required": ["text"],
                  "properties": {"text": {"type": "string", "format": "email"}}}
        errors = SchemaValidator(schema).errors({"text": 5})
        print(errors[0]["path"], "jsonschema" in sys.modules, "rfc3987_syntax" in sys.modules)
        """
    )
    assert out.split() == ["$.text", "True", "False"]


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("iri", "https://例え.jp/パス?q=1", "not an iri"),
        ("iri-reference", "../パス/x", "a b"),
    ],
)
def test_the_iri_formats_are_checked_as_jsonschema_checks_them(
    fmt: str, good: str, bad: str
) -> None:
    # as jsonschema imported whole answers (it checks them with rfc3987-syntax where
    # that is installed, as with jsonschema[format-nongpl] 4.25 and later), and the
    # grammar is imported only when a schema uses them
    check = (
        f"v = cls({{'format': {fmt!r}}}, format_checker=cls.FORMAT_CHECKER)\n"
        f"print(v.is_valid({good!r}), v.is_valid({bad!r}))\n"
    )
    whole = run_python("import jsonschema\ncls = jsonschema.Draft202012Validator\n" + check)
    ours = run_python(
        "import sys\n"
        "from crank.manifest.jsonschema_lib import draft202012\n"
        "cls = draft202012()\n"
        "print('rfc3987_syntax' in sys.modules)\n" + check
    )
    assert ours.split() == ["False", *whole.split()]
    assert whole.split()[0] == "True"
