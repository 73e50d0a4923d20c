"""How the Redis broker reaches Redis (its own connections, :mod:`crank.runtime.brokers.resp`):
every form of URL it accepts against a real redis-server set up that way (a password,
an ACL user, a database number, a Unix socket, TLS), the errors of those it refuses, the
health check of an idle connection and the end of a subscription.
(A worker on Redis that loads no redis-py: test_worker_imports.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from crank.errors import BrokerError, UsageError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers import resp as resp_module
from crank.runtime.brokers.contract import ClaimOptions, TaskSpec
from crank.testing import ensure_dependency

from ..conftest import REDIS_HINT, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from crank.runtime.brokers.contract import Broker, Notice
    from crank.runtime.brokers.notices import ResultNotices

    from ..conftest import RedisServer


def _answers(connect: Callable[[], socket.socket]) -> bool:
    """Whether a redis-server answers there (``PONG``, or ``NOAUTH`` when it wants a login)."""
    try:
        with connect() as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)[:6] in (b"+PONG\r", b"-NOAUT")
    except OSError:
        return False


def _redis_server(tmp_path: Path, *args: str, probe: Callable[[], socket.socket]) -> Iterator[None]:
    ensure_dependency("exe:redis-server", install_hint=REDIS_HINT)
    argv = ["redis-server", "--save", "", "--appendonly", "no", "--dir", str(tmp_path), *args]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _answers(probe):
            assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.02)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _tcp(port: int) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=1)


def _end(broker: Broker, task_id: str, result: dict[str, Any]) -> None:
    """The one queued task, ``task_id``, claimed and acked with ``result``."""
    [claim] = broker.claim(ClaimOptions("w1"))
    assert claim.task.id == task_id
    broker.ack(claim, result)


def _succeeded(notice: Notice | None, notices: ResultNotices, task_id: str) -> None:
    notices.forget(task_id)
    assert notice is not None and notice.status == "succeeded"


def _round_trip(broker: Broker) -> None:
    """A task submitted, claimed, acked and its result waited for by notice."""
    [task] = broker.submit_many([TaskSpec("demo.echo", {"text": "hi"})], watch=True)
    notices = broker.result_notices()
    _end(broker, task.id, {"text": "hi"})
    _succeeded(notices.wait(task.id, 3600), notices, task.id)
    done = broker.get(task.id)
    assert done is not None and done.result == {"text": "hi"}


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server with a password for the default user and an ACL user ``alice``."""
    port = free_port()
    for _ in _redis_server(
        tmp_path, "--port", str(port), "--bind", "127.0.0.1",
        "--requirepass", "s3cret-default",
        "--user", "alice", "on", ">s3cret-alice", "~*", "&*", "+@all",
        probe=_tcp(port),
    ):  # fmt: skip
        yield port


@pytest.mark.parametrize(
    "userinfo",
    [":s3cret-default", "default:s3cret-default", "alice:s3cret-alice", "al%69ce:s3cret-alice"],
)
def test_a_password_and_a_user_log_in(locked_redis: int, userinfo: str) -> None:
    broker = open_broker(f"redis://{userinfo}@127.0.0.1:{locked_redis}/0")
    try:
        _round_trip(broker)
    finally:
        broker.close()


@pytest.mark.parametrize(
    ("userinfo", "refusal"),
    [
        (":wrong-one", "WRONGPASS"),
        ("alice:wrong-one", "WRONGPASS"),
        ("", "NOAUTH"),
    ],
)
def test_a_refused_login_is_a_broker_error_that_shows_no_password(
    locked_redis: int, userinfo: str, refusal: str
) -> None:
    at = f"{userinfo}@" if userinfo else ""
    with pytest.raises(BrokerError) as info:
        open_broker(f"redis://{at}127.0.0.1:{locked_redis}/0")
    assert refusal in info.value.message
    assert "wrong-one" not in info.value.message
    assert "wrong-one" not in str(info.value.subject)
    # it runs: the hint is about the login, not about whether redis-server runs
    assert "password" in (info.value.hint or "")
    assert "redis-cli" in (info.value.hint or "")


