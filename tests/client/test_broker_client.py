"""``crank.connect`` straight to a real broker (SQLite file, Redis server) with real workers."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from crank import connect, connect_async
from crank.client import (
    ApiError,
    BrokerUnavailable,
    ClientClosed,
    ClientError,
    InvalidTask,
    TaskFailed,
    TaskNotFound,
    TaskRequest,
    TaskTimeout,
)
from crank.errors import BrokerError, UsageError

from ..runtime.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ..runtime.conftest import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path, worker_pool: Any) -> str:
    """A broker URL with one worker process serving the runtime fixture worker."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        url = str(request.getfixturevalue("redis_server"))
    worker_pool(url).spawn()
    return url


def test_submit_and_wait_for_the_result(queue_url: str) -> None:
    with connect(queue_url, caller="billing-job") as queue:
        task = queue.submit("fixture.echo", {"n": 1}, priority=3)
        assert task.info is not None and task.info.status == "pending"
        result = task.result(timeout=60)
        assert result["echo"] == {"n": 1}
        assert result["task_id"] == task.id
        info = task.status()
        assert (info.status, info.priority, info.requested) == ("succeeded", 3, "fixture.echo")
        # the producer is named with the task
        record = queue.broker.get(task.id)
        assert record is not None and record.meta["caller"] == "billing-job"


def test_submit_many_in_order(queue_url: str) -> None:
    with connect(queue_url) as queue:
        tasks = queue.submit_many(
            [("fixture.echo", {"i": i}) for i in range(10)]
            + [TaskRequest("fixture.echo", {"i": 10}, priority=1)]
        )
        assert len({t.id for t in tasks}) == 11
        assert [t.result(timeout=60)["echo"]["i"] for t in tasks] == list(range(11))
        assert queue.submit_many([]) == []


def test_failures_and_timeouts(queue_url: str) -> None:
    with connect(queue_url) as queue:
        refused = queue.submit("fixture.broken", {"declared": True})
        with pytest.raises(TaskFailed) as caught:
            refused.result(timeout=60)
        assert caught.value.code == "BAD_REQUEST"
        assert caught.value.task_status == refused.status().status == "failed"
        assert caught.value.declared is True  # failed: a declared code (or bad input)
        slow = queue.submit("fixture.sleep", {"seconds": 1.0})
        with pytest.raises(TaskTimeout) as late:
            slow.result(timeout=0.05)
        assert late.value.task_id == slow.id
        assert slow.result(timeout=60) == {"slept": 1.0}
        with pytest.raises(TaskNotFound):
            queue.task("no-such-task").result(timeout=1)


@pytest.fixture(params=["sqlite", "redis"])
def idle_queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A broker URL no worker serves: its tasks stay pending."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return str(request.getfixturevalue("redis_server"))


#: what no wait can be bounded by (the HTTP clients refuse the same).
NO_SECONDS: list[object] = [math.nan, -1, "1", math.inf, True, False]


def test_a_result_timeout_that_is_no_number_of_seconds_is_refused(idle_queue_url: str) -> None:
    """NaN made a deadline no clock reaches (the wait read the broker thousands of times
    a second, for ever), -1 was taken for "look once", "1" raised a bare TypeError."""
    with connect(idle_queue_url) as queue:
        watched = queue.submit("fixture.echo", {})
        for task in (watched, queue.task(watched.id)):
            for timeout in NO_SECONDS:
                with pytest.raises(ClientError) as caught:
                    task.result(timeout=timeout)  # type: ignore[arg-type]
                assert caught.value.message == (
                    f"timeout {timeout!r} is not a number of seconds 0 or more"
                )
            with pytest.raises(TaskTimeout):  # what was refused took nothing away
                task.result(timeout=0)

    async def scenario() -> None:
        async with await connect_async(idle_queue_url) as queue:
            watched = await queue.submit("fixture.echo", {})
            for task in (watched, queue.task(watched.id)):
                for timeout in NO_SECONDS:
                    with pytest.raises(ClientError, match="is not a number of seconds"):
                        await task.result(timeout=timeout)  # type: ignore[arg-type]
                with pytest.raises(TaskTimeout):
                    await task.result(timeout=0)

    asyncio.run(scenario())


