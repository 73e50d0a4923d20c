"""Kubernetes as a kustomize base and overlays, one overlay per way to run it.

* ``k8s/base``: Deployment (no ``replicas``: an autoscaler owns them), Service,
  PodDisruptionBudget, NetworkPolicy. Apply an overlay, never the base alone.
* ``k8s/overlays/keda``: the base scaled by KEDA on the Redis streams the
  broker queues the worker's tasks in: one trigger per capability and priority
  band, summed into one backlog (``scalingModifiers``).
* ``k8s/overlays/hpa``: the base scaled on CPU, for clusters without KEDA; not
  rendered for a worker that requires a GPU (CPU load says nothing about it).
* ``k8s/overlays/gpu``: the KEDA overlay on GPU nodes (toleration, node
  selector, runtime class, one GPU and one worker process per pod); rendered
  when the manifest's ``gpu`` is ``required`` (the image is then the CUDA one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crank.generate.context import image_tag, settings_of
from crank.generate.envfile import env_entries
from crank.generate.render import RenderedFile, TemplateRenderer
from crank.routing.queues import PRIORITY_BANDS, stream_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject

BASE_FILES = (
    ("k8s/base/kustomization.yaml", "k8s/base-kustomization.yaml.j2"),
    ("k8s/base/deployment.yaml", "k8s/deployment.yaml.j2"),
    ("k8s/base/service.yaml", "k8s/service.yaml.j2"),
    ("k8s/base/pdb.yaml", "k8s/pdb.yaml.j2"),
    ("k8s/base/networkpolicy.yaml", "k8s/networkpolicy.yaml.j2"),
)
KEDA_FILES = (
    ("k8s/overlays/keda/kustomization.yaml", "k8s/keda-kustomization.yaml.j2"),
    ("k8s/overlays/keda/scaledobject.yaml", "k8s/scaledobject.yaml.j2"),
    ("k8s/overlays/keda/triggerauthentication.yaml", "k8s/triggerauthentication.yaml.j2"),
)
HPA_FILES = (
    ("k8s/overlays/hpa/kustomization.yaml", "k8s/hpa-kustomization.yaml.j2"),
    ("k8s/overlays/hpa/hpa.yaml", "k8s/hpa.yaml.j2"),
)
GPU_FILES = (
    ("k8s/overlays/gpu/kustomization.yaml", "k8s/gpu-kustomization.yaml.j2"),
    ("k8s/overlays/gpu/gpu-nodes.yaml", "k8s/gpu-nodes.yaml.j2"),
)
#: Where NVIDIA's GPU operator puts GPU pods: its label, taint and runtime class.
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")
GPU_TOLERATION_KEY = "nvidia.com/gpu"
GPU_RUNTIME_CLASS = "nvidia"


@dataclass(frozen=True)
class Trigger:
    """One KEDA trigger: the stream of one capability's tasks in one priority band."""

    name: str
    capability: str
    band: int
    stream: str


