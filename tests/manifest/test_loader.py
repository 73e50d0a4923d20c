"""Every way a manifest file can be unreadable ends in one positioned CRK001 error."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.errors import ManifestError
from crank.manifest import loader
from crank.manifest.loader import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_document

if TYPE_CHECKING:
    from pathlib import Path


def alias_bomb() -> bytes:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(8):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


#: name -> (file content, line, col, message, json path)
BAD_FILES: dict[str, tuple[bytes, int, int, str, str]] = {
    "alias bomb": (
        alias_bomb(),
        1,
        16,
        f"document expands to more than {MAX_NODES:,} nodes (an alias bomb?)",
        "$",
    ),
    "recursive alias": (
        b"a: &a [1, *a]\n",
        1,
        4,
        "recursive alias: a node contains itself",
        "$",
    ),
    "deep nesting": (
        b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        1,
        104,
        f"nested more than {MAX_DEPTH} levels deep",
        "$",
    ),
    "deep nesting, broken": (
        b"a: " + b"[" * 5000 + b"]" * 4999 + b"\n",
        1,
        104,
        f"nested more than {MAX_DEPTH} levels deep",
        "$",
    ),
    # libyaml builds with a nesting limit (PyYAML 6.0.4's: 1,000) refuse this while
    # scanning ahead; builds without one overflow the C stack composing it.
    "deep nesting, the whole file": (
        b"a: " + b"[" * (MAX_BYTES - 8) + b"\n",
        1,
        104,
        f"nested more than {MAX_DEPTH} levels deep",
        "$",
    ),
    "deep nesting, block style": (
        "".join(f"{' ' * level}k:\n" for level in range(1200)).encode(),
        MAX_DEPTH + 2,
        MAX_DEPTH + 2,
        f"nested more than {MAX_DEPTH} levels deep",
        "$",
    ),
    "binary data": (
        b"apiVersion: x\n\x89PNG\x00\x01",
        2,
        5,
        "file contains binary data (a NUL byte), not YAML text",
        "$",
    ),
    "not a mapping (list)": (
        b"- a\n- b\n",
        1,
        1,
        "the document is a list, expected a mapping of fields",
        "$",
    ),
    "not a mapping (scalar)": (
        b"hello\n",
        1,
        1,
        "the document is a single value, expected a mapping of fields",
        "$",
    ),
    "duplicate keys": (
        b"apiVersion: a\nkind: Worker\napiVersion: b\n",
        3,
        1,
        "duplicate key 'apiVersion' (first defined at line 1)",
        "$.apiVersion",
    ),
    "tabs": (
        b"metadata:\n\tname: x\n",
        2,
        1,
        "YAML syntax error: tab character used for indentation",
        "$",
    ),
    "empty file": (b"", 1, 1, "file is empty (no YAML content)", "$"),
    "only comments": (b"# nothing here\n\n", 1, 1, "file is empty (no YAML content)", "$"),
    "only a document marker": (b"---\n", 1, 1, "file is empty (no YAML content)", "$"),
    "only null": (b"~\n", 1, 1, "file is empty (no YAML content)", "$"),
    # its NUL bytes were reported as binary data
    "utf-16": (
        "apiVersion: crank.dev/v1\n".encode("utf-16"),
        1,
        1,
        "file is UTF-16 text; manifests are UTF-8",
        "$",
    ),
    "invalid utf-8": (b"name: caf\xe9\n", 1, 10, "file is not valid UTF-8 (byte 0xe9)", "$"),
    "multiple documents": (
        b"a: 1\n---\nb: 2\n",
        2,
        1,
        "YAML syntax error: more than one YAML document (a second '---')",
        "$",
    ),
    "python object tag": (
        b"a: !!python/object:os.system {}\n",
        1,
        4,
        "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
        "$.a",
    ),
    "python name tag": (
        b"metadata:\n  name: !!python/name:os.system\n",
        2,
        9,
        "unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'",
        "$.metadata.name",
    ),
    "custom tag": (b"a: !custom 3\n", 1, 4, "unsupported YAML tag '!custom'", "$.a"),
    "tagged key": (
        b"!!python/name:os.system : 1\n",
        1,
        1,
        "a mapping key must be a plain string",
        "$",
    ),
    "complex key": (b"? [a, b]\n: 1\n", 1, 3, "a mapping key must be a plain string", "$"),
    # Python's int() refuses more than sys.get_int_max_str_digits() digits (a ValueError,
    # which escaped as a traceback)
    "huge integer": (
        b"metadata:\n  version: " + b"9" * 5000 + b"\n",
        2,
        12,
        f"cannot read value: the number has more than {sys.get_int_max_str_digits():,} digits",
        "$.metadata.version",
    ),
    "huge integer key": (
        b"metadata:\n  ? " + b"9" * 5000 + b"\n  : 1\n",  # a plain key has at most 1024
        2,
        5,
        f"cannot read value: the number has more than {sys.get_int_max_str_digits():,} digits",
        "$.metadata",
    ),
    # PyYAML raised its own error from the merge, which escaped as a traceback
    "merge of a scalar": (
        b"x: &x 1\ny:\n  k: 1\n  <<: *x\n",
        4,
        3,
        "cannot merge: expected a mapping or list of mappings for merging, but found scalar",
        "$.y",
    ),
    "merge of a list of scalars": (
        b"y:\n  <<: [1, 2]\n",
        2,
        3,
        "cannot merge: expected a mapping for merging, but found scalar",
        "$.y",
    ),
    "duplicate keys beside a merge": (
        b"b: &b {x: 1}\nc: {<<: *b, x: 2, x: 3}\n",
        2,
        19,
        "duplicate key 'x' (first defined at line 2)",
        "$.c.x",
    ),
    "syntax error": (
        b"a: [1, 2\n",
        2,
        1,
        "YAML syntax error: expected ',' or ']', but got '<stream end>'",
        "$",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_one_positioned_error(case: str, tmp_path: Path) -> None:
    content, line, col, message, path = BAD_FILES[case]
    file = tmp_path / "crank.yaml"
    file.write_bytes(content)
    with pytest.raises(ManifestError) as info:
        load_document(file)
    (finding,) = info.value.findings
    assert (finding.line, finding.col, finding.rule) == (line, col, "CRK001")
    assert finding.message == message
    assert finding.json_path == path
    assert finding.hint
    assert str(info.value).startswith(f"{file}:{line}:{col} {message}")


@pytest.mark.parametrize("case", sorted(case for case in BAD_FILES if "deep" in case))
def test_deep_nesting_is_positioned_by_the_pure_python_parser_too(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same answer whether or not PyYAML was built with libyaml."""
    content, line, col, message, _ = BAD_FILES[case]
    monkeypatch.setattr(loader, "_FastLoader", loader._Loader)
    file = tmp_path / "crank.yaml"
    file.write_bytes(content)
    with pytest.raises(ManifestError) as info:
        load_document(file)
    (finding,) = info.value.findings
    assert (finding.line, finding.col, finding.message) == (line, col, message)


