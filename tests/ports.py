"""Loopback ports for the servers the tests start (redis-server, ``crank run``, uvicorn).

``bind(("127.0.0.1", 0))`` hands out a port from the kernel's ephemeral range, the
range the local port of every outgoing connection comes from too: between a test
closing that socket and its server binding the port, any connection opened on the
machine (another test's client, a worker's Redis connection) may take it, and the
server fails to start. Ports below that range are never given to outgoing
connections, so only another listener can hold one, and :func:`free_port` checks that
none does. Each pytest-xdist worker draws from its own slice of them, so two workers
never hand out the same port, and a process never hands out one port twice.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

#: the lowest port handed out (below it: ports services commonly listen on).
LOWEST = 10_000
#: where the ephemeral range starts when the kernel does not say (Linux's default;
#: macOS's starts at 49152, higher still).
EPHEMERAL_START = 32_768
_handed: set[int] = set()


def ephemeral_start() -> int:
    """The first port the kernel may give an outgoing connection."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_START


def _slice() -> range:
    """This process's ports: its xdist worker's share of LOWEST..ephemeral start."""
    top = ephemeral_start()
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    span = (top - LOWEST) // workers
    low = LOWEST + (worker % workers) * span
    return range(low, low + span)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port no one listens on, outside the ephemeral range (module docstring)."""
    ports = _slice()
    if len(ports) < 100:  # a kernel whose ephemeral range starts low: no room below it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = random.choice(ports)
        if port not in _handed and _bindable(port):
            _handed.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1}")
