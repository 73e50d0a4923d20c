"""Each example capability called over HTTP on a real ``crank run``, legacy ``/classify`` too."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from importlib import resources
from typing import TYPE_CHECKING, Any

import pytest

from crank.artifacts import FilesystemArtifactStore
from crank.manifest import load_manifest

if TYPE_CHECKING:
    from conftest import ExamplesServer  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires("exe:pandoc>=2.15", "onnxruntime"),
    pytest.mark.requires(
        "crank_doc_converter",
        "crank_email_classifier",
        "crank_image_classifier",
        "crank_text_streamer",
        hint="pip install -e plugins/crank-* (every example)",
    ),
]

#: scikit-learn's first digit (a zero), as 64 grey levels.
ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0,
        0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0,
        0, 6, 13, 10, 0, 0, 0]  # fmt: skip


def test_every_example_capability_is_listed(examples_server: ExamplesServer) -> None:
    listed = examples_server.http.get("/v1/capabilities").json()
    ids = json.dumps(listed)
    for cap in ("document.convert", "email.spam_detection", "email.bill_detection",
                "image.classify", "text.tokens", "email.classification"):  # fmt: skip
        assert cap in ids


def test_spam_detection(examples_server: ExamplesServer) -> None:
    r = examples_server.http.post(
        "/v1/capabilities/email.spam_detection",
        json={"subject": "You WON!!", "text": "Claim your prize now at http://claim.example"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["label"], r.json()["is_spam"]) == ("spam", True)
    assert "deprecation" not in r.headers


def test_bill_detection(examples_server: ExamplesServer) -> None:
    r = examples_server.http.post(
        "/v1/capabilities/email.bill_detection",
        json={"subject": "Your phone bill", "text": "Amount due: $52.30, due date: Dec 12."},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["is_bill"], body["amount"], body["due"]) == (True, "$52.30", "Dec 12")


def _past_the_legacy_sunset(r: Any) -> bool:
    """The example classifier's ``email.classification`` stops answering after the
    sunset its crank.yaml names (2036-06-30): from that day on the legacy path answers
    410 whatever the input, and this suite must keep passing then too."""
    manifest = resources.files("crank_email_classifier") / "crank.yaml"
    with resources.as_file(manifest) as path:
        (legacy,) = [d for d in load_manifest(path).deprecated if d.id == "email.classification"]
    if dt.date.today() <= legacy.sunset:
        return False
    assert r.status_code == 410, r.text
    assert r.json()["error"]["code"] == "CAPABILITY_GONE"
    return True


@pytest.mark.parametrize(
    ("payload", "field", "answer"),
    [
        ({"text": "hello", "type": "spam"}, "is_spam", False),
        ({"text": "invoice", "type": "bill"}, "is_bill", True),
        ({"text": "hello"}, "is_spam", False),
    ],
)
def test_legacy_classify_still_answers_with_deprecation_headers(
    examples_server: ExamplesServer, payload: dict[str, str], field: str, answer: bool
) -> None:
    r = examples_server.http.post("/classify", json=payload)
    if _past_the_legacy_sunset(r):
        return
    assert r.status_code == 200, r.text
    assert r.json()[field] is answer
    assert r.headers["Deprecation"] == "@1788220800"  # deprecated since 2026-09-01
    assert r.headers["Sunset"] == "Mon, 30 Jun 2036 23:59:59 GMT"
    assert 'rel="successor-version"' in r.headers["Link"]


def test_legacy_classify_refuses_an_unknown_type(examples_server: ExamplesServer) -> None:
    r = examples_server.http.post("/classify", json={"text": "hello", "type": "phishing"})
    if _past_the_legacy_sunset(r):
        return
    assert r.status_code in (400, 422), r.text
    assert "type" in r.json()["error"]["message"]


def test_document_convert_stores_the_artifact(examples_server: ExamplesServer) -> None:
    r = examples_server.http.post(
        "/v1/capabilities/document.convert",
        json={"from": "markdown", "to": "html", "content": "# Hello\n\nSome *emphasis*."},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == '<h1 id="hello">Hello</h1>\n<p>Some <em>emphasis</em>.</p>\n'
    store = FilesystemArtifactStore(examples_server.artifact_dir)
    artifact = store.get(body["artifact_id"])
    assert artifact.content == body["content"]
    assert artifact.metadata["worker"] == {"name": "doc-converter", "version": "1.0.0"}
    assert store.verify(body["artifact_id"]).ok


def test_document_convert_declared_error(examples_server: ExamplesServer) -> None:
    r = examples_server.http.post(
        "/v1/capabilities/document.convert", json={"from": "pdf", "to": "html", "content": "x"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "UNSUPPORTED_FORMAT"


def test_image_classify(examples_server: ExamplesServer) -> None:
    r = examples_server.http.post("/v1/capabilities/image.classify", json={"images": [ZERO, ZERO]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == [0, 0]
    assert body["provider"] == "CPUExecutionProvider" or shutil.which("nvidia-smi")


def test_text_tokens_stream_over_sse(examples_server: ExamplesServer) -> None:
    with examples_server.http.stream(
        "POST",
        "/v1/capabilities/text.tokens",
        json={"text": "Streams matter. Really!", "unit": "sentence"},
        headers={"Accept": "text/event-stream"},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith('data: {"type')]
    assert [e.get("token") for e in data] == ["Streams matter.", "Really!", None]
    assert data[-1] == {"type": "done", "count": 2, "unit": "sentence"}
