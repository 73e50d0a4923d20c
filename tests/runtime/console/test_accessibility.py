"""Accessibility basics on every console page: a language, one h1, a skip link, every
form control named by a label, tables with header cells, and buttons that say what they do.

The pages are read as HTML (the browser test walks them with the keyboard-usable native
controls these checks hold the templates to: links, buttons, labelled fields)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from crank.runtime.brokers.contract import ClaimOptions, TaskSpec

from .conftest import TOKEN

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import ConsoleClient


class Outline(HTMLParser):
    """What the checks need of a page: its controls, labels, headings, buttons, tables."""

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.h1 = 0
        self.labels: set[str] = set()
        self.controls: list[dict[str, Any]] = []
        self.buttons: list[str] = []
        self.tables = 0
        self.table_headers = 0
        self.skip_link = False
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "h1":
            self.h1 += 1
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)
        elif tag == "button":
            self._button = []
        elif tag == "table":
            self.tables += 1
        elif tag == "th":
            self.table_headers += 1
        elif tag == "a" and a.get("href") == "#main":
            self.skip_link = True

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons.append(" ".join("".join(self._button).split()))
            self._button = None


def _pages(client: ConsoleClient) -> list[str]:
    broker = client.services.broker
    task = broker.submit(TaskSpec("demo.count", {"n": 1}))
    dead = broker.submit(TaskSpec("demo.slow", {"seconds": 0}, max_attempts=1))
    [claim] = broker.claim(ClaimOptions("t", capabilities=("demo.slow",)))
    broker.fail(claim, {"code": "BOOM", "message": "x"}, retryable=False)
    return [
        "/ui", "/ui/capabilities", "/ui/capabilities/demo.echo", "/ui/deprecated",
        "/ui/tasks", f"/ui/tasks/{task.id}", f"/ui/tasks/{dead.id}", "/ui/dead-letters",
        "/ui/tasks/missing",
    ]  # fmt: skip


def test_every_page_has_a_language_one_heading_and_labelled_controls(
    console: Callable[..., ConsoleClient],
) -> None:
    client = console(token=TOKEN)
    login = Outline()
    login.feed(client.http.get("/ui/login").text)
    assert [c["id"] for c in login.controls] == ["token"] and "token" in login.labels
    client.log_in()
    for path in _pages(client):
        page = Outline()
        page.feed(client.http.get(path).text)
        assert page.lang == "en", path
        assert page.h1 == 1, path
        assert page.skip_link, path
        unlabelled = [
            c for c in page.controls if c.get("id") not in page.labels and not c.get("aria-label")
        ]
        assert unlabelled == [], (path, unlabelled)
        assert all(page.buttons), (path, page.buttons)  # no button without words
        if page.tables:
            assert page.table_headers >= page.tables, path
