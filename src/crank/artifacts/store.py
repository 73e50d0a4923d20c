"""The artifact store: every artifact a file with validated YAML front-matter.

Identity
    An artifact is its content *and* how it was made. Its id is the lower-case hex
    sha256 of the content's sha256 (text hashed as UTF-8, binary content as the
    raw bytes) together with its **provenance**: the metadata without
    ``created_at`` (formats, parameters, original, worker, capability, extra).
    Storing the same content with the same provenance again (a retried task)
    returns the first artifact, whose ``created_at`` is kept; the same bytes made
    from another original, with other parameters or by another worker version
    are another artifact, so the metadata under an id always describes how *that*
    result was made. The id never names two different contents, and a file found
    under an id with other bytes in it (damaged or tampered with) is never
    overwritten — :class:`ArtifactConflict` is raised instead. Artifacts stored
    before provenance was part of the id (id = content sha256, no
    ``addressed_by`` in their block) are read and verified as they were written.

Layout of :class:`FilesystemArtifactStore`
    ``<root>/objects/<id[:2]>/<id>.md``: YAML front-matter written through
    python-frontmatter, then the content verbatim (binary content as base64).
    The front-matter holds the validated metadata plus a store-managed
    ``artifact`` block (id, the content's sha256, size, encoding, the sha256 of
    the canonical metadata and ``addressed_by``), which is what :meth:`verify`
    checks against.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from crank.artifacts.errors import (
    ArtifactConflict,
    ArtifactCorrupted,
    ArtifactError,
    ArtifactNotFound,
)
from crank.artifacts.metadata import (
    canonical_json,
    metadata_errors,
    sha256_hex,
    validate_metadata,
)

Encoding = Literal["utf-8", "base64"]
_ID = re.compile(r"^[0-9a-f]{64}$")
_STORE_KEY = "artifact"
_SUFFIX = ".md"
#: ``addressed_by`` of an artifact whose id covers its content and its provenance.
_CONTENT_AND_PROVENANCE = "content+provenance"


def provenance(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """How an artifact was made: its metadata without ``created_at`` (when it was)."""
    return {k: v for k, v in metadata.items() if k != "created_at"}


def artifact_id_for(content_sha256: str, metadata: Mapping[str, Any]) -> str:
    """The id of content (by its sha256) made as ``metadata`` says."""
    doc = {"content_sha256": content_sha256, "provenance": provenance(metadata)}
    return sha256_hex(canonical_json(doc))


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lives and what it is. ``created`` is False when it already existed."""

    id: str
    path: Path
    metadata: Mapping[str, Any] = field(repr=False)
    size: int = 0
    encoding: Encoding = "utf-8"
    created: bool = True


@dataclass(frozen=True)
class Artifact:
    """An artifact's content (``str`` for text, ``bytes`` for binary) and its metadata."""

    id: str
    content: str | bytes
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class Verification:
    """The outcome of an integrity check; ``problems`` says what does not match."""

    id: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@runtime_checkable
class ArtifactStore(Protocol):
    """What every artifact backend offers."""

    def put(self, content: str | bytes, metadata: Mapping[str, Any]) -> ArtifactRef: ...

    def get(self, artifact_id: str) -> Artifact: ...

    def get_metadata(self, artifact_id: str) -> Mapping[str, Any]: ...

    def list(self, **filters: Any) -> list[ArtifactRef]: ...

    def verify(self, artifact_id: str) -> Verification: ...


def _check_id(artifact_id: str) -> str:
    if not isinstance(artifact_id, str) or not _ID.match(artifact_id):
        raise ArtifactNotFound(
            f"{artifact_id!r} is not an artifact id",
            hint="artifact ids are 64 lower-case hex digits (a sha256)",
            subject=artifact_id,
        )
    return artifact_id


def _encode(content: str | bytes) -> tuple[bytes, str, Encoding]:
    """(content bytes that are hashed, body text written to the file, encoding)."""
    if isinstance(content, str):
        return content.encode("utf-8"), content, "utf-8"
    if isinstance(content, bytes | bytearray | memoryview):
        raw = bytes(content)
        return raw, base64.b64encode(raw).decode("ascii"), "base64"
    raise TypeError(f"artifact content must be str or bytes, not {type(content).__name__}")


def _matches(metadata: Mapping[str, Any], key: str, expected: Any) -> bool:
    """``worker__name="x"`` looks at ``metadata["worker"]["name"]``."""
    value: Any = metadata
    for part in key.split("__"):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return bool(value == expected)


@dataclass(frozen=True)
class _Parsed:
    store_block: Mapping[str, Any]
    metadata: dict[str, Any]
    body: str