def test_a_task_id_that_cannot_be_one_is_refused(tmp_path: Path) -> None:
    """``task("")`` read the broker and raised TaskNotFound ("no task ''") where the HTTP
    client refuses the id, as documented, with InvalidTask."""
    with connect(f"sqlite:///{tmp_path / 'queue.db'}") as queue:
        for task_id in ("", "..", "a/b", 123, None):
            with pytest.raises(InvalidTask, match="task id"):
                queue.task(task_id).status()  # type: ignore[arg-type]

    async def scenario() -> None:
        async with await connect_async(f"sqlite:///{tmp_path / 'queue.db'}") as queue:
            with pytest.raises(InvalidTask, match=r"^task id '' cannot be one"):
                queue.task("")

    asyncio.run(scenario())


def test_idempotency_key_and_bad_input(queue_url: str) -> None:
    with connect(queue_url) as queue:
        first = queue.submit("fixture.echo", {"k": 1}, idempotency_key="order-17")
        again = queue.submit("fixture.echo", {"k": 1}, idempotency_key="order-17")
        assert again.id == first.id
        with pytest.raises(ApiError) as reused:
            queue.submit("fixture.echo", {"k": 2}, idempotency_key="order-17")
        assert (reused.value.status, reused.value.code) == (409, "IDEMPOTENCY_KEY_REUSED")
        assert first.id not in str(reused.value)
    with connect(queue_url, caller="other-job") as queue:
        # another caller's same key is another key
        theirs = queue.submit("fixture.echo", {"k": 2}, idempotency_key="order-17")
        assert theirs.id != first.id
        assert theirs.result(timeout=60)["echo"] == {"k": 2}
        with pytest.raises(InvalidTask, match="cannot be sent as JSON"):
            queue.submit("fixture.echo", {"x": math.inf})
        with pytest.raises(InvalidTask, match="must be a mapping"):
            queue.submit("fixture.echo", "text")  # type: ignore[arg-type]
        with pytest.raises(InvalidTask, match="TaskRequest values or"):
            queue.submit_many(["fixture.echo"])  # type: ignore[list-item]


def _no_more_waiting(queue: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """From here on, any wait for a notice or read of a task fails the test; the
    process's notices."""
    broker = queue.broker if hasattr(queue, "broker") else queue.sync.broker
    notices = broker.result_notices()

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"waited or read the broker: {args}")

    for name in ("wait", "wait_async"):
        monkeypatch.setattr(notices, name, refused)
    for name in ("get", "wait_for_result", "wait_for_result_async"):
        monkeypatch.setattr(broker, name, refused)
    return notices


