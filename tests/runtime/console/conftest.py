"""The console served by a real uvicorn (memory broker, inline worker), and a browser-like
client: a cookie jar, forms sent with the page's CSRF token, redirects not followed.

``console(token=..., ui=...)`` starts the HTTP app with the console and returns a
:class:`ConsoleClient`; ``ConsoleClient.log_in()`` goes through the login form.
``redis_console`` is the console on a private redis-server that a test can stop.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from crank.manifest import load_manifest
from crank.routing import Router
from crank.runtime.brokers import open_broker
from crank.runtime.config import RuntimeConfig
from crank.runtime.http.app import create_app
from crank.runtime.http.services import build_services

from ..http.conftest import (
    HTTP_MANIFEST,
    HTTP_WORKERS,
    TODAY,
    InlineWorker,
    ServerThread,
    services_on_redis,
)
from ..serve.conftest import CrankRun

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from crank.runtime.brokers.contract import Broker
    from crank.runtime.http.services import RuntimeServices

    from ..conftest import RedisServer

TOKEN = "s3cret-console-token-for-tests"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Forms(HTMLParser):
    """The forms of a page: action, method and their fields' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append(
                {"action": found.get("action"), "method": found.get("method"), "fields": {}}
            )
        elif tag in ("input", "button", "textarea", "select") and self.forms and found.get("name"):
            self.forms[-1]["fields"].setdefault(found["name"], found.get("value") or "")


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


class ConsoleClient:
    """An HTTP client that behaves like a browser tab on the console."""

    def __init__(self, url: str, services: RuntimeServices | None = None) -> None:
        self.url = url
        #: the server's services, when it runs in this process (not behind ``crank run``).
        self.services: Any = services
        self.http = httpx.Client(base_url=url, timeout=60, follow_redirects=False)

    def csrf(self, path: str = "/ui/capabilities/demo.echo") -> str:
        """This session's CSRF token, read from a console page (the page sets the cookie);
        from the login form when the page sends there."""
        page = self.http.get(path)
        if page.status_code == 303:
            page = self.http.get("/ui/login")
        found = _CSRF.search(page.text)
        assert found is not None, f"no CSRF token on {path} ({page.status_code}): {page.text}"
        return found.group(1)

    def log_in(self, token: str = TOKEN) -> httpx.Response:
        csrf = self.csrf("/ui/login")
        return self.http.post("/ui/login", data={"csrf_token": csrf, "token": token, "next": "/ui"})

    def post_form(self, path: str, data: dict[str, str]) -> httpx.Response:
        """Send a console form the way the browser does, with the session's CSRF token."""
        return self.http.post(path, data={"csrf_token": self.csrf(), **data})

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def console(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., ConsoleClient]]:
    """``console(token=None, ui="on", today=TODAY, retry_s=None)``: a live server with
    the console (``retry_s``: every retry's backoff; by default 10-50 ms)."""
    monkeypatch.syspath_prepend(str(HTTP_WORKERS))
    opened: list[tuple[Broker, ServerThread, ConsoleClient]] = []

    def start(
        *, token: str | None = None, ui: str = "on", today: Any = TODAY, retry_s: Any = None
    ) -> ConsoleClient:
        retry = "retry_base_s=0.01&retry_max_s=0.05"
        if retry_s is not None:
            retry = f"retry_base_s={retry_s}&retry_max_s={retry_s}"
        broker = open_broker(f"memory://?{retry}")
        router = Router.from_manifests([load_manifest(HTTP_MANIFEST)], today=lambda: today)
        config = RuntimeConfig(
            broker_url="memory://",
            manifest_paths=(HTTP_MANIFEST,),
            min_workers=0,
            api_token=token,
            ui=ui,  # type: ignore[arg-type]
        )
        services = build_services(config, broker, router)
        server = ServerThread(create_app(services)).__enter__()
        client = ConsoleClient(server.url, services)
        opened.append((broker, server, client))
        return client

    yield start
    for broker, server, client in reversed(opened):
        client.close()
        server.__exit__(None, None, None)
        broker.close()


@pytest.fixture
def redis_console(
    monkeypatch: pytest.MonkeyPatch, redis_server_aof: RedisServer
) -> Iterator[ConsoleClient]:
    """A live server with the console on the test's private redis-server (the
    ``redis_server_aof`` fixture: its ``stop()`` is a broker outage); no token."""
    monkeypatch.syspath_prepend(str(HTTP_WORKERS))
    with (
        services_on_redis(redis_server_aof) as services,
        ServerThread(create_app(services)) as server,
    ):
        client = ConsoleClient(server.url, services)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture
def inline_worker_for() -> Iterator[Callable[[Broker], InlineWorker]]:
    """``inline_worker_for(broker)``: the fixture worker running on a thread."""
    started: list[InlineWorker] = []

    def start(broker: Broker) -> InlineWorker:
        worker = InlineWorker(broker).__enter__()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.__exit__(None, None, None)


CONSOLE_WORKER = Path(__file__).resolve().parent / "console_worker"


@pytest.fixture
def console_run(tmp_path: Path) -> Iterator[Callable[..., CrankRun]]:
    """``console_run(*args, env=..., db=..., also=(), ready=True)``: a started ``crank run``
    serving the console fixture worker (and the worker folders in ``also``) with one worker
    process (so a busy worker leaves tasks pending); waits for /ready unless told not to."""
    started: list[CrankRun] = []

    def make(
        *args: str,
        env: dict[str, str] | None = None,
        db: str = "queue.db",
        also: tuple[Path, ...] = (),
        ready: bool = True,
    ) -> CrankRun:
        argv = ("--min-workers", "1", "--max-workers", "1")
        workers = (CONSOLE_WORKER, *also)
        run = CrankRun(tmp_path, *argv, *args, env=env, db=db, workers=workers)
        started.append(run)
        return run.start(ready=ready)

    yield make
    for run in started:
        run.close()
