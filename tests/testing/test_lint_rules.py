"""CRK116: dependency specs that pip or a dependency checker could not read."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from click.testing import CliRunner

from crank.cli import cli

if TYPE_CHECKING:
    from pathlib import Path

MANIFEST = """\
# crank-lint: disable=CRK108
apiVersion: crank.dev/v1
kind: Worker
metadata: {name: demo, version: 1.0.0}
worker: {entrypoint: "demo_pkg.worker:Demo"}
dependencies:
  python: ["scikit-learn>=1.4", "not a requirement", "requests>="]
  system:
    - {name: pandoc, check: "exe:pandoc>=2.9"}
    - {name: typo, check: "exe-pandoc:x"}
    - {name: odd, check: "exe:pandoc>=two"}
    - {name: java, check: "exe:java>=17", version_command: "''"}
capabilities:
  - id: demo.echo
    version: 1.0.0
    input: {type: object}
    output: {type: object}
"""


def test_unreadable_dependency_specs_are_findings(tmp_path: Path) -> None:
    """Lint passed them; `crank test-worker` then failed on the check, pip on the
    requirement."""
    (tmp_path / "crank.yaml").write_text(MANIFEST, encoding="utf-8")
    result = CliRunner().invoke(cli, ["lint", str(tmp_path / "crank.yaml")])
    assert result.exit_code == 1
    lines = [
        line.removeprefix(str(tmp_path / "crank.yaml") + ":")
        for line in result.output.splitlines()
        if "CRK116" in line
    ]
    # packaging's own words after the colon change between its versions
    pep508 = re.compile(r"(\S+ CRK116 '[^']+' is not a PEP 508 requirement): .+ (\[\S+\])")
    assert [pep508.sub(r"\1 \2", line) for line in lines] == [
        "7:33 CRK116 'not a requirement' is not a PEP 508 requirement [$.dependencies.python[1]]",
        "7:54 CRK116 'requests>=' is not a PEP 508 requirement [$.dependencies.python[2]]",
        "10:27 CRK116 dependency spec 'exe-pandoc:x': unknown kind 'exe-pandoc' "
        "[$.dependencies.system[1].check]",
        "11:26 CRK116 dependency spec 'exe:pandoc>=two': '>=two' is not a version "
        "constraint [$.dependencies.system[2].check]",
        "12:60 CRK116 version command \"''\" names no program "
        "[$.dependencies.system[3].version_command]",
    ]
    assert result.output.endswith("5 errors, 0 warnings in 1 file\n")


def test_readable_dependency_specs_pass(tmp_path: Path) -> None:
    text = MANIFEST.replace(', "not a requirement", "requests>="', "")
    text = "\n".join(line for line in text.splitlines() if "typo" not in line and "odd" not in line)
    text = text.replace(", version_command: \"''\"", ', version_command: "java -version"')
    (tmp_path / "crank.yaml").write_text(text + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["lint", str(tmp_path / "crank.yaml")])
    assert (result.exit_code, result.output) == (0, "1 file checked, no problems found\n")


def test_a_version_command_on_a_spec_that_is_not_exe_is_a_finding(tmp_path: Path) -> None:
    """Only exe: checks run a version command: on another kind it was silently ignored."""
    text = MANIFEST.replace(', "not a requirement", "requests>="', "")
    text = "\n".join(line for line in text.splitlines() if "typo" not in line and "odd" not in line)
    text = text.replace(
        '{name: java, check: "exe:java>=17", version_command: "\'\'"}',
        '{name: numpy, check: "numpy>=1.26", version_command: "numpy --version"}',
    )
    (tmp_path / "crank.yaml").write_text(text + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["lint", str(tmp_path / "crank.yaml")])
    assert result.exit_code == 1
    assert (
        "CRK116 dependency spec 'numpy>=1.26': a version command applies only to exe: specs, "
        "not to a module spec [$.dependencies.system[1].version_command]"
    ) in result.output


def test_a_gpu_check_with_a_version_is_a_finding(tmp_path: Path) -> None:
    """'gpu>=2' can never be met: crank test-worker refused it, lint passed it."""
    text = MANIFEST.replace(', "not a requirement", "requests>="', "")
    text = "\n".join(line for line in text.splitlines() if "typo" not in line and "odd" not in line)
    text = text.replace(
        '{name: java, check: "exe:java>=17", version_command: "\'\'"}',
        '{name: gpu, check: "gpu>=2"}',
    )
    (tmp_path / "crank.yaml").write_text(text + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["lint", str(tmp_path / "crank.yaml")])
    assert result.exit_code == 1
    assert (
        "CRK116 dependency spec 'gpu>=2': gpu takes no '>=2' [$.dependencies.system[1].check]"
    ) in result.output