def test_a_repeated_key_of_an_ended_task_answers_without_waiting(
    queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its notice was sent before the second submit: result() has the outcome the
    submit answered, with no wait for a notice (that waited the whole safety poll)
    and no further round trip."""
    with connect(queue_url) as queue:
        first = queue.submit("fixture.echo", {"k": 1}, idempotency_key="order-18")
        assert first.result(timeout=60)["echo"] == {"k": 1}
        again = queue.submit("fixture.echo", {"k": 1}, idempotency_key="order-18")
        assert again.id == first.id
        assert again.info is not None and again.info.done
        with monkeypatch.context() as patched:
            notices = _no_more_waiting(queue, patched)
            assert again.result()["echo"] == {"k": 1}
            assert not notices.watching(again.id)
        broken = queue.submit("fixture.broken", {"declared": True}, idempotency_key="order-19")
        with pytest.raises(TaskFailed):
            broken.result(timeout=60)
        repeated = queue.submit("fixture.broken", {"declared": True}, idempotency_key="order-19")
        with monkeypatch.context() as patched:
            _no_more_waiting(queue, patched)
            with pytest.raises(TaskFailed) as caught:
                repeated.result()
        assert caught.value.code == "BAD_REQUEST"

    async def scenario() -> None:
        async with await connect_async(queue_url) as queue:
            again = await queue.submit("fixture.echo", {"k": 1}, idempotency_key="order-18")
            assert again.id == first.id
            with monkeypatch.context() as patched:
                notices = _no_more_waiting(queue, patched)
                assert (await again.result())["echo"] == {"k": 1}
                assert not notices.watching(again.id)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"priority": "high"},
            "the priority of fixture.echo must be an integer from -100 to 100, not 'high'",
        ),
        ({"priority": 101}, "must be an integer from -100 to 100, not 101"),
        ({"priority": True}, "must be an integer from -100 to 100, not True"),
        (
            {"max_attempts": 0},
            "max_attempts of fixture.echo must be a whole number from 1 to 100, not 0",
        ),
        ({"max_attempts": 2.5}, "must be a whole number from 1 to 100, not 2.5"),
        # SQLite raised OverflowError; a manifest allows no more than 100
        ({"max_attempts": 10**30}, "must be a whole number from 1 to 100, not 1000000"),
        ({"max_attempts": 101}, "must be a whole number from 1 to 100, not 101"),
        (
            {"timeout_s": 0},
            "timeout_s of fixture.echo must be a number of seconds above 0, or None, not 0",
        ),
        ({"timeout_s": math.nan}, "must be a number of seconds above 0, or None, not nan"),
        (
            {"idempotency_key": "two words"},
            "visible ASCII characters without spaces (got 9 characters)",
        ),
        ({"idempotency_key": "k" * 201}, "without spaces (got 201 characters)"),
        # a whole match: the server's pattern ends in $, which lets a final line break by
        ({"idempotency_key": "order-17\n"}, "without spaces (got 9 characters)"),
    ],
)
def test_options_the_http_api_would_refuse_are_refused_before_queueing(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    """Straight to the broker, nothing else checks them: a string priority sorted as text
    in SQLite, max_attempts=0 made a task that went dead unrun."""
    with connect(f"sqlite:///{tmp_path / 'queue.db'}") as queue:
        with pytest.raises(InvalidTask, match=re.escape(message)):
            queue.submit("fixture.echo", {"k": 1}, **options)
        with pytest.raises(InvalidTask, match=re.escape(message)):
            queue.submit_many([TaskRequest("fixture.echo", {"k": 2}, **options)])
        assert not queue.broker.stats().pending  # nothing was queued


@pytest.mark.parametrize("meta", [{"at": object()}, {"score": math.nan}, 5])
def test_a_meta_json_cannot_hold_is_refused_before_queueing(tmp_path: Path, meta: Any) -> None:
    """A meta that is not JSON raised the encoder's TypeError from inside the broker."""
    with connect(f"sqlite:///{tmp_path / 'queue.db'}") as queue:
        with pytest.raises(
            InvalidTask, match=re.escape("the meta of a fixture.echo task must be a mapping")
        ):
            queue.submit_many([TaskRequest("fixture.echo", {"k": 1}, meta=meta)])
        assert not queue.broker.stats().pending  # nothing was queued


def test_the_asyncio_producer(queue_url: str) -> None:
    async def scenario() -> None:
        async with await connect_async(queue_url) as queue:
            tasks = await queue.submit_many([("fixture.echo", {"i": i}) for i in range(5)])
            results = await asyncio.gather(*(t.result(timeout=60) for t in tasks))
            assert [r["echo"]["i"] for r in results] == list(range(5))
            one = await queue.submit("fixture.broken", {"declared": True})
            with pytest.raises(TaskFailed) as caught:
                await one.result(timeout=60)
            assert caught.value.code == "BAD_REQUEST"
            info = await queue.task(tasks[0].id).status()
            assert info.status == "succeeded"

    asyncio.run(scenario())


def test_a_bad_url_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="unknown scheme 'http'"):
        connect("http://127.0.0.1:8080")


def test_a_memory_queue_is_refused() -> None:
    """No worker can reach a queue inside this process: result() would wait forever."""
    from crank.errors import UsageError

    for url in ("memory://", "MEMORY://?result_ttl_s=5"):
        with pytest.raises(UsageError) as caught:
            connect(url)
        assert caught.value.message == (
            f"broker URL {url!r} cannot be used: a memory:// queue lives in this process "
            "only: no worker could run its tasks"
        )
        assert caught.value.hint is not None and "crank run --broker" in caught.value.hint
        with pytest.raises(UsageError, match="no worker could run its tasks"):
            asyncio.run(connect_async(url))


def test_an_unknown_keyword_option_is_a_usage_error(tmp_path: Path, redis_server: str) -> None:
    """As an unknown query parameter is: not the backend's TypeError naming its __init__."""
    from crank.errors import UsageError

    sqlite = f"sqlite:///{tmp_path / 'queue.db'}"
    for url, known in [
        (sqlite, "busy_timeout_ms, result_ttl_s, retry_base_s, retry_max_s"),
        (redis_server, "prefix, result_ttl_s, retry_base_s, retry_max_s, socket_timeout_s"),
    ]:
        with pytest.raises(UsageError) as caught:
            connect(url, bogus=1)
        assert caught.value.message == f"broker {url}: unknown option 'bogus' (known: {known})"
        assert caught.value.hint is not None and "spelling" in caught.value.hint
        with pytest.raises(UsageError, match="unknown option 'bogus'"):
            asyncio.run(connect_async(url, bogus=1))
    assert not (tmp_path / "queue.db").exists()  # refused before anything was opened
    with pytest.raises(UsageError, match="unknown option 'prefix'"):
        connect(sqlite, prefix="jobs")
    with pytest.raises(UsageError, match="option prefix is for Redis brokers only"):
        connect(f"{sqlite}?prefix=jobs")
    with connect(redis_server, prefix="jobs", result_ttl_s=60) as queue:
        assert (queue.broker.prefix, queue.broker.options.result_ttl_s) == ("jobs", 60.0)