def test_nesting_at_the_limit_loads(tmp_path: Path) -> None:
    file = tmp_path / "crank.yaml"
    file.write_bytes(b"a: " + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"\n")
    data = load_document(file).data["a"]
    for _ in range(MAX_DEPTH - 1):
        (data,) = data
    assert data == []


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_through_the_cli(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content, line, col, message, path = BAD_FILES[case]
    (tmp_path / "crank.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lint", "crank.yaml"])
    assert result.exit_code == 1
    first, hint, summary = result.output.splitlines()
    assert first == f"crank.yaml:{line}:{col} CRK001 {message} [{path}]"
    assert hint.startswith("    hint: ")
    assert summary == "1 error, 0 warnings in 1 file"
    assert "Traceback" not in result.output


def test_a_huge_integer_is_a_usage_error_outside_lint(tmp_path: Path) -> None:
    manifest = tmp_path / "crank.yaml"
    manifest.write_bytes(b"apiVersion: crank.dev/v1\nmetadata:\n  version: " + b"9" * 5000)
    for command in (["routes", "--worker"], ["test-worker"], ["compat", str(manifest)]):
        result = CliRunner().invoke(cli, [*command, str(manifest)])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith(
            f"error: {manifest}:3:12 cannot read value: the number has more than "
        ), command


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    file = tmp_path / "crank.yaml"
    with file.open("wb") as fh:  # 50 MB, sparse: refused on its size
        fh.truncate(50 * 1024 * 1024)
    with pytest.raises(ManifestError) as info:
        load_document(file)
    (finding,) = info.value.findings
    assert finding.message == (
        f"file is 52,428,800 bytes; manifests are limited to {MAX_BYTES:,} bytes"
    )
    assert (finding.line, finding.col) == (1, 1)


def test_huge_file_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "crank.yaml").open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lint"])
    assert (result.exit_code, result.output) == (
        1,
        f"crank.yaml:1:1 CRK001 file is 52,428,800 bytes; manifests are limited to {MAX_BYTES:,} "
        "bytes [$]\n"
        "    hint: a crank.yaml describes capabilities; keep large schemas and data out of it\n"
        "1 error, 0 warnings in 1 file\n",
    )