def _identifier(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def keda_triggers(project: WorkerProject) -> list[Trigger]:
    """Every stream the Redis broker can queue the worker's tasks in, under the prefix
    the Deployment's broker URL uses (names from the broker itself)."""

    prefix = settings_of(project).broker_prefix
    triggers = []
    taken: set[str] = set()
    for cap in project.manifest.capability_ids:
        # KEDA refuses two triggers of one name: `a.b_c` and `a_b.c` get a_b_c and a_b_c_2
        base = _identifier(cap)
        n = 2
        while base in taken:
            base, n = f"{_identifier(cap)}_{n}", n + 1
        taken.add(base)
        for band in PRIORITY_BANDS:
            sign = "n" if band < 0 else "p"
            triggers.append(
                Trigger(
                    f"{base}_{sign}{abs(band)}",
                    cap,
                    band,
                    stream_key(prefix, cap, band),
                )
            )
    return triggers


def folded_sum(names: list[str], width: int = 90) -> list[str]:
    """``a + b + ...`` cut into lines for a YAML folded scalar (``>-`` joins them
    with spaces): every line but the last ends with ``+``."""
    lines: list[str] = []
    current = ""
    for name in names:
        candidate = f"{current} + {name}" if current else name
        if current and len(candidate) > width:
            lines.append(current + " +")
            current = name
        else:
            current = candidate
    return [*lines, current] if current else lines


#: The keys of the worker's Secret that crank's own variables read.
CRANK_SECRET_KEYS = frozenset({"api-token", "redis-password"})
#: The variables the Deployment sets itself (the manifest cannot set them a second time).
DEPLOYMENT_ENV = frozenset(
    {"CRANK_REDIS_PASSWORD", "CRANK_BROKER_URL", "CRANK_API_TOKEN", "CRANK_GRACE_S"}
)


def secret_key(env_name: str) -> str:
    """The key of the worker's Secret holding environment variable ``env_name``: its
    name in lower case with dashes, or ``worker.<that>`` where crank's own variables
    use that key (a worker's API_TOKEN must not be crank's bearer token)."""
    key = env_name.lower().replace("_", "-")
    return f"worker.{key}" if key in CRANK_SECRET_KEYS else key


def broker_url(project: WorkerProject) -> str:
    """CRANK_BROKER_URL of the Deployment; the password comes from an earlier env var."""

    s = settings_of(project)
    scheme = "rediss" if s.redis_tls else "redis"
    return (
        f"{scheme}://:$(CRANK_REDIS_PASSWORD)@{s.redis_address}/{s.redis_db}"
        f"?prefix={s.broker_prefix}"
    )


def image_entry(project: WorkerProject) -> dict[str, str]:
    """The base kustomization's ``images`` entry: registry from the settings, the
    worker's version as tag, and the digest when the settings know it."""

    s = settings_of(project)
    return {
        "name": project.manifest.name,
        "newName": f"{s.registry}/{project.manifest.name}",
        "newTag": image_tag(project.manifest.metadata.version),
        "digest": s.image_digest,
    }


def k8s_context(project: WorkerProject) -> Mapping[str, Any]:

    triggers = keda_triggers(project)
    worker_env = [
        e
        for e in env_entries(project)
        if e.name in _manifest_env_names(project) and e.name not in DEPLOYMENT_ENV
    ]
    return {
        "triggers": triggers,
        "backlog_formula": folded_sum([t.name for t in triggers]),
        "broker_url": broker_url(project),
        "image": image_entry(project),
        "secret_name": project.manifest.name,
        "worker_env": [
            {
                "name": e.name,
                # Kubernetes expands $(VAR) in a value and reads $$ as $: the default as written
                "value": e.value.replace("$", "$$"),
                "secret": e.secret,
                "key": secret_key(e.name),
            }
            for e in worker_env
        ],
        "hpa_min_replicas": max(project.manifest.worker.scaling.min_workers, 1),
        "fallback_replicas": max(project.manifest.worker.scaling.min_workers, 1),
        "gpu_node_selector": GPU_NODE_SELECTOR,
        "gpu_toleration_key": GPU_TOLERATION_KEY,
        "gpu_runtime_class": GPU_RUNTIME_CLASS,
    }


def _manifest_env_names(project: WorkerProject) -> set[str]:
    return {var.name for var in project.manifest.worker.env}


def k8s_files(project: WorkerProject) -> tuple[tuple[str, str], ...]:
    gpu = project.manifest.worker.resources.gpu
    files = [*BASE_FILES, *KEDA_FILES]
    if gpu != "required":
        files += HPA_FILES
    if gpu == "required":
        # an `optional` worker's image is a CPU build (python-slim, the CPU wheels of
        # its lock): a GPU given to its pods would sit unused
        files += GPU_FILES
    return tuple(files)


@dataclass(frozen=True)
class KubernetesRenderer:
    """The kustomize tree; which overlays exist depends on the manifest's GPU need."""

    name: str = "k8s"
    description: str = (
        "Kubernetes kustomize base (Deployment, Service, PDB, NetworkPolicy) with overlays "
        "for KEDA (every priority stream), HPA and GPU nodes."
    )

    def render(self, project: WorkerProject) -> tuple[RenderedFile, ...]:
        return TemplateRenderer(
            self.name, self.description, k8s_files(project), context_extra=k8s_context
        ).render(project)


K8S = KubernetesRenderer()
