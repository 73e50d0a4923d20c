"""Each CRK1xx rule: a manifest that breaks it, the exact finding, and one that passes."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

import crank
from crank.manifest.lint import Linter
from crank.manifest.rules import (
    CRANK_ANSWER_CODES,
    CRANK_SHARED_CODES,
    CRANK_TASK_ERROR_CODES,
    RULES,
)
from crank.worker.lint_rules import ENTRYPOINT_RULE

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TODAY = dt.date(2026, 11, 22)

HEAD = """\
apiVersion: crank.dev/v1
kind: Worker
metadata: {name: demo, version: 1.0.0}
worker:
  entrypoint: demo_not_installed.worker:Demo
"""


def cap(cid: str, extra: str = "") -> str:
    return (
        f"  - id: {cid}\n    version: 1.0.0\n"
        f"    input: {{type: object}}\n    output: {{type: object}}\n{extra}"
    )


Row = tuple[str, int, int, str, str, str]


def run(
    path: Path, *, today: dt.date = TODAY, installed: tuple[Path, ...] = (), only: str | None = None
) -> list[Row]:
    linter = Linter((*RULES, ENTRYPOINT_RULE), today=today, installed_paths=installed)
    return [
        (f.rule, f.line, f.col, f.severity, f.message, f.json_path)
        for f in linter.lint_file(path)
        if only is None or f.rule == only
    ]


@pytest.fixture
def manifest(write_manifest: Callable[..., Path]) -> Callable[..., Path]:
    def make(body: str, name: str = "crank.yaml") -> Path:
        return write_manifest(HEAD + textwrap.dedent(body), name)

    return make


def test_valid_manifest_has_only_the_not_installed_note(manifest: Callable[..., Path]) -> None:
    path = manifest("capabilities:\n" + cap("demo.echo"))
    assert run(path) == [
        (
            "CRK108",
            5,
            15,
            "info",
            "entrypoint not checked: module 'demo_not_installed.worker' is not installed",
            "$.worker.entrypoint",
        )
    ]


def test_crk101_duplicate_ids(manifest: Callable[..., Path]) -> None:
    path = manifest("capabilities:\n" + cap("demo.echo") + cap("demo.echo"))
    assert run(path, only="CRK101") == [
        (
            "CRK101",
            11,
            9,
            "error",
            "capability id 'demo.echo' is declared twice (first at line 7)",
            "$.capabilities[1].id",
        )
    ]


def test_crk101_legacy_route_twice(manifest: Callable[..., Path]) -> None:
    """Lint passed it, and the router then refused to load the manifest."""
    path = manifest(
        "capabilities:\n"
        + cap("demo.a")
        + cap("demo.b")
        + "deprecated:\n"
        + "  - {id: demo.x, replaced_by: [demo.a], sunset: 2027-12-01, legacy_routes: [/x]}\n"
        + "  - {id: demo.y, replaced_by: [demo.b], sunset: 2027-12-01, legacy_routes: [/y, /x]}\n"
    )
    assert run(path, only="CRK101") == [
        (
            "CRK101",
            17,
            81,
            "error",
            "legacy route '/x' is declared twice (first at line 16)",
            "$.deprecated[1].legacy_routes[1]",
        )
    ]


def test_crk101_an_error_code_env_variable_or_system_dependency_twice(
    write_manifest: Callable[..., Path],
) -> None:
    """Each was taken silently: one entry's retryable flag, default or check lost."""
    path = write_manifest(
        HEAD
        + "  env:\n    - {name: MODEL_DIR}\n    - {name: MODEL_DIR, default: /models}\n"
        + "dependencies:\n  system:\n"
        + '    - {name: pandoc, check: "exe:pandoc"}\n'
        + '    - {name: pandoc, check: "exe:pandoc>=3"}\n'
        + "capabilities:\n"
        + cap(
            "demo.echo",
            "    errors:\n      - {code: BAD, retryable: true}\n"
            "      - {code: OTHER}\n      - {code: BAD}\n",
        )
        + cap("demo.other", "    errors: [{code: BAD}]\n")
    )
    assert run(path, only="CRK101") == [
        (
            "CRK101",
            8,
            14,
            "error",
            "environment variable 'MODEL_DIR' is declared twice (first at line 7)",
            "$.worker.env[1].name",
        ),
        (
            "CRK101",
            12,
            14,
            "error",
            "system dependency 'pandoc' is declared twice (first at line 11)",
            "$.dependencies.system[1].name",
        ),
        (
            "CRK101",
            21,
            16,
            "error",
            "error code 'BAD' is declared twice (first at line 19)",
            "$.capabilities[0].errors[2].code",
        ),
    ]


