"""The document formats the converter speaks and how pandoc names them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentFormat:
    name: str
    #: pandoc reader / writer names; None where pandoc cannot read or write the format.
    reader: str | None
    writer: str | None
    #: binary formats travel as base64 in JSON (``content_base64``).
    binary: bool = False


FORMATS: dict[str, DocumentFormat] = {
    f.name: f
    for f in (
        DocumentFormat("markdown", "markdown", "markdown"),
        DocumentFormat("html", "html", "html"),
        DocumentFormat("rst", "rst", "rst"),
        DocumentFormat("latex", "latex", "latex"),
        DocumentFormat("docx", "docx", "docx", binary=True),
        DocumentFormat("odt", "odt", "odt", binary=True),
        DocumentFormat("plain", None, "plain"),
    )
}


def readable() -> list[str]:
    return sorted(n for n, f in FORMATS.items() if f.reader)


def writable() -> list[str]:
    return sorted(n for n, f in FORMATS.items() if f.writer)