def test_stream_without_size_is_cut_at_the_limit(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "crank.yaml"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as fh, contextlib.suppress(BrokenPipeError):
            fh.write(b"a" * (MAX_BYTES + 4096))

    writer = threading.Thread(target=feed)
    writer.start()
    with pytest.raises(ManifestError) as info:
        load_document(fifo)
    writer.join(timeout=10)
    assert info.value.findings[0].message == (
        f"file is larger than {MAX_BYTES:,} bytes, the limit for manifests"
    )


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_document(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="is a directory, not a manifest file"):
        load_document(tmp_path)


def test_a_file_that_cannot_be_read_carries_a_finding_and_a_hint(tmp_path: Path) -> None:
    """So ``crank lint`` reports it with the other files' findings, and every other
    command says how to fix it."""
    link = tmp_path / "crank.yaml"
    link.symlink_to("gone.yaml")
    for path, why, hint in [
        (
            link,
            "is a symbolic link to gone.yaml, which does not exist",
            "point the link at a manifest, or remove it",
        ),
        (
            tmp_path,
            "is a directory, not a manifest file",
            "give the crank.yaml inside it, or the path of a manifest file",
        ),
        (tmp_path / "nope.yaml", "no such file", "check the path"),
    ]:
        with pytest.raises(ManifestError) as info:
            load_document(path)
        assert (info.value.message, info.value.hint) == (f"{path}: {why}", hint)
        [finding] = info.value.findings
        assert (finding.file, finding.line, finding.col, finding.rule) == (
            str(path),
            1,
            1,
            "CRK001",
        )
        assert (finding.message, finding.hint) == (why, hint)


def test_positions_of_values_and_keys(tmp_path: Path) -> None:
    file = tmp_path / "crank.yaml"
    file.write_text("a:\n  b: [1, {c: x}]\n  'd': yes\n", encoding="utf-8")
    doc = load_document(file)
    assert doc.data == {"a": {"b": [1, {"c": "x"}], "d": True}}
    assert doc.position(("a", "b", 1, "c")) == (2, 14)
    assert doc.position(("a", "b", 1, "c"), key=True) == (2, 11)
    assert doc.position(("a", "d"), key=True) == (3, 3)
    # a path that does not exist falls back to its nearest ancestor
    assert doc.position(("a", "b", 1, "zzz")) == (2, 10)


def test_dates_stay_strings_and_bom_is_dropped(tmp_path: Path) -> None:
    file = tmp_path / "crank.yaml"
    file.write_bytes("\ufeffsunset: 2027-03-31\n".encode())
    assert load_document(file).data == {"sunset": "2027-03-31"}


def test_merge_keys_are_resolved(tmp_path: Path) -> None:
    file = tmp_path / "crank.yaml"
    file.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", encoding="utf-8")
    assert load_document(file).data["other"] == {"x": 1, "y": 2}


def test_a_key_of_its_own_overrides_a_merged_one(tmp_path: Path) -> None:
    """YAML's merge semantics: the mapping's own keys win, then the earlier merge source.
    Overriding a merged key was reported as a duplicate key."""
    file = tmp_path / "crank.yaml"
    file.write_text(
        "a: &a {x: 1, y: 2}\n"
        "b: &b {x: 9, z: 3}\n"
        "c: &c\n  <<: [*a, *b]\n  y: 5\n"
        "d: *c\n",  # met again through an alias: flattened once, same answer
        encoding="utf-8",
    )
    doc = load_document(file)
    assert doc.data["c"] == {"x": 1, "y": 5, "z": 3}
    assert doc.data["d"] == doc.data["c"]
    assert doc.position(("c", "y")) == (5, 6)  # the overriding value, not the merged one


def test_plain_keys_keep_their_spelling(tmp_path: Path) -> None:
    """A key YAML reads as a boolean or a number was turned into Python's spelling of
    it: ``on:`` became the key 'True' and ``1.10:`` the key '1.1'."""
    file = tmp_path / "crank.yaml"
    file.write_text("m: {on: 1, no: 2, 1.10: 3, 0x1F: 4, 7: 5}\n", encoding="utf-8")
    assert load_document(file).data["m"] == {"on": 1, "no": 2, "1.10": 3, "0x1F": 4, "7": 5}


def test_unique_key_loader_refuses_a_key_given_twice_and_allows_merge_overrides() -> None:
    import yaml

    from crank.manifest.loader import UniqueKeyLoader, describe_yaml_error

    merged = "base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  a: 3\n"
    assert yaml.load(merged, Loader=UniqueKeyLoader) == {
        "base": {"a": 1, "b": 2},
        "x": {"a": 3, "b": 2},
    }
    with pytest.raises(yaml.MarkedYAMLError) as caught:
        yaml.load("x:\n  a: 1\n  b: 2\n  a: 3\n", Loader=UniqueKeyLoader)
    assert describe_yaml_error(caught.value) == (
        4,
        3,
        "duplicate key 'a' (first defined at line 2)",
        "YAML keeps only one value per key; remove or rename one of them",
    )
