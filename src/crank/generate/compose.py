"""docker-compose.yml: the worker on Redis Streams, Redis health-checked first."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from crank.generate.context import REDIS_IMAGE, settings_of
from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject

_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
#: compose's byte units are powers of two, like Kubernetes' binary suffixes.
_COMPOSE_UNITS = {"Ki": "k", "Mi": "m", "Gi": "g", "Ti": "t"}
#: Kubernetes' decimal suffixes have no compose unit: they become a byte count.
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def compose_cpus(quantity: str) -> str:
    """Kubernetes CPU quantity ("500m", "2") as compose ``cpus`` ("0.5", "2")."""
    if quantity.endswith("m"):
        return f"{int(quantity[:-1]) / 1000:g}"
    return f"{float(quantity):g}"


def compose_memory(quantity: str) -> str:
    """Kubernetes memory quantity ("512Mi", "1G") as a compose byte value ("512m",
    "1000000000"): the same number of bytes."""
    match = _MEMORY.match(quantity)
    if match is None:  # the manifest schema only lets valid quantities through
        return quantity
    number, unit = match.groups()
    if unit in _DECIMAL:
        return str(int(number) * _DECIMAL[unit])
    return f"{number}{_COMPOSE_UNITS[unit]}" if unit else number


def compose_context(project: WorkerProject) -> Mapping[str, Any]:

    resources = project.manifest.worker.resources
    prefix = settings_of(project).broker_prefix
    return {
        "redis_image": REDIS_IMAGE.ref,
        "compose_broker_url": f"redis://redis:6379/0?prefix={prefix}",
        "compose_cpus": compose_cpus(resources.cpu),
        "compose_memory": compose_memory(resources.memory),
    }


COMPOSE = TemplateRenderer(
    name="compose",
    description="docker-compose.yml: worker + Redis (health-checked depends_on), init, "
    "stop grace from the capabilities' timeouts.",
    files=(("docker-compose.yml", "compose.yml.j2"),),
    context_extra=compose_context,
)
