"""Opening a broker by URL: schemes, options and the errors users see."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crank.errors import BrokerError, UsageError
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.memory import MemoryBroker
from crank.runtime.brokers.redis import RedisBroker
from crank.runtime.brokers.sqlite import SqliteBroker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        ("memory://?retry_base_s=fast", "option retry_base_s='fast' is not a number"),
        ("memory://?colour=blue", "unknown option 'colour'"),
    ],
)
def test_bad_urls_are_usage_errors_with_a_hint(url: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        open_broker(url)
    assert info.value.message.startswith(f"broker URL {url!r} cannot be used: {why}")
    assert info.value.hint is not None
    assert "sqlite:///" in info.value.hint


def test_unreachable_redis_is_a_broker_error_with_a_hint() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BrokerError) as info:
        open_broker(url)
    assert info.value.message.startswith(f"Redis broker {url}: cannot connect")
    assert info.value.hint is not None
    assert "redis-server" in info.value.hint


def test_unusable_sqlite_file_is_a_broker_error(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not a database " * 100)
    with pytest.raises(BrokerError) as info:
        open_broker(f"sqlite:///{bad}")
    assert str(bad) in info.value.message
    assert info.value.hint is not None
