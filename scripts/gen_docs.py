"""Generate docs/manifest.md (from the JSON Schema) and docs/cli.md (from --help).

    python scripts/gen_docs.py           # rewrite both files
    python scripts/gen_docs.py --check   # exit 1 when either is out of date

Only crank's own plugins are loaded, so what is installed next to crank does not
leak into the reference. A command whose module cannot be imported yet is listed
with its one-line help and a note.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
WIDTH = 80

EXAMPLE = """\
apiVersion: crank.dev/v1
kind: Worker
metadata:
  name: email-classifier
  version: 2.1.0
  description: Sorts incoming mail into spam and bills.
  license: MIT
worker:
  entrypoint: crank_email_classifier.worker:EmailClassifier
  resources: {cpu: 500m, memory: 512Mi, gpu: none}
  scaling: {min_workers: 1, max_workers: 8, target_queue_per_worker: 10}
  env:
    - {name: MODEL_DIR, description: Where the model files live, default: /models}
    - {name: MAIL_API_TOKEN, description: Token of the mail API, secret: true}
dependencies:
  python: ["scikit-learn>=1.4"]
  system:
    - {name: pandoc, check: "exe:pandoc", apt: pandoc, hint: "apt-get install pandoc"}
capabilities:
  - id: email.spam_detection
    version: 1.2.0
    description: Is this mail spam?
    input:
      type: object
      required: [text]
      properties:
        text: {type: string}
    output:
      type: object
      required: [spam]
      properties:
        spam: {type: boolean}
    errors:
      - {code: EMPTY_TEXT, retryable: false}
      - {code: MODEL_UNAVAILABLE, retryable: true}
    timeout_s: 10
    examples:
      - {name: obvious spam, input: {text: "WIN A PRIZE NOW"}, output: {spam: true}}
  - id: email.bill_detection
    version: 1.0.0
    input:
      type: object
      required: [text]
      properties:
        text: {type: string}
    output:
      type: object
      properties:
        bill: {type: boolean}
deprecated:
  - id: email.classification
    replaced_by: [email.spam_detection, email.bill_detection]
    shim:
      select_by: type
      map: {spam: email.spam_detection, bill: email.bill_detection}
      default: spam
    deprecated_since: 2026-09-01
    sunset: 2027-03-31
    legacy_routes: ["/classify"]
"""


# --- manifest reference ---------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = dict(root["$defs"][ref.rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolve(merged, root)
    return schema


def _type_of(schema: dict[str, Any]) -> str:
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        items = schema.get("items", {})
        inner = items.get("type", "object") if isinstance(items, dict) else "any"
        if isinstance(items, dict) and "$ref" in items:
            inner = "object" if "capabilityId" not in items["$ref"] else "string"
        return f"list of {inner}"
    if kind == "object" and not schema.get("properties"):
        return "mapping"
    return str(kind)


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _notes(schema: dict[str, Any]) -> str:
    parts = []
    desc = schema.get("description")
    if desc:
        parts.append(str(desc))
    if "pattern" in schema and not desc:
        parts.append(f"Pattern `{schema['pattern']}`.")
    if "format" in schema:
        parts.append(f"Format: {schema['format']}.")
    for key, label in (("minimum", "min"), ("maximum", "max"), ("maxLength", "max length")):
        if key in schema:
            parts.append(f"{label.capitalize()} {schema[key]}.")
    return " ".join(parts).replace("|", "\\|").replace("\n", " ")


def _rows(schema: dict[str, Any], root: dict[str, Any], prefix: str, out: list[str]) -> None:
    required = set(schema.get("required", []))
    for name, raw in schema.get("properties", {}).items():
        sub = _resolve(raw, root)
        path = f"{prefix}{name}"
        default = f"`{_literal(sub['default'])}`" if "default" in sub else ""
        req = "yes" if name in required else ""
        out.append(f"| `{path}` | {_type_of(sub)} | {req} | {default} | {_notes(sub)} |")
        if sub.get("type") == "object" and sub.get("properties"):
            _rows(sub, root, f"{path}.", out)
        items = sub.get("items")
        if sub.get("type") == "array" and isinstance(items, dict):
            item = _resolve(items, root)
            if item.get("properties"):
                _rows(item, root, f"{path}[].", out)


def manifest_md() -> str:
    from crank.cli.lint import collect_rules
    from crank.manifest.validate import manifest_schema

    schema = manifest_schema()
    rows: list[str] = []
    _rows(schema, schema, "", rows)
    rules = "\n".join(f"| `{r.id}` | {r.summary} |" for r in collect_rules())
    return f"""<!-- Generated by scripts/gen_docs.py from the JSON Schema; do not edit. -->
