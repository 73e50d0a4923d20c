"""Opening a broker by URL: schemes, options and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from crank.errors import BrokerError, UsageError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.memory import MemoryBroker
from crank.runtime.brokers.redis import RedisBroker
from crank.runtime.brokers.sqlite import SqliteBroker

from ...ports import free_port


def test_schemes_pick_their_backend(tmp_path: Path, redis_server: str) -> None:
    assert isinstance(open_broker("memory://"), MemoryBroker)
    sqlite = open_broker(f"sqlite:///{tmp_path}/q.db")
    assert isinstance(sqlite, SqliteBroker)
    assert sqlite.path == tmp_path / "q.db"
    sqlite.close()
    redis = open_broker(redis_server)
    assert isinstance(redis, RedisBroker)
    redis.close()


def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    broker = open_broker("sqlite:///data/queue.db")
    assert isinstance(broker, SqliteBroker)
    assert broker.path == Path("data/queue.db")
    assert (tmp_path / "data" / "queue.db").exists()
    broker.close()


def test_query_options_are_parsed_and_overridden() -> None:
    broker = open_broker("memory://?retry_base_s=0.25&result_ttl_s=9", result_ttl_s=3.0)
    assert isinstance(broker, MemoryBroker)
    assert broker.options.retry_base_s == 0.25
    assert broker.options.result_ttl_s == 3.0


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("queue.db", "it has no scheme"),
        ("amqp://localhost", "unknown scheme 'amqp'"),
        ("sqlite://", "a SQLite URL needs a file path after three slashes"),
        ("memory://?colour=blue", "unknown option 'colour'"),
    ],
)
def test_bad_urls_are_usage_errors_with_a_hint(url: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        open_broker(url)
    assert info.value.message.startswith(f"broker URL {url!r} cannot be used: {why}")
    assert info.value.hint is not None
    assert "sqlite:///" in info.value.hint


_ZERO_OR_MORE = "must be a number of seconds, 0 or more"
_ABOVE_ZERO = "must be a number of seconds above 0"


@pytest.mark.parametrize(
    ("query", "why", "must"),
    [
        ("retry_base_s=fast", "option retry_base_s='fast' is not a number", _ZERO_OR_MORE),
        ("retry_base_s=-1", "option retry_base_s='-1' is out of range", _ZERO_OR_MORE),
        ("retry_max_s=inf", "option retry_max_s='inf' is out of range", _ZERO_OR_MORE),
        ("result_ttl_s=-5", "option result_ttl_s='-5' is out of range", _ABOVE_ZERO),
        ("result_ttl_s=0", "option result_ttl_s='0' is out of range", _ABOVE_ZERO),
        ("result_ttl_s=nan", "option result_ttl_s='nan' is out of range", _ABOVE_ZERO),
    ],
)
def test_option_values_out_of_range_are_usage_errors(
    tmp_path: Path, query: str, why: str, must: str
) -> None:
    """A negative time to live would end every result as it was stored; NaN would make
    every comparison with it false. Each backend refuses them before it opens."""
    for base in ("memory://", f"sqlite:///{tmp_path}/q.db", "redis://127.0.0.1:1/0"):
        url = f"{base}?{query}"
        with pytest.raises(UsageError) as info:
            open_broker(url)
        assert info.value.message == f"broker URL {url!r} cannot be used: {why}"
        assert info.value.hint == f"{query.partition('=')[0]} {must}"
    assert not (tmp_path / "q.db").exists()


def test_options_given_as_arguments_are_checked_alike() -> None:
    with pytest.raises(UsageError) as info:
        open_broker("memory://", result_ttl_s=-1.0)
    assert "option result_ttl_s=-1.0 is out of range" in info.value.message
    broker = open_broker("memory://?retry_base_s=0", retry_max_s=0)
    assert isinstance(broker, MemoryBroker)
    assert (broker.options.retry_base_s, broker.options.retry_max_s) == (0.0, 0.0)


def test_unreachable_redis_is_a_broker_error_with_a_hint() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BrokerError) as info:
        open_broker(url)
    assert info.value.message.startswith(f"Redis broker {url}: cannot connect")
    assert info.value.hint is not None
    assert "redis-server" in info.value.hint


def test_a_sqlite_path_that_is_no_queue_is_a_usage_error(tmp_path: Path) -> None:
    # No retry opens a file that is not a database, or a folder: exit 2, not 3 (a broker
    # that may come back), and a worker process does not retry it for ever.
    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not a database " * 100)
    for path, why in ((bad, "file is not a database"), (tmp_path, "unable to open")):
        with pytest.raises(UsageError) as info:
            open_broker(f"sqlite:///{path}")
        assert info.value.message.startswith(f"cannot open the SQLite queue {path}: {why}")
        assert info.value.exit_code == 2
        assert info.value.hint is not None and "sqlite:///crank-queue.db" in info.value.hint
