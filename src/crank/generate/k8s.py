"""Kubernetes manifests: Deployment, Service, KEDA ScaledObject and an HPA alternative."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crank.generate.render import TemplateRenderer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crank.generate.project import WorkerProject

#: Redis the cluster's workers share (the compose service name works in-cluster too).
REDIS_ADDRESS = "redis:6379"
#: The Redis broker's stream of a capability's tasks (``<prefix>:q:<capability>:<priority>``,
#: default priority 0) and the consumer group every worker joins.
STREAM_TEMPLATE = "crank:q:{capability}:0"
CONSUMER_GROUP = "crank"

K8S_FILES = (
    ("k8s/deployment.yaml", "k8s-deployment.yaml.j2"),
    ("k8s/service.yaml", "k8s-service.yaml.j2"),
    ("k8s/keda-scaledobject.yaml", "k8s-keda-scaledobject.yaml.j2"),
    ("k8s/hpa.yaml", "k8s-hpa.yaml.j2"),
)


def stream_names(project: WorkerProject) -> list[str]:
    return [STREAM_TEMPLATE.format(capability=cap) for cap in project.manifest.capability_ids]


def k8s_context(project: WorkerProject) -> Mapping[str, Any]:
    return {
        "redis_address": REDIS_ADDRESS,
        "k8s_broker_url": f"redis://{REDIS_ADDRESS}/0",
        "streams": stream_names(project),
        "consumer_group": CONSUMER_GROUP,
        "hpa_min_replicas": max(project.manifest.worker.scaling.min_workers, 1),
    }


K8S = TemplateRenderer(
    name="k8s",
    description="Kubernetes Deployment, Service, KEDA ScaledObject (stream lag) and HPA.",
    files=K8S_FILES,
    context_extra=k8s_context,
)