def test_crk102_id_declared_by_another_installed_manifest(
    manifest: Callable[..., Path], tmp_path: Path
) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = other_dir / "crank.yaml"
    other.write_text(
        HEAD.replace("name: demo", "name: other") + "capabilities:\n" + cap("demo.echo"),
        encoding="utf-8",
    )
    path = manifest("capabilities:\n" + cap("demo.echo") + cap("demo.unique"))
    assert run(path, installed=(other,), only="CRK102") == [
        (
            "CRK102",
            7,
            9,
            "error",
            f"capability id 'demo.echo' is also declared by installed worker 'other' ({other})",
            "$.capabilities[0].id",
        )
    ]
    # the file itself, installed, is not compared with itself
    assert run(path, installed=(path,), only="CRK102") == []


def test_crk102_an_installed_copy_of_the_same_worker_is_no_clash(
    manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """``pip install .`` puts a copy of the manifest in site-packages: not another worker."""
    site = tmp_path / "site-packages" / "demo"
    site.mkdir(parents=True)
    installed_copy = site / "crank.yaml"
    installed_copy.write_text(HEAD + "capabilities:\n" + cap("demo.echo"), encoding="utf-8")
    path = manifest("capabilities:\n" + cap("demo.echo") + cap("demo.unique"))
    assert run(path, installed=(installed_copy,), only="CRK102") == []


def test_crk103_a_new_version_that_drops_a_replacement_is_caught_despite_the_installed_copy(
    manifest: Callable[..., Path], tmp_path: Path
) -> None:
    site = tmp_path / "site-packages" / "demo"
    site.mkdir(parents=True)
    old_copy = site / "crank.yaml"  # the installed old version still has demo.v2
    old_copy.write_text(
        HEAD + "capabilities:\n" + cap("demo.v2") + cap("demo.other"), encoding="utf-8"
    )
    new_version = manifest(
        "capabilities:\n"
        + cap("demo.other")
        + "deprecated:\n  - id: demo.v1\n    replaced_by: [demo.v2]\n    sunset: 2030-01-01\n"
    )
    assert run(new_version, installed=(old_copy,), only="CRK103") == [
        (
            "CRK103",
            13,
            19,
            "error",
            "replacement 'demo.v2' is not a capability of this manifest or of any installed worker",
            "$.deprecated[0].replaced_by[0]",
        )
    ]


def test_crk103_a_deprecated_id_may_be_replaced_by_another_but_not_in_a_loop(
    manifest: Callable[..., Path],
) -> None:
    """docs/capabilities.md: 'A deprecated id may point at another deprecated id (renamed
    twice); the router follows the chain.' Lint refused such a chain as a missing
    replacement, and passed a loop, which the router refuses on every call."""
    chain = manifest(
        "capabilities:\n"
        + cap("demo.v3")
        + "deprecated:\n"
        + "  - {id: demo.v1, replaced_by: [demo.v2], sunset: 2030-01-01}\n"
        + "  - {id: demo.v2, replaced_by: [demo.v3], sunset: 2030-01-01}\n"
    )
    assert run(chain, only="CRK103") == []
    loop = manifest(
        "capabilities:\n"
        + cap("demo.v3")
        + "deprecated:\n"
        + "  - {id: demo.v1, replaced_by: [demo.v2], sunset: 2030-01-01}\n"
        + "  - id: demo.v2\n    replaced_by: [demo.v3, demo.v1]\n"
        + "    shim: {select_by: t, map: {a: demo.v3, b: demo.v1}, default: a}\n"
        + "    sunset: 2030-01-01\n",
        name="loop.crank.yaml",
    )
    assert run(loop, only="CRK103") == [
        (
            "CRK103",
            12,
            10,
            "error",
            "deprecated capability 'demo.v1' routes back to itself: demo.v1 -> demo.v2 -> demo.v1",
            "$.deprecated[0].id",
        ),
        (
            "CRK103",
            13,
            9,
            "error",
            "deprecated capability 'demo.v2' routes back to itself: demo.v2 -> demo.v1 -> demo.v2",
            "$.deprecated[1].id",
        ),
    ]


def test_crk103_replacement_must_exist(manifest: Callable[..., Path], tmp_path: Path) -> None:
    body = (
        "capabilities:\n"
        + cap("demo.new")
        + (
            "deprecated:\n"
            "  - id: demo.old\n"
            "    replaced_by: [demo.new, demo.elsewhere, demo.gone]\n"
            "    shim: {select_by: kind, map: {a: demo.new, b: demo.elsewhere, c: demo.gone}}\n"
            "    sunset: 2030-01-01\n"
        )
    )
    path = manifest(body)
    other = tmp_path / "other.crank.yaml"
    other.write_text(
        HEAD.replace("name: demo", "name: other") + "capabilities:\n" + cap("demo.elsewhere"),
        encoding="utf-8",
    )
    assert run(path, installed=(other,), only="CRK103") == [
        (
            "CRK103",
            13,
            45,
            "error",
            "replacement 'demo.gone' is not a capability of this manifest "
            "or of any installed worker",
            "$.deprecated[0].replaced_by[2]",
        )
    ]


def test_crk104_split_needs_a_consistent_shim(manifest: Callable[..., Path]) -> None:
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + cap("demo.b")
        + (
            "deprecated:\n"
            "  - id: demo.old\n"
            "    replaced_by: [demo.a, demo.b]\n"
            "    sunset: 2030-01-01\n"
            "  - id: demo.older\n"
            "    replaced_by: [demo.a, demo.b]\n"
            "    shim:\n"
            "      select_by: kind\n"
            "      map: {a: demo.a, x: demo.other}\n"
            "      default: b\n"
            "    sunset: 2030-01-01\n"
        )
    )
    assert run(manifest(body), only="CRK104") == [
        (
            "CRK104",
            17,
            18,
            "error",
            "'demo.old' is split into 2 capabilities but has no shim, "
            "so old clients cannot be routed",
            "$.deprecated[0].replaced_by",
        ),
        (
            "CRK104",
            23,
            27,
            "error",
            "shim maps 'x' to 'demo.other', which is neither in replaced_by nor a capability "
            "of this manifest or of any installed worker, so a call whose 'kind' is 'x' cannot "
            "be routed",
            "$.deprecated[1].shim.map.x",
        ),
        (
            "CRK104",
            24,
            16,
            "error",
            "shim default 'b' is not a key of shim.map, so a call without 'kind' cannot be routed",
            "$.deprecated[1].shim.default",
        ),
    ]


