"""The examples installed together: listed, lint-clean, artifacts current."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from crank.cli import cli
from crank.plugins import reset_plugin_manager

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
EXAMPLES = {
    "doc-converter": "crank-doc-converter/src/crank_doc_converter/crank.yaml",
    "email-classifier": "crank-email-classifier/src/crank_email_classifier/crank.yaml",
    "image-classifier": "crank-image-classifier/src/crank_image_classifier/crank.yaml",
    "text-streamer": "crank-text-streamer/src/crank_text_streamer/crank.yaml",
}

pytestmark = pytest.mark.requires(
    "crank_doc_converter",
    "crank_email_classifier",
    "crank_image_classifier",
    "crank_text_streamer",
    hint="pip install -e plugins/crank-* (every example)",
)


@pytest.fixture(autouse=True)
def fresh_plugins() -> None:
    reset_plugin_manager()


def test_crank_plugins_lists_every_example() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:-1]}
    for name, manifest in EXAMPLES.items():
        assert rows[name][2] == "loaded", result.output
        assert Path(rows[name][-1]) == PLUGINS / manifest


def test_crank_lint_is_clean_on_the_examples() -> None:
    result = CliRunner().invoke(cli, ["lint", str(PLUGINS)])
    assert (result.exit_code, result.output) == (0, "4 files checked, no problems found\n")


def test_deployment_artifacts_match_the_manifests() -> None:
    projects = sorted(str(p) for p in PLUGINS.glob("crank-*"))
    result = CliRunner().invoke(cli, ["check", *projects])
    assert result.exit_code == 0, result.output
    assert result.output == "crank check: 4 project(s) match their manifests\n"
