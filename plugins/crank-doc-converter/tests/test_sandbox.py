"""A document can embed only what it carries: the worker's files and network stay out."""

from __future__ import annotations

import base64
import io
import socket
import zipfile
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from crank.testing import WorkerHandle

pytestmark = pytest.mark.requires("exe:pandoc>=2.15")

#: A 1x1 PNG, embedded in the document itself.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _members(result: dict[str, str]) -> dict[str, bytes]:
    blob = zipfile.ZipFile(io.BytesIO(base64.b64decode(result["content_base64"])))
    return {name: blob.read(name) for name in blob.namelist()}


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.png"
    path.write_bytes(b"a file of the worker's machine, never of the caller")
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that records whether anything connected to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def _connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("target", ["docx", "odt"])
@pytest.mark.parametrize(
    ("source", "template"),
    [
        ("markdown", "Before ![the secret]({path}) after.\n"),
        ("html", '<p>Before <img src="{path}" alt="the secret"> after.</p>'),
    ],
)
def test_a_local_file_named_by_an_image_is_not_embedded(
    worker: WorkerHandle, secret: Path, source: str, template: str, target: str
) -> None:
    content = template.format(path=secret)
    result = worker.call("document.convert", {"from": source, "to": target, "content": content})
    members = _members(result)
    assert not [name for name, data in members.items() if secret.read_bytes() in data]
    body = members["word/document.xml" if target == "docx" else "content.xml"]
    assert b"the secret" in body  # the image became its description


@pytest.mark.parametrize("target", ["docx", "odt"])
def test_an_image_url_is_not_fetched(
    worker: WorkerHandle, listener: socket.socket, target: str
) -> None:
    port = listener.getsockname()[1]
    content = f"![remote](http://127.0.0.1:{port}/image.png)\n"
    result = worker.call("document.convert", {"from": "markdown", "to": target, "content": content})
    assert not _connected(listener)
    assert result["content_base64"]


@pytest.mark.parametrize("target", ["docx", "odt"])
def test_an_image_carried_in_the_document_is_still_embedded(
    worker: WorkerHandle, target: str
) -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    content = f"![a dot]({uri})\n"
    result = worker.call("document.convert", {"from": "markdown", "to": target, "content": content})
    assert PNG in _members(result).values()
