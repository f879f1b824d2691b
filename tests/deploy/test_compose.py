"""deploy/compose.yaml follows the Compose specification (its JSON schema, shipped inside the
check-jsonschema package, so the check runs offline) and wires what the ops docs promise.
No Docker engine runs on the project's machines: docs/deployment.md says what was not run."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validate(compose(), schema)


def test_monitoring_profile_mounts_files_that_exist() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source
    assert "profiles" not in services["api"] and "profiles" not in services["worker"]
    assert services["worker"]["environment"]["TRYON_METRICS_PORT"] == "9464"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target for job in scrape["scrape_configs"] for c in job["static_configs"] for target in c["targets"]
    }
    assert targets == {"api:8000", "worker:9464"}
