from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from crank_doc_converter import pandoc

from crank.errors import ValidationFailed
from crank.testing.specs import parse_spec
from crank.testing.system_checks import check_executable
from crank.worker import CapabilityError

if TYPE_CHECKING:
    from crank.manifest import Manifest
    from crank.testing import WorkerHandle, WorkerRunner

pytestmark = pytest.mark.requires("exe:pandoc>=2.15")


def convert_error(worker: WorkerHandle, data: dict[str, object]) -> CapabilityError:
    with pytest.raises(CapabilityError) as info:
        worker.call("document.convert", data)
    return info.value


def test_unsupported_source_format_lists_the_readable_ones(worker: WorkerHandle) -> None:
    err = convert_error(worker, {"from": "pdf", "to": "html", "content": "x"})
    assert (err.code, err.retryable) == ("UNSUPPORTED_FORMAT", False)
    assert (
        err.message == "cannot read 'pdf'; readable formats: docx, html, latex, markdown, odt, rst"
    )


def test_plain_text_can_be_written_but_not_read(worker: WorkerHandle) -> None:
    err = convert_error(worker, {"from": "plain", "to": "html", "content": "x"})
    assert err.code == "UNSUPPORTED_FORMAT"
    err = convert_error(worker, {"from": "markdown", "to": "epub", "content": "x"})
    assert err.message.startswith("cannot write 'epub'; writable formats: docx, html, latex")


def test_corrupt_docx_is_an_invalid_document(worker: WorkerHandle, artifact_dir: Path) -> None:
    garbage = base64.b64encode(b"PK\x03\x04 this is not really a zip").decode()
    err = convert_error(worker, {"from": "docx", "to": "markdown", "content_base64": garbage})
    assert (err.code, err.retryable) == ("INVALID_DOCUMENT", False)
    assert err.message.startswith("pandoc could not read this docx document: ")
    assert "unpack docx container" in err.message
    assert not artifact_dir.exists()  # nothing stored for a failed conversion


def test_binary_format_sent_as_text_is_refused_with_a_hint(worker: WorkerHandle) -> None:
    err = convert_error(worker, {"from": "odt", "to": "html", "content": "plain words"})
    assert err.message == "odt is a binary format: send it base64-encoded as content_base64"


def test_bad_base64_is_an_invalid_document(worker: WorkerHandle) -> None:
    err = convert_error(
        worker, {"from": "markdown", "to": "html", "content_base64": "%%%not base64"}
    )
    assert (err.code, err.message) == ("INVALID_DOCUMENT", "content_base64 is not valid base64")


def test_text_that_is_not_utf8_is_an_invalid_document(worker: WorkerHandle) -> None:
    latin1 = base64.b64encode("café".encode("latin-1")).decode()
    err = convert_error(worker, {"from": "markdown", "to": "html", "content_base64": latin1})
    assert err.code == "INVALID_DOCUMENT"
    assert err.message.startswith("markdown input is not UTF-8 text")