def test_result_is_woken_by_the_notice(queue_url: str) -> None:
    """The wait ends on the broker's notice (no reading the task over and over), and the
    process stops watching the task once it has the result."""
    with connect(queue_url) as queue:
        notices = queue.broker.result_notices()
        assert notices is not None
        before = notices.delivered
        slow = queue.submit("fixture.sleep", {"seconds": 0.5})
        assert notices.watching(slow.id)
        assert slow.result(timeout=60) == {"slept": 0.5}
        assert notices.delivered == before + 1
        assert not notices.watching(slow.id)
        # a second result() of the same handle, and a handle from the id alone, read it
        assert slow.result(timeout=5) == {"slept": 0.5}
        assert queue.task(slow.id).result(timeout=5) == {"slept": 0.5}
        # a task not watched leaves nothing behind here, and its result is still there
        quiet = queue.submit("fixture.echo", {"q": 1}, watch=False)
        assert not notices.watching(quiet.id)
        assert quiet.result(timeout=60)["echo"] == {"q": 1}
        assert len(notices) == 0


def test_the_asyncio_wait_is_woken_by_the_notice(queue_url: str) -> None:
    async def scenario() -> None:
        async with await connect_async(queue_url) as queue:
            notices = queue.sync.broker.result_notices()
            assert notices is not None
            before = notices.delivered
            tasks = await queue.submit_many([("fixture.sleep", {"seconds": 0.2})] * 3)
            results = await asyncio.gather(*(t.result(timeout=60) for t in tasks))
            assert results == [{"slept": 0.2}] * 3
            assert notices.delivered == before + 3
            assert len(notices) == 0

    asyncio.run(scenario())


def test_cancel_a_running_and_a_waiting_task(queue_url: str, tmp_path: Path) -> None:
    started, stopped, marks = tmp_path / "started", tmp_path / "stopped", tmp_path / "marks"
    with connect(queue_url) as queue:
        running = queue.submit(
            "fixture.until_cancelled", {"started": str(started), "stopped": str(stopped)}
        )
        deadline = time.monotonic() + 60
        while not started.exists():  # the one worker process is busy with it
            assert time.monotonic() < deadline
            time.sleep(0.01)
        waiting = queue.submit("fixture.mark", {"path": str(marks)})
        info = waiting.cancel()
        assert (info.status, info.done) == ("cancelled", True)
        stopping = running.cancel()
        assert (stopping.status, stopping.done) == ("running", False)
        assert stopping.cancel_requested_at is not None
        with pytest.raises(TaskFailed) as ended:
            running.result(timeout=60)
        assert (ended.value.code, ended.value.task_status) == ("CANCELLED", "cancelled")
        assert stopped.read_text() == running.id
        after = queue.submit("fixture.mark", {"path": str(marks)})
        after.result(timeout=60)
        assert marks.read_text().split() == [after.id]  # the cancelled one never ran
        with pytest.raises(ApiError) as too_late:
            waiting.cancel()
        assert (too_late.value.status, too_late.value.code) == (409, "TASK_FINISHED")
        with pytest.raises(TaskNotFound):
            queue.task("no-such-task").cancel()


def test_cancel_from_asyncio(queue_url: str) -> None:
    async def scenario() -> None:
        async with await connect_async(queue_url) as queue:
            task = await queue.submit("fixture.echo", {"n": 1})
            await task.result(timeout=60)
            with pytest.raises(ApiError) as too_late:
                await task.cancel()
            assert too_late.value.code == "TASK_FINISHED"

    asyncio.run(scenario())


def _unavailable(exc: BaseException) -> BrokerUnavailable:
    """``exc`` is the client's error and the broker's at once, and keeps no password."""
    assert isinstance(exc, BrokerUnavailable)
    assert isinstance(exc, ClientError) and isinstance(exc, BrokerError)
    assert exc.exit_code == BrokerError.exit_code
    assert exc.hint
    assert "s3cret" not in str(exc)
    return exc