# Manifest reference (`crank.dev/v1`)

{schema["description"]}

A worker package ships its manifest as `crank.yaml` next to the module its
`crank` entry point names, so it is installed with the package. Print the
JSON Schema with `crank schema`; check a manifest with `crank lint`.

## Fields

| field | type | required | default | description |
|---|---|---|---|---|
{chr(10).join(rows)}

## A complete example

```yaml
{EXAMPLE}```

## Lint rules

`crank lint` reports every problem as `path:line:col RULE message [$.json.path]`
with a hint on the next line. `CRK001` means the file cannot be read as YAML
(too large, binary, not UTF-8, duplicate keys, tabs, tags, more than one
document...) or cannot be read at all (no permission, a dangling link), `CRK002`
that it breaks the schema; a `CRK001` warning marks an unquoted number YAML reads
as another value than it shows (`010` is the octal 8, `1:30` the base-60 90).
Each file is linted whatever the others hold; a folder the search cannot look
into is a `CRK001` warning naming it. The rules beyond
the schema:

| rule | checks that |
|---|---|
{rules}

`CRK107` also names each `$ref` that does not resolve within its schema (`$ref:
input.json`, or `#/$defs/` and a name that is not there): a capability's schemas
are validated alone, so every call would fail on it, and crank refuses to load
such a manifest. Put shared parts under `$defs` and refer to them as
`#/$defs/<name>`.

`CRK113` reads each capability's `input` and `output` as a validator does and
reports, at the key's `line:col`, every keyword that is not JSON Schema 2020-12
(`requierd`, `nullable`, `example`; extensions named `x-...` are allowed) and,
at the value, every null where a value or a schema is due (`const: null` and
`default: null` are data). A validator silently ignores an unknown keyword, so
such a schema says less than its author wrote. The usual cause is YAML: in a
`{{flow mapping}}` an unquoted `,` or `: ` ends a value, and the rest of the text
becomes keys with null values:

```yaml
standalone: {{type: boolean, description: A whole page (headers, <html> wrapper).}}
# CRK113 input schema: '<html> wrapper).' is not a JSON Schema keyword with no value
standalone: {{type: boolean, description: "A whole page (headers, <html> wrapper)."}}
```

It also warns about an unquoted `yes`, `no`, `on` or `off` in a schema's data
(`enum`, `const`, `default`, `examples`) and in the capability's `examples`: YAML
reads each as a boolean, so `enum: [yes, no]` refuses the text `"yes"`. Quote the
word, or write `true`/`false`. (A plain key such as `on:` stays the text `on`.)

`CRK117` keeps a capability's error codes apart from crank's own, as a client
sees both in the same `error.code`. Declaring a code crank gives a task for a
failure of its own (`INTERNAL`: a crash; `OUTPUT_INVALID`, `OUTPUT_NOT_JSON`,
`WORKER_FAILED`, `WORKER_LOST`, `CANCELLED`, `CAPABILITY_NOT_SERVED`) is an
error: such a task would be answered as the handler's declared error (422 with
the code, not 502 `WORKER_FAILED`), and the client would take a crash for a
refusal of its input. Declaring the code of one of crank's HTTP answers
(`CAPABILITY_NOT_FOUND`, `QUEUE_FULL`, `UNAUTHORIZED`... see
[runtime.md](runtime.md)) is a warning: the handler's and crank's then differ
only by the HTTP status. Give the worker's errors codes of their own
(`EMPTY_TEXT`, `PANDOC_TIMEOUT`). `INVALID_INPUT` and `TIMEOUT` are the two a
handler may declare: they mean for its refusals and time-outs what they mean
for crank's (the input refused; out of time, worth a retry).

Plugins add rules through the `crank_register_lint_rules` hook, under their own
prefix (see [plugins.md](plugins.md)); `CRK108` is registered by the worker layer,
which imports the entrypoint, and `CRK116` by the testing layer, which knows the
dependency kinds plugins register. A manifest turns rules off for itself with a
comment anywhere in the file:

```yaml
# crank-lint: disable=CRK106,CRK109
```

