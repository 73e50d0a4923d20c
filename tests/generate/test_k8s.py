"""What the Kubernetes overlays mean once kustomize has built them: autoscaling that
owns the replicas, secrets, disruption budget, probes and shutdown timing derived from
the capabilities, GPU scheduling, and a ScaledObject that watches every stream the
Redis broker really writes a capability's tasks to."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner

from crank.cli import cli
from crank.generate.check import check_project
from crank.generate.project import load_project

from .conftest import tool

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


def kustomize(overlay: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return {d["kind"]: d for d in yaml.safe_load_all(out) if d}


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (worker,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return worker


def env_of(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


def set_in_manifest(project: Path, old: str, new: str) -> None:
    manifest = project / "src" / "text_echo" / "crank.yaml"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new))


def fix(project: Path) -> None:
    result = CliRunner().invoke(cli, ["check", str(project), "--fix"])
    assert result.exit_code == 0, result.output


def test_each_overlay_has_one_autoscaler_and_no_fixed_replicas(pristine_worker: Path) -> None:
    keda = kustomize(pristine_worker / "k8s" / "overlays" / "keda")
    hpa = kustomize(pristine_worker / "k8s" / "overlays" / "hpa")
    assert "ScaledObject" in keda and "HorizontalPodAutoscaler" not in keda
    assert "HorizontalPodAutoscaler" in hpa and "ScaledObject" not in hpa
    for docs in (keda, hpa):
        assert "replicas" not in docs["Deployment"]["spec"]
    # the flat k8s/ folder holds no manifests: `kubectl apply -f k8s/` creates nothing
    assert not [p for p in (pristine_worker / "k8s").iterdir() if p.is_file()]


def test_the_pod_is_hardened_probed_and_reads_its_secrets(pristine_worker: Path) -> None:
    docs = kustomize(pristine_worker / "k8s" / "overlays" / "keda")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    worker = container(docs)
    assert pod["automountServiceAccountToken"] is False
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert worker["image"] == "localhost:5000/text-echo:0.1.0"
    assert worker["startupProbe"]["httpGet"]["path"] == "/health"
    # /ready makes a broker round trip (up to the Redis socket timeout, 5 s)
    assert worker["readinessProbe"]["timeoutSeconds"] >= 10
    env = env_of(docs)
    assert env["CRANK_API_TOKEN"] == {"secretKeyRef": {"name": "text-echo", "key": "api-token"}}
    assert env["CRANK_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "text-echo", "key": "redis-password"}
    }
    assert env["CRANK_BROKER_URL"] == (
        "redis://:$(CRANK_REDIS_PASSWORD)@redis.default.svc.cluster.local:6379/0?prefix=crank"
    )
    names = [e["name"] for e in worker["env"]]
    assert names.index("CRANK_REDIS_PASSWORD") < names.index("CRANK_BROKER_URL")
    assert docs["PodDisruptionBudget"]["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "text-echo"}},
    }
    policy = docs["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": "http"}]
    auth = docs["TriggerAuthentication"]["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": "text-echo", "key": "redis-password"}]


def test_shutdown_timing_follows_the_longest_capability_timeout(worker_project: Path) -> None:
    set_in_manifest(worker_project, "timeout_s: 10", "timeout_s: 60")
    fix(worker_project)
    docs = kustomize(worker_project / "k8s" / "overlays" / "keda")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert env_of(docs)["CRANK_GRACE_S"] == "60"
    # preStop 5 s, then `crank run`: requests (60 s), processes (60 s + 2 s), slack 3 s
    assert container(docs)["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["terminationGracePeriodSeconds"] == 5 + 2 * 60 + 2 + 3
    compose = yaml.safe_load((worker_project / "docker-compose.yml").read_text())
    service = compose["services"]["worker"]
    assert service["environment"]["CRANK_GRACE_S"] == "60"
    assert service["stop_grace_period"] == "125s"
    assert service["init"] is True
    assert "CRANK_GRACE_S=60\n" in (worker_project / "Dockerfile").read_text()
    assert "\nCRANK_GRACE_S=60\n" in (worker_project / ".env.example").read_text()


def test_a_short_timeout_keeps_crank_default_grace(pristine_worker: Path) -> None:
    docs = kustomize(pristine_worker / "k8s" / "overlays" / "keda")
    assert env_of(docs)["CRANK_GRACE_S"] == "10"
    assert docs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_a_gpu_worker_runs_on_gpu_nodes_one_process_per_gpu(gpu_worker: Path) -> None:
    assert not (gpu_worker / "k8s" / "overlays" / "hpa").exists()  # CPU load means nothing
    docs = kustomize(gpu_worker / "k8s" / "overlays" / "gpu")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    worker = container(docs)
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["limits"]["memory"] == "4Gi"  # the base's limits are kept
    assert worker["args"][-2:] == ["--max-workers", "1"]
    assert "ScaledObject" in docs


def test_an_optional_gpu_worker_gets_cpu_artifacts_and_no_gpu_overlay(
    worker_project: Path,
) -> None:
    # its image is python-slim with the CPU wheels of its lock: pods given a GPU
    # would hold it unused. A project rendered with the GPU required (or by templates
    # before 2.2, which gave an optional worker the overlay) loses the overlay on --fix
    set_in_manifest(worker_project, "gpu: none", "gpu: required")
    fix(worker_project)
    assert (worker_project / "k8s" / "overlays" / "gpu").is_dir()
    set_in_manifest(worker_project, "gpu: required", "gpu: optional")
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 1
    assert "k8s/overlays/gpu/gpu-nodes.yaml was generated by crank (k8s) but is no longer" in (
        result.output
    )
    fix(worker_project)
    assert [p.name for p in sorted((worker_project / "k8s" / "overlays").iterdir())] == [
        "hpa",
        "keda",
    ]
    keda = kustomize(worker_project / "k8s" / "overlays" / "keda")
    assert "nvidia.com/gpu" not in container(keda)["resources"]["limits"]
    assert "runtimeClassName" not in keda["Deployment"]["spec"]["template"]["spec"]
    dockerfile = (worker_project / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:" in dockerfile
    assert "nvidia" not in dockerfile


def test_registry_and_digest_come_from_the_deploy_settings(worker_project: Path) -> None:
    pyproject = worker_project / "pyproject.toml"
    digest = "sha256:" + "ab" * 32
    pyproject.write_text(
        pyproject.read_text().replace(
            'registry = "localhost:5000"', f'registry = "ghcr.io/acme"\nimage_digest = "{digest}"'
        )
    )
    fix(worker_project)
    docs = kustomize(worker_project / "k8s" / "overlays" / "keda")
    # pinned by digest with the tag beside it
    assert container(docs)["image"] == f"ghcr.io/acme/text-echo:0.1.0@{digest}"


def test_a_bad_deploy_setting_is_a_clear_error(worker_project: Path) -> None:
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("redis_port = 6379", "redis_port = 0"))
    result = CliRunner().invoke(cli, ["check", str(worker_project)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {pyproject}: [tool.crank.deploy] redis_port = 0 is not valid\n"
        "  hint: redis_port takes a port number from 1 to 65535\n"
    )


def test_the_scaled_object_watches_every_stream_the_broker_writes(
    worker_project: Path, redis_url: str
) -> None:
    """Tasks of one capability submitted at two priorities through crank's Redis broker,
    under the prefix the settings give: every stream they land in is a trigger."""
    import redis

    from crank.runtime.brokers import open_broker
    from crank.runtime.brokers.contract import TaskSpec

    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('broker_prefix = "crank"', 'broker_prefix = "acme"')
    )
    fix(worker_project)
    docs = kustomize(worker_project / "k8s" / "overlays" / "keda")
    spec = docs["ScaledObject"]["spec"]
    watched = {t["metadata"]["stream"] for t in spec["triggers"]}
    assert env_of(docs)["CRANK_BROKER_URL"].endswith("?prefix=acme")

    broker = open_broker(f"{redis_url}?prefix=acme")
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        broker.submit_many(
            [TaskSpec("text_echo.echo", {"text": "a"}, priority=p) for p in (0, 0, 50, 50, 50)]
        )
        written = set(admin.zrange("acme:streams", 0, -1))
        assert len(written) == 2  # two priorities, two streams
        assert written <= watched
        # the metric each trigger reads (XLEN) sums to every task queued
        assert sum(admin.xlen(t["metadata"]["stream"]) for t in spec["triggers"]) == 5
    finally:
        admin.close()
        broker.close()
    # the formula sums every trigger; each trigger is read the way the broker's
    # docstring recommends (stream length: backlog plus in flight)
    names = [t["name"] for t in spec["triggers"]]
    assert spec["advanced"]["scalingModifiers"]["formula"].split(" + ") == names
    assert spec["advanced"]["scalingModifiers"]["target"] == "10"
    for trigger in spec["triggers"]:
        assert trigger["type"] == "redis-streams"
        assert set(trigger["metadata"]) == {
            "address", "databaseIndex", "enableTLS", "stream", "streamLength"
        }  # fmt: skip
        assert trigger["metadata"]["address"] == "redis.default.svc.cluster.local:6379"
        assert trigger["authenticationRef"] == {"name": "text-echo-redis"}
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 1}
    assert "cooldownPeriod" not in spec  # it only acts when scaling to zero


def test_scaling_to_zero_gets_a_cooldown(worker_project: Path) -> None:
    set_in_manifest(worker_project, "min_workers: 1", "min_workers: 0")
    fix(worker_project)
    spec = kustomize(worker_project / "k8s" / "overlays" / "keda")["ScaledObject"]["spec"]
    assert spec["minReplicaCount"] == 0
    assert spec["cooldownPeriod"] == 300


def test_a_tls_redis_is_reached_over_tls_by_crank_and_keda(worker_project: Path) -> None:
    pyproject = worker_project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("redis_tls = false", "redis_tls = true"))
    fix(worker_project)
    docs = kustomize(worker_project / "k8s" / "overlays" / "keda")
    assert env_of(docs)["CRANK_BROKER_URL"].startswith("rediss://")
    triggers = docs["ScaledObject"]["spec"]["triggers"]
    assert {t["metadata"]["enableTLS"] for t in triggers} == {"true"}
    assert check_project(load_project(worker_project)).ok


def test_capabilities_whose_ids_read_alike_get_triggers_of_their_own(
    worker_project: Path,
) -> None:
    """`text.echo_x` and `text_echo.x` both spell text_echo_x; KEDA refuses a
    ScaledObject whose triggers share a name, and the formula would count one twice."""
    from crank.generate.k8s import keda_triggers

    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    first = doc["capabilities"][0]
    doc["capabilities"] = [{**first, "id": cid} for cid in ("text.echo_x", "text_echo.x")]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    triggers = keda_triggers(load_project(worker_project))
    assert len(triggers) == 2 * 15
    assert len({t.name for t in triggers}) == len(triggers)
    by_stream = {t.stream: t.name for t in triggers}
    assert by_stream["crank:q:text.echo_x:0"] == "text_echo_x_p0"
    assert by_stream["crank:q:text_echo.x:-7"] == "text_echo_x_2_n7"


def test_worker_env_never_shares_a_secret_key_or_a_name_with_crank(worker_project: Path) -> None:
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["worker"]["env"] = [
        {"name": "API_TOKEN", "secret": True, "description": "Token of the upstream API"},
        {"name": "REDIS_PASSWORD", "secret": True},
        {"name": "MODEL_TOKEN", "secret": True},
        {"name": "CRANK_GRACE_S", "default": "30"},
    ]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    fix(worker_project)
    env = container(kustomize(worker_project / "k8s" / "overlays" / "keda"))["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), names
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in env if "valueFrom" in e}
    assert keys == {
        "CRANK_REDIS_PASSWORD": "redis-password",
        "CRANK_API_TOKEN": "api-token",
        "API_TOKEN": "worker.api-token",
        "REDIS_PASSWORD": "worker.redis-password",
        "MODEL_TOKEN": "model-token",
    }
    # the grace the termination period is derived from, not a second value
    assert {e["name"]: e.get("value") for e in env}["CRANK_GRACE_S"] == "10"


def test_a_worker_env_default_reaches_the_pod_as_written(worker_project: Path) -> None:
    """Kubernetes expands $(VAR) in an env value and reads $$ as $; a default is data."""
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["worker"]["env"] = [{"name": "PROMPT", "default": "say $(CRANK_REDIS_PASSWORD) for $$5"}]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    fix(worker_project)
    env = container(kustomize(worker_project / "k8s" / "overlays" / "keda"))["env"]
    value = {e["name"]: e.get("value") for e in env}["PROMPT"]
    assert value == "say $$(CRANK_REDIS_PASSWORD) for $$$$5"
    # what the kubelet makes of it: every $$ one $
    assert value.replace("$$", "$") == "say $(CRANK_REDIS_PASSWORD) for $$5"


def test_worker_env_names_yaml_reads_as_words_stay_names(worker_project: Path) -> None:
    """`- name: ON` is the boolean true to YAML, `NULL` is null: the pod's env broke."""
    manifest = worker_project / "src" / "text_echo" / "crank.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["worker"]["env"] = [
        {"name": name, "default": "1"} for name in ("ON", "Y", "N", "NULL", "TRUE", "OFF")
    ]
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    fix(worker_project)
    env = container(kustomize(worker_project / "k8s" / "overlays" / "keda"))["env"]
    assert [e["name"] for e in env][-6:] == ["ON", "Y", "N", "NULL", "TRUE", "OFF"]
