"""The Python client of crank: call capabilities, queue tasks and wait for their results.

Over HTTP, to a ``crank run`` server (:class:`Client`, :class:`AsyncClient`)::

    from crank import Client

    with Client("http://127.0.0.1:8080", token="...") as client:
        client.call("demo.echo", {"text": "hi"})          # the output
        task = client.submit("demo.count", {"n": 3})      # queued
        for event in task.events():                       # live, resumed after a drop
            print(event.id, event.data)
        task.result(timeout=10)

Straight to the broker, for producers inside the deployment (:func:`connect`,
:func:`connect_async`)::

    from crank import connect

    with connect("redis://127.0.0.1:6379/0") as queue:
        tasks = queue.submit_many([("demo.echo", {"text": str(i)}) for i in range(100)])
        print([t.result(timeout=30) for t in tasks])

docs/client.md has the whole story: errors, retries, idempotency, deprecations.
"""

from __future__ import annotations

from crank.client.async_http import AsyncClient, AsyncTask
from crank.client.broker import (
    AsyncBrokerClient,
    AsyncBrokerTask,
    BrokerClient,
    BrokerTask,
    connect,
    connect_async,
)
from crank.client.errors import (
    ApiError,
    BrokerUnavailable,
    CancelNotSupported,
    CapabilityDeprecated,
    ClientClosed,
    ClientError,
    InvalidTask,
    ServerUnreachable,
    TaskFailed,
    TaskNotFound,
    TaskTimeout,
)
from crank.client.http import Client, Task
from crank.client.tasks import TaskEvent, TaskInfo, TaskList, TaskRequest
from crank.client.wire import RetryPolicy

__all__ = [
    "ApiError",
    "AsyncBrokerClient",
    "AsyncBrokerTask",
    "AsyncClient",
    "AsyncTask",
    "BrokerClient",
    "BrokerTask",
    "BrokerUnavailable",
    "CancelNotSupported",
    "CapabilityDeprecated",
    "Client",
    "ClientClosed",
    "ClientError",
    "InvalidTask",
    "RetryPolicy",
    "ServerUnreachable",
    "Task",
    "TaskEvent",
    "TaskFailed",
    "TaskInfo",
    "TaskList",
    "TaskNotFound",
    "TaskRequest",
    "TaskTimeout",
    "connect",
    "connect_async",
]
