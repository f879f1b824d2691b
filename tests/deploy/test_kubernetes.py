"""The Kubernetes manifests (deploy/k8s): every overlay renders with kustomize, every object
validates offline against the Kubernetes schemas (kubernetes-validate) or, for KEDA and the
Prometheus Operator, against the schemas this folder carries, and every setting the app reads
is provided."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dramatiq
import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from dramatiq.brokers.redis import RedisBroker

from gateway.settings import Settings
from tests.support.services import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.35.0"
SECRET_KEYS = {
    "TRYON_DATABASE_URL",
    "TRYON_REDIS_URL",
    "TRYON_S3_ACCESS_KEY",
    "TRYON_S3_SECRET_KEY",
    "TRYON_ADMIN_TOKEN",
    "TRYON_GEMINI_API_KEY",
    "TRYON_STRIPE_API_KEY",
    "TRYON_STRIPE_WEBHOOK_SECRET",
    "TRYON_METRICS_TOKEN",
    "REDIS_PASSWORD",
}
"""What the Secret ``tryon-secrets`` holds: URLs with passwords, keys and tokens."""


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomize overlays (it is on the project's machines)"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def carried_schema(doc: dict[str, Any]) -> dict[str, Any] | None:
    path = SCHEMAS / f"{doc['apiVersion'].replace('/', '_')}_{doc['kind']}.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_validates(overlay: str) -> None:
    docs = render(overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Job", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ScaledObject", "ServiceMonitor", "NetworkPolicy", "ConfigMap"} <= kinds
    for doc in docs:
        schema = carried_schema(doc)
        if schema is not None:
            jsonschema.validate(doc, schema)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_with_requests_and_limits(overlay: str) -> None:
    for doc in render(overlay):
        if doc["kind"] not in ("Deployment", "Job", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_every_setting_the_app_reads_is_provided() -> None:
    base = {doc["kind"]: doc for doc in render("dev") if doc["kind"] in ("ConfigMap", "Secret")}
    config_keys = set(yaml.safe_load((K8S / "base" / "config.yaml").read_text())["data"])
    settings = set(Settings.documented_variables())
    assert settings - config_keys - SECRET_KEYS == set(), "settings neither in the ConfigMap nor the Secret"
    assert config_keys & SECRET_KEYS == set(), "a secret in the ConfigMap"
    assert set(base["Secret"]["data"]) == SECRET_KEYS
    guide = (ROOT / "docs" / "deployment.md").read_text()
    assert all(key in guide for key in SECRET_KEYS), "docs/deployment.md must name every Secret key"
    for overlay in OVERLAYS:
        for doc in render(overlay):
            if doc["kind"] in ("Deployment", "Job"):
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    if container["image"].split("/")[-1].startswith("tryon-gateway"):
                        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
                        assert refs == {"tryon-config", "tryon-secrets"}, doc["metadata"]["name"]


def test_keda_watches_the_list_dramatiq_fills() -> None:
    """Send one message through a real Dramatiq Redis broker: it lands in the list KEDA reads."""
    (scaled,) = [doc for doc in render("prod") if doc["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == f"{Settings().redis_namespace}:default"
    namespace = "tryon-keda-" + secrets.token_hex(4)
    client = redis.Redis.from_url(REDIS_URL)
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    try:
        actor = dramatiq.actor(actor_name="job.submitted", broker=broker)(lambda job_id: None)
        actor.send(1)
        list_name = trigger["metadata"]["listName"].replace(Settings().redis_namespace, namespace, 1)
        assert client.llen(list_name) == 1
    finally:
        broker.close()
        for key in client.scan_iter(f"{namespace}*"):
            client.delete(key)
        client.close()