def test_a_database_number_redis_does_not_have_is_a_hint_about_the_number(
    redis_server: str,
) -> None:
    url = redis_server.rsplit("/", 1)[0] + "/99"
    with pytest.raises(BrokerError) as info:
        open_broker(url)
    assert "DB index is out of range" in info.value.message
    assert "database number" in (info.value.hint or "")
    assert "runs and is reachable" not in (info.value.hint or "")


def test_the_database_number_is_the_one_used(redis_server: str) -> None:
    url = redis_server.rsplit("/", 1)[0] + "/3"
    broker = open_broker(url)
    admin3 = redis.Redis.from_url(url, decode_responses=True)
    admin0 = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        [task] = broker.submit_many([TaskSpec("demo.echo", {})])
        assert admin3.exists(f"crank:t:{task.id}")
        assert not admin0.exists(f"crank:t:{task.id}")
    finally:
        admin3.close()
        admin0.close()
        broker.close()


def test_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "redis.sock")

    def probe() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(1)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock

    for _ in _redis_server(tmp_path, "--port", "0", "--unixsocket", path, probe=probe):
        broker = open_broker(f"unix://{path}")
        try:
            _round_trip(broker)
        finally:
            broker.close()
        with pytest.raises(BrokerError) as info:
            open_broker(f"unix://{tmp_path / 'none.sock'}")
        assert "cannot connect" in info.value.message


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A certificate authority and a certificate for localhost it signed (openssl)."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "k.pem", "r.csr", "c.pem")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run = ["openssl"]
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=crank test CA", "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key,
         "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
         "-extfile", ext, "-out", cert],
    ):  # fmt: skip
        subprocess.run([*run, *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks TLS only, and the authority that signed its certificate."""
    ensure_dependency("exe:openssl", install_hint="apt-get install openssl")
    ca, cert, key = _certificates(tmp_path)
    port = free_port()

    def probe() -> socket.socket:
        import ssl

        context = ssl.create_default_context(cafile=str(ca))
        return context.wrap_socket(_tcp(port)(), server_hostname="localhost")

    for _ in _redis_server(
        tmp_path, "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        probe=probe,
    ):  # fmt: skip
        yield port, ca


def test_rediss_speaks_tls_and_verifies_the_certificate(
    tls_redis: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = tls_redis
    url = f"rediss://localhost:{port}/0"
    # the system's authorities do not know this one: refused
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(BrokerError) as info:
        open_broker(url)
    assert "certificate verify failed" in info.value.message
    # told of it (as OpenSSL reads SSL_CERT_FILE): accepted, results by notice included
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    broker = open_broker(url)
    try:
        _round_trip(broker)
    finally:
        broker.close()
    # and plain redis:// to a TLS port is a clear error, not a hang
    with pytest.raises(BrokerError):
        open_broker(f"redis://localhost:{port}/0", socket_timeout_s=1.0)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://127.0.0.1:http/0", "its port is not a number"),
        ("redis://127.0.0.1:6379/zero", "the database 'zero' is not a number"),
        ("redis://alice@127.0.0.1:6379/0", "a user name needs its password"),
        ("unix://", "a unix:// URL needs the socket's path"),
    ],
)
def test_unusable_redis_urls_are_usage_errors(url: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        open_broker(url)
    assert info.value.message.startswith(f"broker URL {url!r} cannot be used: {why}")
    assert "redis://host:port/db" in (info.value.hint or "")


def test_a_password_in_an_unusable_url_is_not_shown() -> None:
    with pytest.raises(UsageError) as info:
        open_broker("redis://:hunter2@127.0.0.1:6379/zero")
    assert "hunter2" not in info.value.message
    assert "hunter2" not in str(info.value.subject)


def test_an_idle_connection_is_checked_before_it_is_written_to(
    redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = open_broker(redis_server)
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        [task] = broker.submit_many([TaskSpec("demo.echo", {})])

        def pings() -> int:
            return int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))

        before = pings()
        assert broker.get(task.id) is not None
        assert pings() == before  # in use a moment ago: written to at once
        monkeypatch.setattr(resp_module, "HEALTH_CHECK_AFTER_S", 0.0)
        assert broker.get(task.id) is not None
        assert pings() == before + 1
    finally:
        admin.close()
        broker.close()


def test_closing_the_broker_stops_its_subscription_at_once(redis_server: str) -> None:
    def listening() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "crank-subscription"]

    before = listening()
    broker = open_broker(redis_server)
    broker.result_notices()
    [thread] = [t for t in listening() if t not in before]
    broker.close()
    # close() waits for the thread (at most 2 s) after waking its read
    assert not thread.is_alive()


def _watching(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, socket_timeout_s: float
) -> tuple[Broker, str, ResultNotices]:
    """A broker whose subscription pings after 0.2 s of quiet, a task it watches, and
    the notices it listens for."""
    monkeypatch.setattr(resp_module, "HEALTH_CHECK_AFTER_S", 0.2)
    broker = open_broker(server.url, socket_timeout_s=socket_timeout_s)
    [task] = broker.submit_many([TaskSpec("demo.echo", {})], watch=True)
    return broker, task.id, broker.result_notices()


def _frozen_until(server: RedisServer, condition: Callable[[], bool], what: str) -> None:
    """Redis stopped (it keeps its connections and answers nothing) until ``condition``
    holds, then let go."""
    proc = server.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def test_a_subscription_that_hears_nothing_pings_and_connects_again(
    redis_server_aof: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that stops answering without closing the connection (a frozen server, a
    peer gone behind a NAT) is found out by the subscription's ping; once it answers
    again, the subscription is made afresh and every waiter told to look."""
    broker, task_id, notices = _watching(redis_server_aof, monkeypatch, socket_timeout_s=0.5)
    try:
        listener = broker._listener  # type: ignore[attr-defined]
        # the unanswered ping gives the connection up
        _frozen_until(redis_server_aof, lambda: not listener._conn.connected, "it never noticed")
        # subscribed again: waiters are woken to read their task (nothing was missed)
        assert notices.wait(task_id, 3600) is None
        _end(broker, task_id, {"after": "the freeze"})
        _succeeded(notices.wait(task_id, 3600), notices, task_id)
    finally:
        broker.close()


def test_a_subscriptions_ping_is_answered_on_the_subscribed_connection(
    redis_server_aof: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscription's idle ping went through the connection's own health check,
    which pinged first and, with no answer in time, connected afresh: the subscription
    went on reading a connection that subscribed to nothing (its PONG looked healthy),
    and no notice came again. Here Redis is frozen when the subscription pings and
    thawed at once: the notice after it must arrive."""
    broker, task_id, notices = _watching(redis_server_aof, monkeypatch, socket_timeout_s=5)
    try:
        listener = broker._listener  # type: ignore[attr-defined]
        # it pinged, and heard nothing yet
        _frozen_until(redis_server_aof, lambda: listener._pinged is not None, "it never pinged")
        _end(broker, task_id, {"after": "the ping"})
        _succeeded(notices.wait(task_id, 60), notices, task_id)
    finally:
        broker.close()


def test_a_frozen_redis_times_a_call_out_and_a_thawed_one_answers_again(
    redis_server_aof: RedisServer,
) -> None:
    """A call to a Redis that keeps the connection and answers nothing fails once the
    read timeout (``socket_timeout_s`` plus a blocking claim's slice) runs out, with an
    error that says so, and does not hang; once Redis answers again, so does the broker.
    (On Linux the kernel times the read out: the socket blocks, with ``SO_RCVTIMEO``.)"""
    broker = open_broker(redis_server_aof.url, socket_timeout_s=0.2)
    proc = redis_server_aof.proc
    assert proc is not None
    try:
        [task] = broker.submit_many([TaskSpec("demo.echo", {"n": 1})])
        sock = broker._hot._conn._sock  # type: ignore[attr-defined]
        if resp_module._KERNEL_TIMEOUTS:
            assert sock.gettimeout() is None  # no poll before each read and write
        os.kill(proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(BrokerError) as info:
                broker.get(task.id)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert "did not answer within 0.7 s" in info.value.message, info.value.message
        assert time.monotonic() - started >= 0.7  # not sooner than the timeout
        record = broker.get(task.id)  # connects afresh
        assert record is not None
        assert record.payload == {"n": 1}
    finally:
        broker.close()


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def test_an_event_loop_reads_the_notices_itself(redis_server: str) -> None:
    """``listen_in(loop)`` (an HTTP server's): the notice is handed on by the loop that
    waits for it, not by the subscription's thread (one hand-over less per call)."""
    broker = open_broker(redis_server)

    async def main() -> None:
        broker.listen_in(asyncio.get_running_loop())
        notices = broker.result_notices()
        listener = broker._listener  # type: ignore[attr-defined]
        await _until(lambda: listener._attached, "the thread never handed the reading over")
        delivered_on: list[int] = []
        deliver = notices.deliver

        def recording(found: Any) -> None:
            delivered_on.append(threading.get_ident())
            deliver(found)

        notices.deliver = recording  # type: ignore[method-assign]
        [task] = broker.submit_many([TaskSpec("demo.echo", {"n": 1})], watch=True)

        await asyncio.to_thread(_end, broker, task.id, {"n": 1})
        _succeeded(await notices.wait_async(task.id, 3600), notices, task.id)
        assert delivered_on == [threading.get_ident()]
        broker.close()  # on the loop: the socket is closed there, the thread ends
        assert not listener._thread.is_alive()
        assert not listener._conn.connected

    asyncio.run(main())


def test_a_loop_that_reads_the_notices_gives_a_frozen_connection_back(
    redis_server_aof: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's ping goes unanswered: it gives the connection up, the thread makes it
    afresh once Redis answers, wakes every waiter, and hands the reading back."""
    monkeypatch.setattr(resp_module, "HEALTH_CHECK_AFTER_S", 0.2)
    broker = open_broker(redis_server_aof.url, socket_timeout_s=0.5)
    proc = redis_server_aof.proc
    assert proc is not None

    async def main() -> None:
        broker.listen_in(asyncio.get_running_loop())
        notices = broker.result_notices()
        listener = broker._listener  # type: ignore[attr-defined]
        await _until(lambda: listener._attached, "the thread never handed the reading over")
        [task] = broker.submit_many([TaskSpec("demo.echo", {})], watch=True)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            await _until(lambda: not listener._attached, "the loop never gave it up")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert await notices.wait_async(task.id, 3600) is None  # woken to look
        await _until(lambda: listener._attached, "the reading never came back to the loop")

        await asyncio.to_thread(_end, broker, task.id, {"after": "the freeze"})
        _succeeded(await notices.wait_async(task.id, 3600), notices, task.id)
        broker.close()

    asyncio.run(main())


def test_a_broker_closed_after_its_loop_closes_its_subscription(redis_server: str) -> None:
    """An HTTP server's loop is gone before the broker is closed (a shutdown): the
    socket the loop read is closed all the same, and the thread ends."""
    broker = open_broker(redis_server)

    async def main() -> Any:
        broker.listen_in(asyncio.get_running_loop())
        broker.result_notices()
        listener = broker._listener  # type: ignore[attr-defined]
        await _until(lambda: listener._attached, "the thread never handed the reading over")
        return listener

    listener = asyncio.run(main())  # the loop is closed once it returns
    broker.close()
    assert not listener._conn.connected
    assert not listener._thread.is_alive()


def test_a_connection_on_a_descriptor_above_1023_is_kept(redis_server: str) -> None:
    """A busy server holds many descriptors: a connection whose descriptor is above
    select()'s limit is checked all the same, not taken for stale and made afresh on
    every call."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held: list[int] = []
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        broker = open_broker(redis_server)
        try:
            [task] = broker.submit_many([TaskSpec("demo.echo", {})])
            assert broker._hot._conn.fileno() > 1023  # type: ignore[attr-defined]
            before = int(admin.info("stats")["total_connections_received"])
            for _ in range(5):
                assert broker.get(task.id) is not None
            assert int(admin.info("stats")["total_connections_received"]) == before
        finally:
            broker.close()
    finally:
        admin.close()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