def test_crk104_a_shim_may_map_outside_replaced_by_only_to_a_declared_id(
    manifest: Callable[..., Path],
) -> None:
    """Routed all the same, but replaced_by no longer tells clients where calls go."""
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + cap("demo.b")
        + cap("demo.c")
        + (
            "deprecated:\n"
            "  - id: demo.old\n"
            "    replaced_by: [demo.a, demo.b]\n"
            "    shim: {select_by: kind, map: {a: demo.a, c: demo.c}}\n"
            "    sunset: 2030-01-01\n"
        )
    )
    assert [(f[4], f[5]) for f in run(manifest(body), only="CRK104")] == [
        ("shim maps 'c' to 'demo.c', which is not in replaced_by", "$.deprecated[0].shim.map.c")
    ]


def test_crk104_single_replacement_needs_no_shim(manifest: Callable[..., Path]) -> None:
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + ("deprecated:\n  - id: demo.old\n    replaced_by: [demo.a]\n    sunset: 2030-01-01\n")
    )
    assert run(manifest(body), only="CRK104") == []


DEPRECATION = (
    "deprecated:\n"
    "  - id: demo.old\n"
    "    replaced_by: [demo.a]\n"
    "    deprecated_since: {since}\n"
    "    sunset: {sunset}\n"
)


def test_crk105_sunset_after_deprecated_since(manifest: Callable[..., Path]) -> None:
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + DEPRECATION.format(since="2030-02-01", sunset="2030-01-01")
    )
    assert run(manifest(body), only="CRK105") == [
        (
            "CRK105",
            15,
            13,
            "error",
            "sunset 2030-01-01 is not after deprecated_since 2030-02-01",
            "$.deprecated[0].sunset",
        )
    ]
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + DEPRECATION.format(since="2029-02-01", sunset="2030-01-01")
    )
    assert run(manifest(body), only="CRK105") == []


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2029, 12, 1), None),
        (
            dt.date(2029, 12, 2),
            ("warning", "'demo.old' reaches its sunset in 30 days (2030-01-01)"),
        ),
        (dt.date(2029, 12, 31), ("warning", "'demo.old' reaches its sunset in 1 day (2030-01-01)")),
        (dt.date(2030, 1, 1), ("warning", "'demo.old' reaches its sunset today (2030-01-01)")),
        (
            dt.date(2030, 1, 2),
            ("error", "'demo.old' passed its sunset on 2030-01-01; calls are answered 410 Gone"),
        ),
    ],
)
def test_crk106_sunset_warning_then_error(
    manifest: Callable[..., Path], today: dt.date, expected: tuple[str, str] | None
) -> None:
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + DEPRECATION.format(since="2029-01-01", sunset="2030-01-01")
    )
    rows = run(manifest(body), today=today, only="CRK106")
    if expected is None:
        assert rows == []
    else:
        assert rows == [("CRK106", 15, 13, *expected, "$.deprecated[0].sunset")]