Ids are read case-insensitively; anything after the list is a free comment
(`# crank-lint: disable=CRK106 until the 2027 release`). Only a YAML comment
counts: the same words inside a value
(`description: "see # crank-lint: disable=CRK109"`, a `|` block) are text, and
turn nothing off. An id that names no rule
(a typo such as `CRK10`, or the rule of a plugin that is not installed) is a
`CRK001` warning at the comment, with the closest id if there is one, and so is a
`# crank-lint` comment that is not of this form (`# crank-lint disable=...`
without its colon): either would leave a rule on unnoticed. The id of one of
crank's own rules whose plugin `CRANK_DISABLE_PLUGINS` blocks (`CRK116` with
`crank.testing.lint_rules` blocked) is a `CRK001` note instead, naming the
blocked plugin: the comment is right, the rule is only not run; for a blocked
third-party plugin, whose rules crank cannot know without importing it, the
warning's hint names the plugins blocked.

`CRK001` and `CRK002` errors cannot be turned off: crank refuses to load such a
manifest whatever the comment says (a `CRK001` warning can be).

Errors make `crank lint` exit with status 1; warnings (such as a sunset less
than 30 days away) only with `--strict`; notes (an entrypoint that could not be
imported because its package is not installed) never.
"""


# --- CLI reference ----------------------------------------------------------------


def _help(args: list[str]) -> str:
    from click.testing import CliRunner

    from crank.cli import cli

    result = CliRunner().invoke(
        cli, [*args, "--help"], terminal_width=WIDTH, max_content_width=WIDTH
    )
    if result.exit_code != 0:
        raise RuntimeError(f"crank {' '.join(args)} --help failed:\n{result.output}")
    return result.output


def _section(path: list[str], out: list[str]) -> None:
    import click

    from crank.cli import cli
    from crank.cli.group import LazyCommand
    from crank.errors import PluginError

    group: Any = cli
    for name in path[:-1]:
        group = group.get_command(click.Context(cli), name)
    name = path[-1]
    title = " ".join(["crank", *path])
    out.append(f"## `{title}`\n")
    entry = group._registered().get(name) if hasattr(group, "_registered") else None
    try:
        command = group.get_command(click.Context(cli), name)
    except (ImportError, AttributeError, PluginError) as exc:
        # a plugin's LazyCommand that cannot be loaded is a PluginError caused by the import
        cause = exc.__cause__ if isinstance(exc, PluginError) and exc.__cause__ else exc
        short = entry.short_help if isinstance(entry, LazyCommand) else ""
        out.append(
            f"{short}\n\n*Reference not available: the command could not be "
            f"loaded ({type(cause).__name__}).*\n"
        )
        return
    out.append(f"```text\n{_help(path)}```\n")
    if isinstance(command, click.Group):
        for sub in command.list_commands(click.Context(command)):
            _section([*path, sub], out)


def cli_md() -> str:
    import click

    from crank.cli import cli
    from crank.errors import ExitCode

    out = [
        "<!-- Generated by scripts/gen_docs.py from `crank --help`; do not edit. -->",
        "# Command line reference\n",
        "## Exit status\n",
        "Every command exits with one of these statuses (`crank.errors.ExitCode`). A",
        "command that found problems always exits with 1. Errors are printed on stderr",
        "as `error: ...`, then a `hint: ...` line saying how to fix them.\n",
        "| status | name | meaning |",
        "|---|---|---|",
        *(f"| {code.value} | `{code.name}` | {code.meaning} |" for code in ExitCode),
        "",
        f"## `crank`\n\n```text\n{_help([])}```\n",
    ]
    for name in cli.list_commands(click.Context(cli)):
        _section([name], out)
    return "\n".join(out).rstrip() + "\n"


# --- main -------------------------------------------------------------------------


def _only_builtin_plugins() -> None:
    """Block every installed third-party plugin before crank loads any."""
    names = {ep.name for ep in metadata.entry_points(group="crank")}
    os.environ["CRANK_DISABLE_PLUGINS"] = ",".join(sorted(names))
    os.environ.pop("GITHUB_ACTIONS", None)


def generate() -> dict[Path, str]:
    _only_builtin_plugins()
    return {DOCS / "manifest.md": manifest_md(), DOCS / "cli.md": cli_md()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are out of date")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in generate().items():
        rel = path.relative_to(REPO)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale += 1
            diff = difflib.unified_diff(
                current.splitlines(),
                text.splitlines(),
                f"{rel} (committed)",
                f"{rel} (now)",
                lineterm="",
                n=1,
            )
            print(f"{rel} is out of date; run `python scripts/gen_docs.py`", file=sys.stderr)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