def test_oversized_documents_are_refused(
    worker: WorkerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRANK_DOC_MAX_BYTES", "100")
    err = convert_error(worker, {"from": "markdown", "to": "html", "content": "x" * 101})
    assert (err.code, err.retryable) == ("TOO_LARGE", False)
    assert err.details == {"size": 101, "limit": 100}
    assert "set CRANK_DOC_MAX_BYTES" in err.message


def test_a_conversion_past_its_timeout_is_killed_and_retryable(
    worker: WorkerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRANK_DOC_TIMEOUT_S", "0.001")  # pandoc cannot even start in 1 ms
    err = convert_error(worker, {"from": "markdown", "to": "html", "content": "# slow"})
    assert (err.code, err.retryable) == ("TIMEOUT", True)
    assert err.message.startswith("conversion stopped: pandoc did not finish within")
    assert pandoc_children() == []  # killed and reaped, not left running


def pandoc_children() -> list[int]:
    """pandoc processes whose parent is this test process (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if comm == "pandoc" and ppid == os.getpid():
            found.append(int(entry.name))
    return found


def test_a_bad_setting_is_reported(worker: WorkerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRANK_DOC_TIMEOUT_S", "soon")
    err = convert_error(worker, {"from": "markdown", "to": "html", "content": "x"})
    assert (err.code, err.message) == (
        "MISCONFIGURED",
        "CRANK_DOC_TIMEOUT_S='soon' is not a number",
    )


POSITIVE = "must be a positive, finite number"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CRANK_DOC_TIMEOUT_S", "nan", f"CRANK_DOC_TIMEOUT_S {POSITIVE}, got nan"),
        ("CRANK_DOC_TIMEOUT_S", "0", f"CRANK_DOC_TIMEOUT_S {POSITIVE}, got 0"),
        ("CRANK_DOC_MAX_BYTES", "inf", "CRANK_DOC_MAX_BYTES='inf' is not a whole number"),
        ("CRANK_DOC_MAX_BYTES", "nan", "CRANK_DOC_MAX_BYTES='nan' is not a whole number"),
        ("CRANK_DOC_MAX_BYTES", "0.5", "CRANK_DOC_MAX_BYTES='0.5' is not a whole number"),
        ("CRANK_DOC_MAX_BYTES", "-3", f"CRANK_DOC_MAX_BYTES {POSITIVE}, got -3"),
    ],
)  # fmt: skip
def test_a_setting_that_is_not_a_usable_number_is_misconfigured(
    worker: WorkerHandle, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    """nan and inf crashed the conversion (an undeclared ValueError/OverflowError); 0.5
    bytes became a limit of 0 that refused every document as TOO_LARGE."""
    monkeypatch.setenv(name, value)
    err = convert_error(worker, {"from": "markdown", "to": "html", "content": "x"})
    assert (err.code, err.message, err.retryable) == ("MISCONFIGURED", message, False)


def test_content_is_required(worker: WorkerHandle) -> None:
    with pytest.raises(ValidationFailed) as info:
        worker.call("document.convert", {"from": "markdown", "to": "html"})
    assert 'exactly one of "content", "content_base64" is required' in str(info.value)


def test_content_and_content_base64_together_are_refused_naming_both(
    worker: WorkerHandle,
) -> None:
    data = {"from": "markdown", "to": "html", "content": "a", "content_base64": "YQ=="}
    with pytest.raises(ValidationFailed) as info:
        worker.call("document.convert", data)
    assert 'only one of "content", "content_base64" may be given' in str(info.value)


def test_without_pandoc_the_worker_is_not_ready_and_says_why(
    worker: WorkerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pypandoc also probes the usual install folders, so a machine without pandoc is
    # simulated at the one function that looks for it.
    def missing() -> pandoc.Pandoc:
        raise pandoc.PandocMissing("No pandoc was found")

    monkeypatch.setattr(pandoc, "find_pandoc", missing)
    # the hook raises: crank run shows the message as the reason it is not ready
    with pytest.raises(pandoc.PandocMissing, match="No pandoc was found"):
        worker.ready()
    err = convert_error(worker, {"from": "markdown", "to": "html", "content": "x"})
    assert (err.code, err.retryable) == ("PANDOC_UNAVAILABLE", True)


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (OSError("No pandoc was found: ... call pypandoc.download_pandoc(...)"), (
            "pandoc is not installed or not on PATH: apt-get install pandoc (or brew install "
            "pandoc), version 2.15 or later"
        )),
        ("2.14.2", (
            "pandoc 2.14.2 (/opt/pandoc) is too old: this worker reads every document with "
            "--sandbox, new in pandoc 2.15; apt-get install pandoc"
        )),
    ],
)  # fmt: skip
def test_a_missing_or_too_old_pandoc_is_named_with_the_install_hint(
    worker: WorkerHandle, monkeypatch: pytest.MonkeyPatch, found: object, reason: str
) -> None:
    """The reason /ready and PANDOC_UNAVAILABLE give: pypandoc's own message sent people
    to pypandoc.download_pandoc(), and a pandoc without --sandbox was called ready."""
    import pypandoc

    def version() -> str:
        if isinstance(found, Exception):
            raise found
        return str(found)

    monkeypatch.setattr(pypandoc, "get_pandoc_path", lambda: "/opt/pandoc")
    monkeypatch.setattr(pypandoc, "get_pandoc_version", version)
    pandoc.find_pandoc.cache_clear()
    try:
        with pytest.raises(pandoc.PandocMissing) as info:
            worker.ready()
        assert str(info.value).startswith(reason)
        err = convert_error(worker, {"from": "markdown", "to": "html", "content": "x"})
        assert (err.code, err.retryable) == ("PANDOC_UNAVAILABLE", True)
        assert err.message == f"pandoc cannot be used on this worker: {info.value}"
    finally:
        pandoc.find_pandoc.cache_clear()  # the real pandoc for the next tests


def test_an_unwritable_artifact_store_is_a_declared_retryable_error(
    crank_worker: WorkerRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    monkeypatch.setenv("CRANK_ARTIFACT_DIR", str(blocker))
    worker = crank_worker(Path(__file__).parents[1] / "src/crank_doc_converter/crank.yaml")
    err = convert_error(worker, {"from": "markdown", "to": "html", "content": "# x"})
    assert (err.code, err.retryable) == ("STORAGE_FAILED", True)
    assert err.message.startswith("the converted document could not be stored: cannot write")
    assert "writable" in err.details["hint"]


def test_the_declared_pandoc_version_reads_with_the_sandbox(
    manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read runs pandoc --sandbox, new in pandoc 2.15: an older pandoc must fail the
    dependency check (with its hint), not pass it and then fail every conversion."""
    old = tmp_path / "pandoc"
    old.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "pandoc 2.14.2"; exit 0; fi\n'
        'echo "Unknown option --sandbox." >&2; exit 2\n'
    )
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    (pandoc_dep,) = manifest.dependencies.system
    result = check_executable(parse_spec(pandoc_dep.check, ["exe"]))  # not the cached one
    assert not result.available
    assert "2.14.2" in result.reason