def test_crk107_input_output_must_be_json_schemas(manifest: Callable[..., Path]) -> None:
    body = (
        "capabilities:\n"
        "  - id: demo.a\n"
        "    version: 1.0.0\n"
        "    input: {type: object, properties: {text: {type: strng}}}\n"
        "    output: {type: object, required: yes}\n"
    )
    rows = run(manifest(body), only="CRK107")
    assert [(r[1], r[2], r[5]) for r in rows] == [
        (9, 53, "$.capabilities[0].input.properties.text.type"),
        (10, 38, "$.capabilities[0].output.required"),
    ]
    assert rows[0][4].startswith('input is not a valid JSON Schema: "strng" is not valid')
    assert rows[1][4] == 'output is not a valid JSON Schema: true is not of type "array"'


def test_crk107_a_ref_that_does_not_resolve(manifest: Callable[..., Path]) -> None:
    """CRK112 crashed on it ("a bug in the rule"), and every call would have failed."""
    body = (
        "capabilities:\n"
        "  - id: demo.a\n"
        "    version: 1.0.0\n"
        "    input:\n"
        "      $defs: {text: {type: string}}\n"
        "      properties:\n"
        "        a: {$ref: '#/$defs/text'}\n"
        "        b: {$ref: '#/$defs/txet'}\n"
        "        c: {$ref: input.json}\n"
        "        d: {const: {$ref: data.json}}\n"
        "    output: {type: object}\n"
        "    examples: [{input: {a: x}}]\n"
    )
    rows = run(manifest(body), only=None)
    assert [r for r in rows if r[0] in ("CRK107", "CRK112")] == [
        (
            "CRK107",
            13,
            19,
            "error",
            "input schema: $ref '#/$defs/txet' does not resolve within the schema",
            "$.capabilities[0].input.properties.b.$ref",
        ),
        (
            "CRK107",
            14,
            19,
            "error",
            "input schema: $ref 'input.json' points outside the schema (a file or URL); "
            "a capability's schema must be self-contained",
            "$.capabilities[0].input.properties.c.$ref",
        ),
    ]


