"""One of the processes serving ``crank run``'s port (``--http-processes N``, N > 1).

Started by :class:`crank.runtime.http_processes.HttpProcesses` as
``python -m crank.runtime.http_process`` with its plan on stdin; not a command for
people. It serves the same app as a single-process ``crank run`` on the inherited
socket, with the pool read from the supervisor's file and its metrics counted in
the shared multiprocess directory. It stops gracefully on SIGTERM/SIGINT and when
its parent dies (``PARENT_GONE_SIGNAL``).
"""

from __future__ import annotations

import pickle
import socket
import sys
from typing import TYPE_CHECKING

from crank.errors import CrankError, ExitCode
from crank.routing import Router
from crank.runtime import run_dir
from crank.runtime.http.server import http_server
from crank.runtime.logs import configure_logging, get_logger
from crank.runtime.pool_snapshot import SharedPoolView
from crank.runtime.serve import open_runtime_broker, runtime_status
from crank.runtime.tracing import configure_tracing
from crank.runtime.usage import UsageStore
from crank.runtime.worker_reports import PARENT_GONE_SIGNAL

if TYPE_CHECKING:
    from crank.runtime.http_processes import HttpProcessPlan


def serve_http(plan: HttpProcessPlan) -> int:
    """Serve the inherited socket until told to stop; the exit code."""
    config = plan.config
    run_dir.hold()  # the run's directory (metrics, slots) stays while this process serves
    configure_logging(config.mode, context={"http_process": plan.index})
    configure_tracing()
    log = get_logger("crank.runtime")
    router = Router.from_manifests(plan.manifests)
    sock = socket.socket(fileno=plan.fd)
    broker = open_runtime_broker(config.broker_url)
    usage = UsageStore(config.usage_db)
    try:
        pool = SharedPoolView(plan.pool_file)
        status = runtime_status(config, broker, router, usage)
        status.pool = pool
        status.http = pool.http_processes
        server, services = http_server(
            config,
            broker,
            router,
            status,
            metrics_dir=plan.metrics_dir,
            slots_dir=plan.slots_dir,
            limits=plan.limits,
            shared=True,
            session_key=plan.session_key,
        )
        status.on_budget_level = None  # the supervisor's process announces a threshold once
        server.parent_gone_signal = PARENT_GONE_SIGNAL
        try:
            server.run(sockets=[sock])
        finally:
            services.gateway.io.close()
    finally:
        sock.close()
        usage.close()
        broker.close()
    log.info("http_process_stopped")
    return 0


def main() -> int:
    try:
        plan = pickle.load(sys.stdin.buffer)  # noqa: S301 - our parent's pipe, nobody else's
    except (EOFError, pickle.UnpicklingError):
        # started by hand, or the parent died before it wrote the plan
        print(
            "error: no plan on stdin: this process is started by crank run --http-processes",
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    try:
        return serve_http(plan)
    except CrankError as exc:
        get_logger("crank.runtime").error(
            "http_process_failed", error=exc.message, hint=exc.hint, http_process=plan.index
        )
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
