"""The doc-converter worker: ``document.convert`` through pandoc, stored as artifacts."""

from __future__ import annotations

import base64
import binascii
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crank.artifacts import ArtifactError, FilesystemArtifactStore, build_metadata
from crank.worker import CapabilityError, WorkerApplication, capability
from crank_doc_converter import pandoc
from crank_doc_converter.formats import FORMATS, DocumentFormat, readable, writable

if TYPE_CHECKING:
    from crank.worker import TaskContext

ARTIFACT_DIR_ENV = "CRANK_ARTIFACT_DIR"
MAX_BYTES_ENV = "CRANK_DOC_MAX_BYTES"
TIMEOUT_ENV = "CRANK_DOC_TIMEOUT_S"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0


def _env_number(name: str, default: float, *, whole: bool = False) -> float:
    """A positive, finite number from the environment (a whole one when ``whole``)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise CapabilityError(
            "MISCONFIGURED", f"{name}={raw!r} is not {kind}", retryable=False
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise CapabilityError(
            "MISCONFIGURED", f"{name} must be a positive, finite number, got {raw}"
        )
    return value


class DocumentConverter(WorkerApplication):
    """Converts documents between markdown, html, rst, latex, docx, odt and plain text."""

    store: FilesystemArtifactStore

    def setup(self) -> None:
        self.store = FilesystemArtifactStore(
            Path(os.environ.get(ARTIFACT_DIR_ENV) or "artifacts").resolve()
        )

    def check_readiness(self) -> bool:
        """Ready once pandoc is found; else ``PandocMissing`` says why (``/ready`` shows it)."""
        pandoc.find_pandoc()
        return True

    # -- input -----------------------------------------------------------------

    @staticmethod
    def _formats(data: dict[str, Any]) -> tuple[DocumentFormat, DocumentFormat]:
        source, target = FORMATS.get(data["from"]), FORMATS.get(data["to"])
        if source is None or source.reader is None:
            raise CapabilityError(
                "UNSUPPORTED_FORMAT",
                f"cannot read {data['from']!r}; readable formats: {', '.join(readable())}",
                details={"field": "from", "supported": readable()},
            )
        if target is None or target.writer is None:
            raise CapabilityError(
                "UNSUPPORTED_FORMAT",
                f"cannot write {data['to']!r}; writable formats: {', '.join(writable())}",
                details={"field": "to", "supported": writable()},
            )
        return source, target

    @staticmethod
    def _original(data: dict[str, Any], binary: bool, source_name: str) -> bytes:
        if "content_base64" in data:
            try:
                return base64.b64decode(data["content_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise CapabilityError(
                    "INVALID_DOCUMENT", "content_base64 is not valid base64"
                ) from None
        if binary:
            raise CapabilityError(
                "INVALID_DOCUMENT",
                f"{source_name} is a binary format: send it base64-encoded as content_base64",
            )
        return str(data["content"]).encode("utf-8")

    # -- the capability ----------------------------------------------------------

    @capability("document.convert")
    def convert(self, data: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        source, target = self._formats(data)
        original = self._original(data, source.binary, source.name)
        limit = int(_env_number(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, whole=True))
        if len(original) > limit:
            raise CapabilityError(
                "TOO_LARGE",
                f"the document is {len(original)} bytes; this worker converts at most {limit} "
                f"(set {MAX_BYTES_ENV} to change it)",
                details={"size": len(original), "limit": limit},
            )
        if not source.binary:
            try:
                original.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CapabilityError(
                    "INVALID_DOCUMENT", f"{source.name} input is not UTF-8 text ({exc.reason})"
                ) from None

        parameters = {
            "standalone": bool(data.get("standalone", False)),
            "toc": bool(data.get("toc", False)),
        }
        args = (["--standalone"] if parameters["standalone"] else []) + (
            ["--toc"] if parameters["toc"] else []
        )
        timeout = _env_number(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
        left = ctx.time_left()
        if left is not None:
            timeout = min(timeout, left)
        try:
            tool = pandoc.find_pandoc()
            converted = pandoc.convert(
                original,
                str(source.reader),
                str(target.writer),
                binary_output=target.binary,
                extra_args=args,
                timeout_s=timeout,
            )
        except pandoc.PandocMissing as exc:
            raise CapabilityError(
                "PANDOC_UNAVAILABLE", f"pandoc cannot be used on this worker: {exc}"
            ) from None
        except pandoc.PandocTimeout as exc:
            raise CapabilityError("TIMEOUT", f"conversion stopped: {exc}") from None
        except pandoc.PandocFailed as exc:
            raise CapabilityError(
                "INVALID_DOCUMENT",
                f"pandoc could not read this {source.name} document: {exc.message}",
                details={"pandoc_exit_status": exc.returncode},
            ) from None

        manifest = self.manifest
        metadata = build_metadata(
            source_format=source.name,
            target_format=target.name,
            original=original,
            worker_name=manifest.metadata.name,
            worker_version=manifest.metadata.version,
            capability="document.convert",
            parameters=parameters,
            extra={"pandoc_version": tool.version},
        )
        content: str | bytes = converted if target.binary else converted.decode("utf-8")
        try:
            ref = self.store.put(content, metadata)
        except ArtifactError as exc:
            raise CapabilityError(
                "STORAGE_FAILED",
                f"the converted document could not be stored: {exc.message}",
                details={"hint": exc.hint or ""},
            ) from None
        result: dict[str, Any] = {
            "artifact_id": ref.id,
            "from": source.name,
            "to": target.name,
            "size": len(converted),
            "original_sha256": metadata["original_sha256"],
            "created_at": ref.metadata["created_at"],
        }
        if target.binary:
            result["content_base64"] = base64.b64encode(converted).decode("ascii")
        else:
            result["content"] = content
        return result