def test_crk108_entrypoint_mismatch_and_import_errors(
    manifest: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "site" / "crk108_worker"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "worker.py").write_text(
        "from crank.worker import WorkerApplication, capability\n"
        "class Demo(WorkerApplication):\n"
        "    @capability('demo.a')\n"
        "    def a(self, data, ctx):\n"
        "        return {}\n"
        "    @capability('demo.extra')\n"
        "    def extra(self, data, ctx):\n"
        "        return {}\n"
        "class NotAWorker:\n"
        "    pass\n"
    )
    (pkg / "raises.py").write_text("raise ImportError('libfoo.so missing')\n")
    (pkg / "needs.py").write_text("import crk108_dependency_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for mod in [m for m in sys.modules if m.startswith("crk108_worker")]:
        monkeypatch.delitem(sys.modules, mod)

    def entry(target: str) -> Path:
        text = HEAD.replace("demo_not_installed.worker:Demo", target)
        path = tmp_path / "crank.yaml"
        path.write_text(text + "capabilities:\n" + cap("demo.a") + cap("demo.b"), encoding="utf-8")
        return path

    assert run(entry("crk108_worker.worker:Demo"), only="CRK108") == [
        (
            "CRK108",
            5,
            15,
            "error",
            "crk108_worker.worker:Demo handles 'demo.extra', not declared in this manifest",
            "$.worker.entrypoint",
        ),
        (
            "CRK108",
            11,
            9,
            "error",
            "crk108_worker.worker:Demo has no @capability('demo.b') handler",
            "$.capabilities[1].id",
        ),
    ]
    assert run(entry("crk108_worker.worker:Missing"), only="CRK108") == [
        (
            "CRK108",
            5,
            15,
            "error",
            "worker 'demo': 'crk108_worker.worker' has no attribute 'Missing'",
            "$.worker.entrypoint",
        )
    ]
    assert run(entry("crk108_worker.worker:NotAWorker"), only="CRK108")[0][4] == (
        "worker 'demo': crk108_worker.worker:NotAWorker is not a WorkerApplication subclass"
    )
    # installed, but the import fails: an error naming the real exception
    assert run(entry("crk108_worker.raises:Demo"), only="CRK108")[0][3:5] == (
        "error",
        "module 'crk108_worker.raises' is installed but fails to import: "
        "ImportError: libfoo.so missing",
    )
    assert run(entry("crk108_worker.needs:Demo"), only="CRK108")[0][3:5] == (
        "error",
        "module 'crk108_worker.needs' is installed but fails to import: "
        "ModuleNotFoundError: No module named 'crk108_dependency_not_installed'",
    )
    assert run(entry("crk108_worker.nowhere:Demo"), only="CRK108")[0][3:5] == (
        "error",
        "entrypoint module 'crk108_worker.nowhere' does not exist in the installed package "
        "'crk108_worker'",
    )
    # not installed at all: only a note, the handlers cannot be checked
    assert run(entry("crk108_not_installed_at_all.worker:Demo"), only="CRK108")[0][3:5] == (
        "info",
        "entrypoint not checked: module 'crk108_not_installed_at_all.worker' is not installed",
    )


def test_crk108_skipped_when_the_schema_fails(manifest: Callable[..., Path]) -> None:
    path = manifest("capabilities: []\n")
    assert run(path, only="CRK108") == []


@pytest.mark.parametrize(
    ("line", "expected_col", "kind", "json_path"),
    [
        (
            "    description: key AKIAABCDEFGHIJKLMNOP\n",
            22,
            "an AWS access key id",
            "$.capabilities[0].description",
        ),
        (
            "    description: ghp_" + "a1B2" * 9 + "\n",
            18,
            "a GitHub token",
            "$.capabilities[0].description",
        ),
        (
            "    description: sk-proj-" + "Ab3d" * 6 + "\n",
            18,
            "an API secret key (sk-...)",
            "$.capabilities[0].description",
        ),
        (
            "    description: q8Xz3LmP0vR7tY2wK9sB4nD6hJ1fG5cA\n",
            18,
            "a high-entropy token",
            "$.capabilities[0].description",
        ),
        ("    # old key: AKIAABCDEFGHIJKLMNOP\n", 16, "an AWS access key id", "$"),
        (
            "    description: 'queue at amqp://guest:s3cr3t@rabbit:5672/'\n",
            28,
            "a URL with a password",
            "$.capabilities[0].description",
        ),
    ],
)
def test_crk109_secret_shaped_tokens(
    manifest: Callable[..., Path], line: str, expected_col: int, kind: str, json_path: str
) -> None:
    path = manifest("capabilities:\n" + cap("demo.a", line))
    assert run(path, only="CRK109") == [
        ("CRK109", 11, expected_col, "error", f"value looks like {kind}", json_path)
    ]


def test_crk109_private_key_block(manifest: Callable[..., Path]) -> None:
    extra = (
        "    description: |\n"
        "      -----BEGIN RSA PRIVATE KEY-----\n"
        "      MIIEowIBAAKCAQEA\n"
        "      -----END RSA PRIVATE KEY-----\n"
    )
    assert run(manifest("capabilities:\n" + cap("demo.a", extra)), only="CRK109") == [
        (
            "CRK109",
            12,
            7,
            "error",
            "value looks like a private key block",
            "$.capabilities[0].description",
        )
    ]


def test_crk109_credential_keys_and_secret_defaults(manifest: Callable[..., Path]) -> None:
    body = (
        "  env:\n"
        "    - {name: DB_PASSWORD, secret: true, default: hunter2}\n"
        "    - {name: API_TOKEN, secret: true, default: '${API_TOKEN}'}\n"
        "    - {name: LOG_LEVEL, default: info}\n"
        "capabilities:\n"
        + cap(
            "demo.a", "    examples:\n      - input: {password: 'hunter2', token: '<your token>'}\n"
        )
    )
    rows = run(manifest(body), only="CRK109")
    assert rows == [
        (
            "CRK109",
            7,
            50,
            "error",
            "secret variable 'DB_PASSWORD' has a literal default",
            "$.worker.env[0].default",
        ),
        (
            "CRK109",
            16,
            27,
            "error",
            "'password' holds a literal credential",
            "$.capabilities[0].examples[0].input.password",
        ),
    ]


def test_crk109_a_credential_named_variable_has_no_literal_default(
    manifest: Callable[..., Path],
) -> None:
    """Only `secret: true` variables were checked: a DB_PASSWORD default, or a URL
    carrying its password, passed. Placeholders still do."""
    body = (
        "  env:\n"
        "    - {name: DB_PASSWORD, default: hunter2}\n"
        "    - {name: API_KEY, default: '${API_KEY}'}\n"
        "    - {name: DB_URL, default: 'postgres://app:${DB_PASS}@db/app'}\n"
        "    - {name: CACHE_URL, default: 'redis://:pw0rd@cache:6379/0'}\n"
        "capabilities:\n" + cap("demo.a")
    )
    assert run(manifest(body), only="CRK109") == [
        (
            "CRK109",
            7,
            36,
            "error",
            "variable 'DB_PASSWORD', named like a credential, has a literal default",
            "$.worker.env[0].default",
        ),
        (
            "CRK109",
            10,
            35,
            "error",
            "value looks like a URL with a password",
            "$.worker.env[3].default",
        ),
    ]


def test_crk110_deprecated_id_still_active(manifest: Callable[..., Path]) -> None:
    body = (
        "capabilities:\n"
        + cap("demo.a")
        + cap("demo.old")
        + ("deprecated:\n  - id: demo.old\n    replaced_by: [demo.a]\n    sunset: 2030-01-01\n")
    )
    assert run(manifest(body), only="CRK110") == [
        (
            "CRK110",
            16,
            9,
            "error",
            "'demo.old' is both deprecated and an active capability",
            "$.deprecated[0].id",
        )
    ]


def test_crk111_min_above_max(write_manifest: Callable[..., Path]) -> None:
    text = HEAD + "  scaling: {min_workers: 5, max_workers: 2}\ncapabilities:\n" + cap("demo.a")
    assert run(write_manifest(text), only="CRK111") == [
        (
            "CRK111",
            6,
            26,
            "error",
            "min_workers (5) is greater than max_workers (2)",
            "$.worker.scaling.min_workers",
        )
    ]


def test_crk111_min_above_the_default_max(write_manifest: Callable[..., Path]) -> None:
    """min_workers: 5 alone linted clean, and the renderers quietly raised max to 5."""
    text = HEAD + "  scaling: {min_workers: 5}\ncapabilities:\n" + cap("demo.a")
    assert run(write_manifest(text), only="CRK111") == [
        (
            "CRK111",
            6,
            26,
            "error",
            "min_workers (5) is greater than max_workers (4, its default)",
            "$.worker.scaling.min_workers",
        )
    ]


def test_crk112_examples_match_input_schema(manifest: Callable[..., Path]) -> None:
    body = (
        "capabilities:\n"
        "  - id: demo.a\n"
        "    version: 1.0.0\n"
        "    input: {type: object, properties: {n: {type: integer}}}\n"
        "    output: {type: object}\n"
        "    examples:\n"
        "      - input: {n: 1}\n"
        "      - input: {n: one}\n"
    )
    assert run(manifest(body), only="CRK112") == [
        (
            "CRK112",
            13,
            20,
            "error",
            'example input does not match the input schema: "one" is not of type "integer"',
            "$.capabilities[0].examples[1].input.n",
        )
    ]


def test_crk113_an_unquoted_comma_in_a_flow_mapping_cuts_a_description(
    manifest: Callable[..., Path],
) -> None:
    # the doc-converter's manifest had this line: YAML reads '<html> wrapper).' as a key
    body = (
        "capabilities:\n"
        "  - id: demo.a\n"
        "    version: 1.0.0\n"
        "    input:\n"
        "      type: object\n"
        "      properties:\n"
        "        standalone: {type: boolean, description: A whole page (headers, <html> body).}\n"
        "    output: {type: object}\n"
    )
    assert run(manifest(body), only="CRK113") == [
        (
            "CRK113",
            12,
            73,
            "error",
            "input schema: '<html> body).' is not a JSON Schema keyword with no value: probably "
            "the tail of a text cut short",
            "$.capabilities[0].input.properties.standalone.<html> body).",
        )
    ]


def test_crk113_unknown_keywords_and_nulls_anywhere_in_a_schema(
    manifest: Callable[..., Path],
) -> None:
    body = (
        "capabilities:\n"
        "  - id: demo.a\n"
        "    version: 1.0.0\n"
        "    input:\n"
        "      type: object\n"
        "      requierd: [text]\n"
        "      properties:\n"
        "        text: {type: string, nullable: true}\n"
        "        tags: {type: array, items: {type: string, description: }}\n"
        "        mode: {anyOf: [{const: null}, ~]}\n"
        "    output:\n"
        "      type: object\n"
        "      x-internal: kept\n"
        "      default: null\n"
        "      properties: {score: {type: number, minimum: }}\n"
    )
    found = [(r[1], r[2], r[4], r[5]) for r in run(manifest(body), only="CRK113")]
    assert found == [
        (11, 7, "input schema: 'requierd' is not a JSON Schema keyword",
         "$.capabilities[0].input.requierd"),
        (13, 30, "input schema: 'nullable' is not a JSON Schema keyword",
         "$.capabilities[0].input.properties.text.nullable"),
        # a null value is located where YAML saw it end: the next token
        (14, 64, "input schema: 'description' has no value (null)",
         "$.capabilities[0].input.properties.tags.items.description"),
        (15, 39, "input schema: anyOf[1] is null, not a schema",
         "$.capabilities[0].input.properties.mode.anyOf[1]"),
        (20, 51, "output schema: 'minimum' has no value (null)",
         "$.capabilities[0].output.properties.score.minimum"),
    ]  # fmt: skip


def test_crk113_warns_of_yes_and_no_read_as_booleans_in_data(
    manifest: Callable[..., Path],
) -> None:
    """`enum: [yes, no]` is [true, false] to YAML: clients sending "yes" were refused
    and lint said nothing. Keywords that take a boolean, and names, are left alone."""
    path = manifest(
        "capabilities:\n"
        "  - id: demo.ask\n    version: 1.0.0\n"
        "    input:\n"
        "      type: object\n"
        "      additionalProperties: no\n"
        "      properties:\n"
        "        answer: {type: string, enum: [yes, maybe, 'no']}\n"
        "        enum: {type: string, default: Off}\n"
        "    output: {type: object}\n"
        "    examples:\n"
        "      - {input: {answer: on}}\n"
    )
    assert run(path, only="CRK113") == [
        (
            "CRK113",
            13,
            39,
            "warning",
            "input schema: YAML reads the unquoted yes as the boolean true, not as text",
            "$.capabilities[0].input.properties.answer.enum[0]",
        ),
        (
            "CRK113",
            14,
            39,
            "warning",
            "input schema: YAML reads the unquoted Off as the boolean false, not as text",
            "$.capabilities[0].input.properties.enum.default",
        ),
        (
            "CRK113",
            17,
            26,
            "warning",
            "example input: YAML reads the unquoted on as the boolean true, not as text",
            "$.capabilities[0].examples[0].input.answer",
        ),
    ]


def test_crk113_names_what_2020_12_says_instead(manifest: Callable[..., Path]) -> None:
    from crank.manifest.lint import Linter
    from crank.manifest.rules import RULES

    body = "capabilities:\n" + cap("demo.a").replace(
        "input: {type: object}", "input: {type: object, nullable: true}"
    )
    [finding] = [
        f for f in Linter(RULES, today=TODAY).lint_file(manifest(body)) if f.rule == "CRK113"
    ]
    assert finding.hint == (
        "JSON Schema 2020-12 says type: [<type>, 'null'] (nullable is OpenAPI 3.0, not JSON Schema)"
    )


def test_crk113_passes_the_example_manifests() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in sorted(root.glob("plugins/*/src/*/crank.yaml")):
        assert run(path, only="CRK113") == [], path


def test_rules_survive_a_document_that_breaks_the_schema(
    write_manifest: Callable[..., Path],
) -> None:
    text = (
        "capabilities: 3\n"
        "deprecated: [1, {id: 2, replaced_by: x, shim: [], sunset: soon}]\n"
        "worker: []\n"
    )
    rows = run(write_manifest(text))
    assert {r[0] for r in rows} == {"CRK002"}


def test_max_concurrency_is_a_positive_integer(manifest: Callable[..., Path]) -> None:
    from crank.manifest import load_manifest

    good = manifest("capabilities:\n" + cap("demo.a", "    max_concurrency: 4\n"))
    assert load_manifest(good).capabilities[0].max_concurrency == 4
    assert run(good, only="CRK002") == []
    unset = manifest("capabilities:\n" + cap("demo.a"), name="unset.yaml")
    assert load_manifest(unset).capabilities[0].max_concurrency is None
    zero = manifest("capabilities:\n" + cap("demo.a", "    max_concurrency: 0\n"), name="z.yaml")
    assert run(zero, only="CRK002") == [
        (
            "CRK002",
            11,
            22,
            "error",
            "0 is out of range (minimum 1)",
            "$.capabilities[0].max_concurrency",
        )
    ]


def test_a_homepage_must_be_a_uri(write_manifest: Callable[..., Path]) -> None:
    # documented as "Format: uri", and unchecked while jsonschema had no uri checker
    head = HEAD.replace("version: 1.0.0}", "version: 1.0.0, homepage: HOME}")
    body = "capabilities:\n" + cap("demo.a")
    good = write_manifest(head.replace("HOME", "https://example.com/demo") + body, "good.yaml")
    assert run(good, only="CRK002") == []
    bad = write_manifest(head.replace("HOME", "example dot com") + body, "bad.yaml")
    assert [(r[0], r[4], r[5]) for r in run(bad, only="CRK002")] == [
        ("CRK002", 'a string "example dot com" is not a valid uri', "$.metadata.homepage")
    ]


def test_target_queue_per_worker_has_a_ceiling_keda_can_read(manifest: Callable[..., Path]) -> None:
    # rendered into the ScaledObject's streamLength, which KEDA reads as a 64-bit integer
    path = manifest(
        "  scaling: {target_queue_per_worker: 100000000000000000000}\n"
        "capabilities:\n" + cap("demo.a")
    )
    rows = run(path, only="CRK002")
    assert [(r[0], r[5]) for r in rows] == [("CRK002", "$.worker.scaling.target_queue_per_worker")]
    assert "maximum" in rows[0][4]


def test_nan_and_infinity_are_refused_where_they_are(manifest: Callable[..., Path]) -> None:
    # NaN fails no minimum or maximum comparison: it passed the schema, then crashed
    # every renderer ("cannot convert float NaN to integer") as if a plugin were broken
    from crank.errors import ManifestError
    from crank.manifest import load_manifest

    path = manifest(
        "capabilities:\n"
        + cap("demo.a", "    timeout_s: .nan\n")
        + cap("demo.b", "    timeout_s: .inf\n")
        + cap("demo.c", "    timeout_s: -.inf\n")
    )
    finite = "is not a usable number: a manifest holds JSON numbers, which are finite"
    assert run(path, only="CRK002") == [
        ("CRK002", 11, 16, "error", f"NaN (.nan) {finite}", "$.capabilities[0].timeout_s"),
        ("CRK002", 16, 16, "error", f"infinity (.inf) {finite}", "$.capabilities[1].timeout_s"),
        (
            "CRK002",
            21,
            16,
            "error",
            f"minus infinity (-.inf) {finite}",
            "$.capabilities[2].timeout_s",
        ),
    ]
    with pytest.raises(ManifestError, match=r"crank.yaml:11:16 CRK002 NaN \(.nan\) is not"):
        load_manifest(path)


@pytest.mark.parametrize("value", ["short", "x" * 100_000, list(range(1000)), 10**70])
def test_findings_quote_a_value_short(value: object) -> None:
    from crank.manifest.findings import quoted

    assert len(quoted(value)) < 100
    assert quoted(value) == repr(value) or "characters" in quoted(value)


def test_crk117_an_error_code_of_crank_s_own(manifest: Callable[..., Path]) -> None:
    """Declared, INTERNAL turned a crash into a 422 that passed for the handler's error."""
    errors = (
        "    errors:\n"
        "      - {code: INTERNAL, retryable: false}\n"
        "      - {code: TIMEOUT, retryable: true}\n"
        "      - {code: QUEUE_FULL, retryable: true}\n"
        "      - {code: EMPTY_TEXT, retryable: false}\n"
    )
    assert run(manifest("capabilities:\n" + cap("demo.echo", errors)), only="CRK117") == [
        (
            "CRK117",
            12,
            16,
            "error",
            "error code 'INTERNAL' is crank's own for a handler that crashed: declared, such a "
            "task is answered as the handler's declared error, and clients cannot tell which "
            "it was",
            "$.capabilities[0].errors[0].code",
        ),
        (
            "CRK117",
            14,
            16,
            "warning",
            "error code 'QUEUE_FULL' is crank's own for one of its HTTP answers: clients tell "
            "the handler's from crank's only by the HTTP status",
            "$.capabilities[0].errors[2].code",
        ),
    ]


#: Where crank's runtime names the code of an error it answers or gives a task.
CODE_SITES = (
    r"\"code\":\s*\"([A-Z][A-Z_]+)\"",
    r"error_response\(\s*\w+,\s*\"([A-Z][A-Z_]+)\"",
    r"\(\d{3}, \"([A-Z][A-Z_]+)\"",
    r"\d{3}: \(\"([A-Z][A-Z_]+)\"",
    r"code = \"([A-Z][A-Z_]+)\" if",
    r"else \"([A-Z][A-Z_]+)\"",
)


def test_crk117_knows_every_code_crank_answers_with() -> None:
    """The codes' lists live beside the rule: a code the runtime starts to answer with
    must be added there, or CRK117 lets a manifest declare it unnoticed."""
    root = pathlib.Path(crank.__file__).parent
    found = {
        code
        for folder in ("runtime", "worker", "routing")
        for source in (root / folder).rglob("*.py")
        for pattern in CODE_SITES
        for code in re.findall(pattern, source.read_text(encoding="utf-8"))
    }
    assert {"INTERNAL", "TIMEOUT", "WORKER_LOST", "NOT_FOUND", "CLIENT_CLOSED_REQUEST"} <= found
    known = CRANK_TASK_ERROR_CODES.keys() | CRANK_ANSWER_CODES.keys() | CRANK_SHARED_CODES
    assert found - known == set()
