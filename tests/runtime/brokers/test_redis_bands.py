"""Priority bands of the Redis broker: the streams a capability's tasks can sit in.

An autoscaler watches a fixed set of streams, so the broker groups priorities
into at most 15 bands; ``priority_band``/``stream_key`` (Python) and
``submit.lua`` must agree on every priority a client can send.
"""

from __future__ import annotations

import pytest

from crank.routing.queues import stream_key
from crank.runtime.brokers import open_broker
from crank.runtime.brokers.contract import PRIORITY_BANDS, ClaimOptions, TaskSpec, priority_band

PRIORITIES = [*range(-130, 131), -1000, 1000, 2**40, -(2**40)]


@pytest.mark.parametrize(
    ("priority", "band"),
    [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (63, 6), (64, 7), (100, 7),
     (10_000, 7), (-1, -1), (-5, -3), (-100, -7)],
)  # fmt: skip
def test_band_is_the_bit_length_of_the_magnitude_capped_at_seven(priority: int, band: int) -> None:
    assert priority_band(priority) == band


def test_every_band_is_listed_highest_first() -> None:
    assert PRIORITY_BANDS == (7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7)
    assert {priority_band(p) for p in PRIORITIES} == set(PRIORITY_BANDS)


def test_the_broker_writes_the_streams_python_names(redis_server: str) -> None:
    import redis

    broker = open_broker(f"{redis_server}?prefix=bands")
    records = broker.submit_many([TaskSpec("demo.echo", {"p": p}, priority=p) for p in PRIORITIES])
    admin = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        for record in records:
            want = stream_key("bands", "demo.echo", priority_band(record.priority))
            assert admin.hget(f"bands:t:{record.id}", "stream") == want
        assert set(admin.zrange("bands:streams", 0, -1)) == {
            stream_key("bands", "demo.echo", band) for band in PRIORITY_BANDS
        }
        assert sum(admin.xlen(stream_key("bands", "demo.echo", b)) for b in PRIORITY_BANDS) == len(
            PRIORITIES
        )
    finally:
        admin.close()
        broker.close()


def test_higher_band_first_oldest_first_within_a_band(redis_server: str) -> None:
    broker = open_broker(redis_server)
    for n, priority in enumerate([5, 0, 6, 40, -3, 4]):
        broker.submit(TaskSpec("demo.echo", {"n": n}, priority=priority))
    order = []
    while claims := broker.claim(ClaimOptions("w1", limit=1)):
        order += [c.task.payload["n"] for c in claims]
    broker.close()
    # 40 (band 6), then 5, 6, 4 (band 3, as submitted), then 0, then -3
    assert order == [3, 0, 2, 5, 1, 4]
