from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from typing import TYPE_CHECKING

import frontmatter
import pytest

if TYPE_CHECKING:
    from crank.artifacts import FilesystemArtifactStore
    from crank.manifest import Manifest
    from crank.testing import WorkerHandle

pytestmark = pytest.mark.requires("exe:pandoc>=2.15")

MARKDOWN = "# Report\n\nSome *emphasis* and a [link](https://example.org).\n\n- one\n- two\n"


def test_manifest_examples_pass(manifest: Manifest, worker: WorkerHandle) -> None:
    examples = manifest.capability("document.convert").examples  # type: ignore[union-attr]
    for example in examples:
        result = worker.call("document.convert", example.input)
        expected = dict(example.output or {})
        assert {k: result[k] for k in expected} == expected, example.name
    assert len(examples) == 2


@pytest.mark.parametrize(
    ("source", "target", "content", "expected"),
    [
        ("markdown", "html", MARKDOWN, '<h1 id="report">Report</h1>'),
        ("markdown", "rst", MARKDOWN, "Report\n======"),
        ("markdown", "latex", MARKDOWN, "\\section{Report}"),
        ("markdown", "plain", MARKDOWN, "Report\n\nSome emphasis and a link."),
        ("html", "markdown", "<h2>Notes</h2><p>A <strong>bold</strong> claim.</p>", "## Notes"),
        ("rst", "html", "Title\n=====\n\n*it* works\n", "<em>it</em> works"),
        ("latex", "markdown", "\\section{Intro}\nHello \\emph{world}.\n", "Hello *world*."),
    ],
)
def test_text_conversions(
    worker: WorkerHandle, source: str, target: str, content: str, expected: str
) -> None:
    result = worker.call("document.convert", {"from": source, "to": target, "content": content})
    assert expected in result["content"]
    assert (result["from"], result["to"]) == (source, target)
    assert result["size"] == len(result["content"].encode())


@pytest.mark.parametrize("binary", ["docx", "odt"])
def test_binary_formats_round_trip_as_base64(worker: WorkerHandle, binary: str) -> None:
    out = worker.call("document.convert", {"from": "markdown", "to": binary, "content": MARKDOWN})
    blob = base64.b64decode(out["content_base64"])
    assert zipfile.is_zipfile(io.BytesIO(blob))  # docx and odt are zip containers
    back = worker.call(
        "document.convert",
        {"from": binary, "to": "markdown", "content_base64": out["content_base64"]},
    )
    heading = back["content"].splitlines()[0]
    assert heading.startswith("# ")
    assert heading.endswith("Report")  # odt adds an anchor span before the text
    assert "*emphasis*" in back["content"]


def test_every_result_is_stored_with_front_matter(
    worker: WorkerHandle, store: FilesystemArtifactStore
) -> None:
    result = worker.call(
        "document.convert",
        {"from": "markdown", "to": "html", "content": MARKDOWN, "standalone": True},
    )
    artifact = store.get(result["artifact_id"])
    assert artifact.content == result["content"]
    meta = dict(artifact.metadata)
    assert meta["source_format"] == "markdown"
    assert meta["target_format"] == "html"
    assert meta["original_sha256"] == hashlib.sha256(MARKDOWN.encode()).hexdigest()
    assert meta["worker"] == {"name": "doc-converter", "version": "1.0.0"}
    assert meta["capability"] == "document.convert"
    assert meta["parameters"] == {"standalone": True, "toc": False}
    assert meta["extra"]["pandoc_version"].count(".") >= 1
    assert store.verify(result["artifact_id"]).ok
    on_disk = frontmatter.load(store.path_for(result["artifact_id"]))
    assert on_disk["target_format"] == "html"
    assert "<!DOCTYPE html>" in on_disk.content


def test_binary_results_are_stored_as_bytes(
    worker: WorkerHandle, store: FilesystemArtifactStore
) -> None:
    result = worker.call("document.convert", {"from": "markdown", "to": "odt", "content": "# x"})
    stored = store.get(result["artifact_id"]).content
    assert stored == base64.b64decode(result["content_base64"])
    assert store.list(target_format="odt")[0].id == result["artifact_id"]


def test_two_originals_with_the_same_result_each_keep_their_own_record(
    worker: WorkerHandle, store: FilesystemArtifactStore
) -> None:
    """Setext and ATX headings convert to the same html: each answer's artifact still
    names its own original."""
    answers = [
        worker.call("document.convert", {"from": "markdown", "to": "html", "content": text})
        for text in ("# Same\n", "Same\n====\n", "# Same\n")
    ]
    assert len({a["content"] for a in answers}) == 1
    first, other, again = answers
    assert first["artifact_id"] != other["artifact_id"]
    assert again["artifact_id"] == first["artifact_id"]  # the same conversion: stored once
    assert again["created_at"] == first["created_at"]
    for answer in answers:
        meta = store.get_metadata(answer["artifact_id"])
        assert meta["original_sha256"] == answer["original_sha256"]
        assert meta["created_at"] == answer["created_at"]
    assert len(store.list()) == 2