def test_a_broker_that_cannot_be_reached_is_a_client_error(tmp_path: Path) -> None:
    gone = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(ClientError) as caught:
        connect(gone)
    error = _unavailable(caught.value)
    assert f"127.0.0.1:{gone.rsplit(':', 1)[1].split('/')[0]}" in error.message
    # a SQLite path that is a folder can never be the queue's file: a usage error, as for
    # any URL the client cannot use (BrokerUnavailable says a retry may succeed)
    with pytest.raises(UsageError) as usage:
        connect(f"sqlite:///{tmp_path}")
    assert not isinstance(usage.value, ClientError)
    assert usage.value.message.startswith(f"cannot open the SQLite queue {tmp_path}:")

    async def scenario() -> None:
        with pytest.raises(ClientError) as caught:
            await connect_async(gone)
        _unavailable(caught.value)

    asyncio.run(scenario())


def _every_call(queue: Any, task: Any) -> list[Callable[[], Any]]:
    """The calls of a producer (``BrokerClient`` or ``AsyncBrokerClient``) on ``task``."""
    return [
        lambda: queue.submit("demo.echo", {"text": "x"}),
        task.status,
        lambda: task.result(timeout=5),
        task.cancel,
    ]


def test_a_broker_lost_after_connect_is_a_client_error(
    redis_server_aof: RedisServer,
) -> None:
    url = redis_server_aof.url
    with connect(f"{url}?retry_base_s=0.01&retry_max_s=0.05") as queue:
        task = queue.submit("demo.echo", {"text": "queued before Redis went away"})
        assert task.status().status == "pending"
        redis_server_aof.stop(kill=True)
        for call in _every_call(queue, task):
            with pytest.raises(ClientError) as caught:
                call()
            _unavailable(caught.value)

    redis_server_aof.start()

    async def scenario() -> None:
        async with await connect_async(f"{url}?retry_base_s=0.01&retry_max_s=0.05") as queue:
            task = await queue.submit("demo.echo", {"text": "queued"})
            redis_server_aof.stop(kill=True)
            for call in _every_call(queue, task):
                with pytest.raises(ClientError) as caught:
                    await call()
                _unavailable(caught.value)

    asyncio.run(scenario())


def _crank_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("crank-")}


def _no_threads_but(before: set[threading.Thread]) -> None:
    """Wait until crank's threads are among ``before`` (a closed broker's end soon)."""
    deadline = time.monotonic() + 30
    while not _crank_threads() <= before:
        assert time.monotonic() < deadline, _crank_threads() - before
        time.sleep(0.01)


def test_a_closed_client_says_so_on_every_backend(queue_url: str) -> None:
    """A closed SQLite broker raised BrokerUnavailable with a hint about a full disk; a
    closed Redis one connected again, leaving two sockets and a subscription thread."""
    before = _crank_threads()
    queue = connect(queue_url)
    task = queue.submit("fixture.echo", {"n": 1})
    assert task.result(timeout=60)["echo"] == {"n": 1}
    queue.close()
    queue.close()  # harmless
    calls: list[Callable[[], Any]] = [
        *_every_call(queue, task),
        lambda: queue.submit_many([("fixture.echo", {})]),
        lambda: queue.task(task.id),
        queue.__enter__,
    ]
    for call in calls:
        with pytest.raises(ClientClosed) as caught:
            call()
        assert isinstance(caught.value, ClientError)
        assert caught.value.message == (
            f"BrokerClient of {queue_url} is closed: open a new client to go on"
        )
        assert caught.value.hint is not None and "connect(url)" in caught.value.hint
    _no_threads_but(before)  # nothing was opened again

    async def scenario() -> None:
        async with await connect_async(queue_url) as queue:
            task = await queue.submit("fixture.echo", {"n": 2})
        await queue.aclose()  # harmless
        for call in [*_every_call(queue, task), lambda: queue.task(task.id), queue.__aenter__]:
            with pytest.raises(
                ClientClosed, match=f"^AsyncBrokerClient of {re.escape(queue_url)} "
            ):
                await call()

    asyncio.run(scenario())
    _no_threads_but(before)


