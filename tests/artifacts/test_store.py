from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any

import frontmatter
import pytest

from crank.artifacts import (
    ArtifactConflict,
    ArtifactCorrupted,
    ArtifactMetadataInvalid,
    ArtifactNotFound,
    ArtifactStore,
    FilesystemArtifactStore,
    artifact_id_for,
    metadata_errors,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_put_is_content_addressed_and_written_with_front_matter(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    content = "<h1>Title</h1>\n"
    ref = store.put(content, metadata)

    content_sha256 = hashlib.sha256(content.encode()).hexdigest()
    provenance = {k: v for k, v in metadata.items() if k != "created_at"}
    canonical = json.dumps(
        {"content_sha256": content_sha256, "provenance": provenance},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    assert ref.id == hashlib.sha256(canonical.encode()).hexdigest()
    assert ref.id == artifact_id_for(content_sha256, metadata)
    assert ref.created is True
    assert ref.path == store.root / "objects" / ref.id[:2] / f"{ref.id}.md"
    post = frontmatter.load(ref.path)
    assert post["source_format"] == "markdown"
    assert post["created_at"] == "2026-11-22T09:30:00Z"  # stays a string, not a YAML timestamp
    assert post["worker"] == {"name": "doc-converter", "version": "1.0.0"}
    assert post["artifact"]["sha256"] == content_sha256
    assert post["artifact"]["addressed_by"] == "content+provenance"
    assert post.content == "<h1>Title</h1>"


def test_get_returns_exact_content_and_metadata(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    content = "\n\n  leading and trailing whitespace survive\r\n\n"
    ref = store.put(content, metadata)
    artifact = store.get(ref.id)
    assert artifact.content == content
    assert dict(artifact.metadata) == metadata
    assert dict(store.get_metadata(ref.id)) == metadata


def test_binary_content_round_trips_as_base64(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    blob = bytes(range(256)) * 3
    ref = store.put(blob, {**metadata, "target_format": "docx"})
    assert ref.encoding == "base64"
    assert frontmatter.load(ref.path)["artifact"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert store.get(ref.id).content == blob
    assert store.verify(ref.id).ok


def test_same_content_twice_is_idempotent_and_keeps_first_metadata(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    first = store.put("same", metadata)
    second = store.put("same", {**metadata, "created_at": "2026-11-23T00:00:00Z"})
    assert second.id == first.id
    assert second.created is False
    assert store.get_metadata(first.id)["created_at"] == "2026-11-22T09:30:00Z"
    assert len(store.list()) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"original_sha256": "b" * 64},
        {"parameters": {"standalone": True}},
        {"worker": {"name": "doc-converter", "version": "1.0.1"}},
        {"source_format": "commonmark"},
        {"extra": {"pandoc_version": "3.1"}},
    ],
)
def test_the_same_bytes_made_another_way_are_another_artifact_with_their_own_metadata(
    store: FilesystemArtifactStore, metadata: dict[str, Any], change: dict[str, Any]
) -> None:
    first = store.put("<h1>Hi</h1>", metadata)
    other = {**metadata, **change}
    second = store.put("<h1>Hi</h1>", other)
    assert second.id != first.id
    assert second.created is True
    # each id's metadata says how that result was made: none is lost, none is shared
    assert dict(store.get_metadata(first.id)) == metadata
    assert dict(store.get_metadata(second.id)) == other
    assert store.verify(first.id).ok
    assert store.verify(second.id).ok
    assert len(store.list()) == 2


def test_an_artifact_stored_with_its_content_hash_as_id_still_reads_and_verifies(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    """Stores written before provenance was part of the id keep working."""
    content = "an older artifact"
    legacy_id = hashlib.sha256(content.encode()).hexdigest()
    block = {
        "id": legacy_id,
        "sha256": legacy_id,
        "size": len(content),
        "encoding": "utf-8",
        "metadata_sha256": hashlib.sha256(
            json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest(),
    }
    path = store.path_for(legacy_id)
    path.parent.mkdir(parents=True)
    header = frontmatter.dumps(frontmatter.Post("", artifact=block, **metadata))
    path.write_text(f"{header}\n{content}")  # as the store wrote it then
    assert store.verify(legacy_id).ok
    assert store.get(legacy_id).content == content
    path.write_text(path.read_text().replace("older", "edited"))
    assert store.verify(legacy_id).problems[0].startswith("content sha256 is ")


def test_verify_detects_an_artifact_moved_under_another_id(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("content", metadata)
    other = store.put("other content", metadata)
    other.path.write_text(ref.path.read_text())  # one artifact's file under another's id
    assert store.verify(other.id).problems == (
        "the id does not match the content and provenance stored under it "
        "(the file was renamed or its artifact block edited)",
    )
    assert store.verify(ref.id).ok


def test_refuses_to_overwrite_different_content_under_the_same_id(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("original text", metadata)
    damaged = ref.path.read_text().replace("original text", "edited text")
    ref.path.write_text(damaged)

    with pytest.raises(ArtifactConflict, match="refusing to overwrite") as info:
        store.put("original text", metadata)
    assert info.value.subject == ref.id
    assert "edited text" in ref.path.read_text()  # the evidence is kept


def test_verify_detects_content_tampering(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("the real result", metadata)
    assert store.verify(ref.id).ok
    ref.path.write_text(ref.path.read_text().replace("real", "fake"))

    result = store.verify(ref.id)
    assert not result.ok
    assert result.problems[0].startswith("content sha256 is ")
    with pytest.raises(ArtifactCorrupted, match="failed its integrity check"):
        store.get(ref.id)
    assert store.get(ref.id, verify=False).content == "the fake result"


def test_verify_detects_metadata_tampering(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("content", metadata)
    ref.path.write_text(ref.path.read_text().replace("version: 1.0.0", "version: 9.9.9"))
    result = store.verify(ref.id)
    assert result.problems == (
        "metadata was changed after the artifact was stored (metadata_sha256 differs)",
    )


def test_verify_reports_a_file_without_front_matter(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("content", metadata)
    ref.path.write_text("no front matter at all")
    assert store.verify(ref.id).problems == ("front-matter missing",)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source_format": None}, "$.source_format"),
        ({"created_at": "2026-11-22T09:30:00+02:00"}, "$.created_at"),
        ({"created_at": "yesterday"}, "$.created_at"),
        ({"original_sha256": "ABC"}, "$.original_sha256"),
        ({"worker": {"name": "doc-converter"}}, "$.worker.version"),
        ({"capability": "Convert"}, "$.capability"),
        ({"parameters": "to=html"}, "$.parameters"),
        ({"colour": "blue"}, "$"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(
    store: FilesystemArtifactStore, metadata: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    bad = {**metadata, **change}
    with pytest.raises(ArtifactMetadataInvalid) as info:
        store.put("x", bad)
    assert info.value.subject == field
    assert str(info.value).startswith(f"artifact metadata is invalid: {field}: ")
    assert "extra" in (info.value.hint or "")
    assert not store.objects.exists()  # nothing written


def test_missing_required_field_names_the_field(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    del metadata["original_sha256"]
    with pytest.raises(ArtifactMetadataInvalid, match=r'\$\.original_sha256: "original_sha256"'):
        store.put("x", metadata)


def test_each_missing_field_is_named_at_its_own_path(metadata: dict[str, Any]) -> None:
    del metadata["original_sha256"], metadata["capability"]
    assert metadata_errors(metadata) == [
        {"path": "$.capability", "message": '"capability" is a required property'},
        {"path": "$.original_sha256", "message": '"original_sha256" is a required property'},
    ]


def test_extra_keys_are_allowed_under_extra(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("x", {**metadata, "extra": {"pandoc": "2.17", "pages": 3}})
    assert store.get_metadata(ref.id)["extra"] == {"pandoc": "2.17", "pages": 3}


def test_list_filters_by_metadata_including_nested_fields(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    html = store.put("<p>a</p>", metadata)
    rst = store.put(
        "a\n",
        {
            **metadata,
            "target_format": "rst",
            "created_at": "2026-11-22T10:00:00Z",
            "parameters": {"to": "rst"},
        },
    )
    other = store.put(
        "b",
        {
            **metadata,
            "worker": {"name": "other-worker", "version": "2.0.0"},
            "created_at": "2026-11-21T00:00:00Z",
        },
    )

    assert [r.id for r in store.list()] == [other.id, html.id, rst.id]  # oldest first
    assert [r.id for r in store.list(target_format="rst")] == [rst.id]
    assert [r.id for r in store.list(worker__name="doc-converter")] == [html.id, rst.id]
    assert [r.id for r in store.list(parameters__to="html", worker__version="1.0.0")] == [html.id]
    assert store.list(parameters__missing="x") == []


def test_unknown_and_malformed_ids_are_not_found(store: FilesystemArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound, match=r"no artifact 0{64} in "):
        store.get("0" * 64)
    with pytest.raises(ArtifactNotFound, match="is not an artifact id"):
        store.get_metadata("../../etc/passwd")
    assert "../x" not in store


def test_unwritable_root_gives_a_clear_error(tmp_path: Path, metadata: dict[str, Any]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = FilesystemArtifactStore(blocker)
    from crank.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="cannot write artifact") as info:
        store.put("x", metadata)
    assert "writable" in (info.value.hint or "")


def test_no_temp_files_are_left_behind(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    ref = store.put("x", metadata)
    assert [p.name for p in ref.path.parent.iterdir()] == [ref.path.name]


def test_concurrent_writers_of_the_same_content_agree(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    refs = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            refs.append(store.put("shared result" * 1000, metadata))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.id for r in refs}) == 1
    assert sum(r.created for r in refs) >= 1
    assert store.verify(refs[0].id).ok


def test_filesystem_store_satisfies_the_protocol(store: FilesystemArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_front_matter_delimiters_inside_values_and_content_are_harmless(
    store: FilesystemArtifactStore, metadata: dict[str, Any]
) -> None:
    meta = {**metadata, "parameters": {"title": "a\n---\nb"}, "extra": {"note": "\n---\n"}}
    content = "---\nnot front-matter\n---\nbody"
    ref = store.put(content, meta)
    assert store.get(ref.id).content == content
    assert dict(store.get_metadata(ref.id)) == meta
    assert store.verify(ref.id).ok