class FilesystemArtifactStore:
    """Content-addressed artifacts under ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FilesystemArtifactStore({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    def path_for(self, artifact_id: str) -> Path:
        _check_id(artifact_id)
        return self.objects / artifact_id[:2] / f"{artifact_id}{_SUFFIX}"

    # -- writing ---------------------------------------------------------------

    def put(self, content: str | bytes, metadata: Mapping[str, Any]) -> ArtifactRef:
        """Store ``content`` with validated ``metadata``; idempotent for the same content
        made the same way (the same provenance: the metadata but ``created_at``)."""
        import frontmatter

        meta = dict(metadata)
        validate_metadata(meta)
        raw, body, encoding = _encode(content)
        content_sha256 = sha256_hex(raw)
        artifact_id = artifact_id_for(content_sha256, meta)
        block = {
            "id": artifact_id,
            "sha256": content_sha256,
            "size": len(raw),
            "encoding": encoding,
            "metadata_sha256": sha256_hex(canonical_json(meta)),
            "addressed_by": _CONTENT_AND_PROVENANCE,
        }
        header = frontmatter.dumps(frontmatter.Post("", **{_STORE_KEY: block, **meta}))
        if not header.endswith("\n---"):  # pragma: no cover - guards a python-frontmatter change
            raise ArtifactError("python-frontmatter produced an unexpected front-matter layout")
        data = f"{header}\n{body}".encode()

        dest = self.path_for(artifact_id)
        if dest.exists():
            return self._existing(artifact_id, raw)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            created = self._write_new(dest, data)
        except OSError as exc:
            raise ArtifactError(
                f"cannot write artifact {artifact_id} under {self.root}: {exc.strerror or exc}",
                hint="check that the artifact directory exists, is writable and has free space",
                subject=str(dest),
            ) from exc
        if not created:
            return self._existing(artifact_id, raw)
        return ArtifactRef(artifact_id, dest, meta, len(raw), encoding, created=True)

    @staticmethod
    def _write_new(dest: Path, data: bytes) -> bool:
        """Write atomically; False if another writer created ``dest`` first.

        The bytes go to a temp file in the same folder, are fsynced, then linked
        into place (``os.link`` never replaces an existing file); where hard
        links are unsupported the temp file is moved with ``os.replace``.
        """
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return False
            except OSError:  # no hard links on this filesystem
                Path(tmp).replace(dest)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp).unlink()

    def _existing(self, artifact_id: str, raw: bytes) -> ArtifactRef:
        parsed = self._read(artifact_id)
        stored = self._content_bytes(artifact_id, parsed)
        if stored != raw:
            raise ArtifactConflict(
                f"artifact {artifact_id} already exists with different content; "
                "refusing to overwrite it",
                hint=f"the stored file {self.path_for(artifact_id)} was changed or damaged: "
                "inspect it with `verify`, move it away, then store again",
                subject=artifact_id,
            )
        encoding = parsed.store_block.get("encoding", "utf-8")
        return ArtifactRef(
            artifact_id,
            self.path_for(artifact_id),
            parsed.metadata,
            len(raw),
            "base64" if encoding == "base64" else "utf-8",
            created=False,
        )

    # -- reading ---------------------------------------------------------------

    def _read(self, artifact_id: str) -> _Parsed:
        import frontmatter

        path = self.path_for(artifact_id)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ArtifactNotFound(
                f"no artifact {artifact_id} in {self.root}",
                hint="list the stored artifacts with list(); "
                "check CRANK_ARTIFACT_DIR points at the right store",
                subject=artifact_id,
            ) from None
        except UnicodeDecodeError as exc:
            raise ArtifactCorrupted(
                f"artifact {artifact_id} is not UTF-8 text: {exc}",
                hint=f"the file {path} was damaged; restore it or store the content again",
                subject=artifact_id,
                problems=("file is not UTF-8",),
            ) from exc
        end = text.find("\n---\n", 3)
        if not text.startswith("---\n") or end < 0:
            raise ArtifactCorrupted(
                f"artifact {artifact_id} has no YAML front-matter",
                hint=f"the file {path} was damaged; restore it or store the content again",
                subject=artifact_id,
                problems=("front-matter missing",),
            )
        try:
            post = frontmatter.loads(text[: end + 5])
        except Exception as exc:  # any YAML error means a damaged file
            raise ArtifactCorrupted(
                f"artifact {artifact_id} has unreadable front-matter: {exc}",
                hint=f"the file {path} was damaged; restore it or store the content again",
                subject=artifact_id,
                problems=("front-matter unreadable",),
            ) from exc
        meta = dict(post.metadata)
        block = meta.pop(_STORE_KEY, None)
        if not isinstance(block, Mapping):
            block = {}
        return _Parsed(block, meta, text[end + 5 :])

    @staticmethod
    def _content_bytes(artifact_id: str, parsed: _Parsed) -> bytes:
        if parsed.store_block.get("encoding") == "base64":
            try:
                return base64.b64decode(parsed.body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ArtifactCorrupted(
                    f"artifact {artifact_id}: base64 content cannot be decoded ({exc})",
                    subject=artifact_id,
                    problems=("content is not valid base64",),
                ) from exc
        return parsed.body.encode("utf-8")

    def get(self, artifact_id: str, *, verify: bool = True) -> Artifact:
        """Content and metadata; checked against the recorded hashes unless ``verify=False``."""
        parsed = self._read(artifact_id)
        raw = self._content_bytes(artifact_id, parsed)
        if verify:
            self._raise_if_corrupted(self._problems(artifact_id, parsed, raw), artifact_id)
        content: str | bytes = (
            raw if parsed.store_block.get("encoding") == "base64" else parsed.body
        )
        return Artifact(artifact_id, content, parsed.metadata)

    def get_metadata(self, artifact_id: str) -> Mapping[str, Any]:
        """The front-matter metadata (without the store's own ``artifact`` block)."""
        return self._read(artifact_id).metadata

    def __contains__(self, artifact_id: object) -> bool:
        return (
            isinstance(artifact_id, str)
            and bool(_ID.match(artifact_id))
            and self.path_for(artifact_id).is_file()
        )

    def ids(self) -> Iterator[str]:
        if not self.objects.is_dir():
            return
        for path in sorted(self.objects.glob(f"??/*{_SUFFIX}")):
            if _ID.match(path.stem) and not path.name.startswith("."):
                yield path.stem

    def list(self, **filters: Any) -> list[ArtifactRef]:
        """Artifacts whose metadata matches every filter, oldest first.

        Keys are metadata fields; ``__`` reaches into nested mappings:
        ``list(capability="document.convert", worker__name="doc-converter",
        parameters__to="html")``.
        """
        found: list[ArtifactRef] = []
        for artifact_id in self.ids():
            parsed = self._read(artifact_id)
            if all(_matches(parsed.metadata, k, v) for k, v in filters.items()):
                block = parsed.store_block
                size = block.get("size", 0)
                found.append(
                    ArtifactRef(
                        artifact_id,
                        self.path_for(artifact_id),
                        parsed.metadata,
                        size if isinstance(size, int) else 0,
                        "base64" if block.get("encoding") == "base64" else "utf-8",
                        created=False,
                    )
                )
        return sorted(found, key=lambda r: (str(r.metadata.get("created_at", "")), r.id))

    # -- integrity -------------------------------------------------------------

    def _problems(self, artifact_id: str, parsed: _Parsed, raw: bytes) -> tuple[str, ...]:
        problems = []
        block = parsed.store_block
        actual = sha256_hex(raw)
        meta_hash = sha256_hex(canonical_json(parsed.metadata))
        if block.get("addressed_by") == _CONTENT_AND_PROVENANCE:
            recorded = block.get("sha256")
            if actual != recorded:
                problems.append(f"content sha256 is {actual}, the artifact recorded {recorded}")
            if block.get("metadata_sha256") != meta_hash:
                problems.append(
                    "metadata was changed after the artifact was stored (metadata_sha256 differs)"
                )
            if not problems and artifact_id_for(actual, parsed.metadata) != artifact_id:
                problems.append(
                    "the id does not match the content and provenance stored under it "
                    "(the file was renamed or its artifact block edited)"
                )
        else:  # stored before provenance was part of the id: the id is the content's sha256
            if actual != artifact_id:
                problems.append(f"content sha256 is {actual}, the id says {artifact_id}")
            if block.get("sha256") != artifact_id:
                problems.append("front-matter artifact.sha256 does not match the id")
            if block.get("metadata_sha256") != meta_hash:
                problems.append(
                    "metadata was changed after the artifact was stored (metadata_sha256 differs)"
                )
        problems.extend(
            f"metadata {e['path']}: {e['message']}" for e in metadata_errors(parsed.metadata)
        )
        return tuple(problems)

    def _raise_if_corrupted(self, problems: tuple[str, ...], artifact_id: str) -> None:
        if problems:
            raise ArtifactCorrupted(
                f"artifact {artifact_id} failed its integrity check: {problems[0]}",
                hint=f"the file {self.path_for(artifact_id)} was changed after it was stored; "
                "restore it from a backup or store the content again",
                subject=artifact_id,
                problems=problems,
            )

    def verify(self, artifact_id: str) -> Verification:
        """Recompute the hashes and compare them with the recorded ones (detects tampering)."""
        try:
            parsed = self._read(artifact_id)
            raw = self._content_bytes(artifact_id, parsed)
        except ArtifactCorrupted as exc:
            return Verification(artifact_id, exc.problems or (exc.message,))
        return Verification(artifact_id, self._problems(artifact_id, parsed, raw))