#: a producer that connects, waits for a task, forks; the child submits and waits for
#: one of its own, then closes; the parent waits for another. Prints what each saw.
_FORKED_PRODUCER = """
import json, os, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with the listener's thread
from crank import connect

queue = connect(sys.argv[1])
notices = queue.broker.result_notices()
queue.submit("fixture.echo", {"who": "parent"}).result(timeout=60)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    try:
        own = queue.broker.result_notices()
        before = own.delivered
        echo = queue.submit("fixture.echo", {"who": "child"}).result(timeout=60)["echo"]
        seen = {"echo": echo, "told": own.delivered - before, "inherited": own is notices}
        queue.close()
    except BaseException as exc:
        seen = {"error": repr(exc)}
    os.write(write_end, json.dumps(seen).encode())
    os._exit(0)
os.close(write_end)
with os.fdopen(read_end) as pipe:
    child = json.loads(pipe.read())
os.waitpid(pid, 0)
before = notices.delivered
echo = queue.submit("fixture.echo", {"who": "parent"}).result(timeout=60)["echo"]
print(json.dumps({"child": child, "parent": {"echo": echo, "told": notices.delivered - before}}))
queue.close()
"""


def test_a_forked_child_is_told_of_its_own_tasks(queue_url: str) -> None:
    """A child kept its parent's listener: the notices of its tasks went to the parent,
    which dropped them, and each result came by the once-a-second read. The child now
    listens on its own, and leaves the parent's listener alone (closing the inherited
    Redis subscription shut the parent's socket down)."""
    seen = _run_producer(_FORKED_PRODUCER, queue_url)
    assert seen["child"] == {"echo": {"who": "child"}, "told": 1, "inherited": False}
    assert seen["parent"] == {"echo": {"who": "parent"}, "told": 1}


#: a producer forks while one of its threads is inside a broker call (holding the
#: broker's locks: on SQLite also the writers' turn); the child checks the turn and submits.
_FORK_MID_CALL = """
import contextlib, fcntl, json, os, select, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with other threads running
from crank import connect

queue = connect(sys.argv[1])
broker = queue.broker
sqlite = sys.argv[1].startswith("sqlite")
queue.submit("fixture.echo", {"who": "parent"}).result(timeout=60)
held, release = threading.Event(), threading.Event()

def inside_a_call():
    with contextlib.ExitStack() as stack:
        if sqlite:
            stack.enter_context(broker._writers)
            stack.enter_context(broker._lock)
            fcntl.flock(broker._turn, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, broker._turn, fcntl.LOCK_UN)
        else:  # a command on its way: the hot connection taken, the pool's lock held
            stack.enter_context(broker._hot._lock)
            stack.enter_context(broker._pool._lock)
        held.set()
        release.wait()

thread = threading.Thread(target=inside_a_call)
thread.start()
held.wait()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    try:
        turn = None
        if sqlite:
            try:  # the parent's thread holds the turn: the child must not have it too
                fcntl.flock(broker._turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
                turn = "taken too"
            except BlockingIOError:
                turn = "waits"
        os.write(write_end, json.dumps({"turn": turn}).encode() + b"\\n")
        echo = queue.submit("fixture.echo", {"who": "child"}).result(timeout=60)["echo"]
        seen = {"echo": echo}
        queue.close()
    except BaseException as exc:
        seen = {"error": repr(exc)}
    os.write(write_end, json.dumps(seen).encode() + b"\\n")
    os._exit(0)
os.close(write_end)
pipe = os.fdopen(read_end)
first = json.loads(pipe.readline())
release.set()  # the parent's call ends (on SQLite the turn is free for the child then)
thread.join()
ready, _, _ = select.select([pipe], [], [], 90)
second = json.loads(pipe.readline()) if ready else {"error": "the child hangs"}
if not ready:
    os.kill(pid, 9)
os.waitpid(pid, 0)
print(json.dumps({**first, **second}))
queue.close()
"""


def test_a_child_forked_in_the_middle_of_a_call_has_a_broker_of_its_own(queue_url: str) -> None:
    """The child kept its parent's locks (held for ever by a thread that does not exist
    in the child: its first call hung); on SQLite also its connection (SQLite: never
    carried across a fork) and its writers' turn (an flock the two shared: the child took
    the turn while the parent held it)."""
    turn = "waits" if queue_url.startswith("sqlite") else None
    assert _run_producer(_FORK_MID_CALL, queue_url) == {"turn": turn, "echo": {"who": "child"}}


def _run_producer(script: str, queue_url: str) -> Any:
    """Run a producer script (in a process of its own: it forks); what it printed."""
    out = subprocess.run(
        [sys.executable, "-c", script, queue_url],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
