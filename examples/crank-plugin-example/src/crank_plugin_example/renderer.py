"""The ``wait-for-services`` artifact: a script that waits for the declared HTTP
services, then runs the worker.

``sh deployment/wait-for-services.sh crank run`` polls every ``http(s)://`` check
of the manifest until it answers (``CRANK_WAIT_S`` seconds each, default 60): a
required service that never answers stops the start with status 1; an optional
one is reported and skipped. A worker without HTTP services gets no file, so
``crank check`` expects none.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crank.plugin import STAMP_SLOT, RenderedFile, stamped
from crank_plugin_example.services import declared_services

if TYPE_CHECKING:
    from crank.plugin import WorkerProject

PATH = "deployment/wait-for-services.sh"

SCRIPT = """\
#!/bin/sh
# {stamp}
# Waits for the HTTP services {worker} declares, then runs the command given:
#   sh {path} crank run
set -eu
wait_s=${{CRANK_WAIT_S:-60}}
probe='import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)'

wait_for() {{
    name=$1 url=$2 need=$3 waited=0
    until python3 -c "$probe" "$url" 2>/dev/null; do
        if [ "$waited" -ge "$wait_s" ]; then
            if [ "$need" = required ]; then
                echo "wait-for-services: $name ($url) did not answer in ${{wait_s}}s" >&2
                exit 1
            fi
            echo "wait-for-services: optional $name ($url) is not up; going on" >&2
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "wait-for-services: $name is up" >&2
}}

{waits}

exec "$@"
"""


@dataclass(frozen=True)
class WaitForServices:
    """Renders :data:`PATH` for a worker that declares HTTP services."""

    name: str = "wait-for-services"
    description: str = f"{PATH}: wait for the declared HTTP services, then start"

    def render(self, project: WorkerProject) -> tuple[RenderedFile, ...]:
        services = declared_services(project.manifest)
        if not services:
            return ()
        waits = "\n".join(
            f"wait_for {shlex.quote(dep.name)} {shlex.quote(dep.check.strip())} "
            f"{'optional' if dep.optional else 'required'}"
            for dep in services
        )
        text = SCRIPT.format(stamp=STAMP_SLOT, worker=project.manifest.name, path=PATH, waits=waits)
        return (RenderedFile(self.name, PATH, stamped(text, self.name, project)),)
