"""``deploy/prometheus`` and ``deploy/grafana`` stay true to the metrics the gateway exposes.

promtool (Debian's ``prometheus`` package; ``.ci/run`` installs it) checks the alert rules,
runs their unit tests (``alerts.test.yml``: each alert fires on the series the gateway
writes) and checks the scrape config's syntax. Every metric a rule or a dashboard panel
queries must be defined in ``engine/metrics.py``, and every defined metric is on the
dashboard and in ``docs/observability.md``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from engine import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "tryon-dashboard.json"
METRICS_SOURCE = ROOT / "engine" / "metrics.py"
NAME = re.compile(r"\b(?:tryon|http_server)_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is missing: apt-get install prometheus (.ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def run(*args: str) -> str:
    result = subprocess.run([promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_checks_the_rules_their_tests_and_the_scrape_config() -> None:
    assert "SUCCESS" in run("check", "rules", "alerts.yml")
    assert "SUCCESS" in run("test", "rules", "alerts.test.yml")
    assert "SUCCESS" in run("check", "config", "--syntax-only", "prometheus.yml")


def queried_names(expressions: list[str]) -> set[str]:
    names = set()
    for expression in expressions:
        for name in NAME.findall(expression):
            stem = name.rsplit("_", 1)[0]
            if name.endswith(HISTOGRAM_SUFFIXES) and stem in metrics.METRIC_NAMES:
                name = stem
            names.add(name)
    return names


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_rules_and_dashboard_query_only_metrics_the_gateway_defines() -> None:
    source = METRICS_SOURCE.read_text()
    rules, panels = queried_names(rule_expressions()), queried_names(dashboard_expressions())
    assert rules and panels
    for name in rules | panels:
        assert name in metrics.METRIC_NAMES, f"{name} is queried but not defined in engine/metrics.py"
        assert f'"{name}"' in source
    assert set(metrics.METRIC_NAMES) <= panels, set(metrics.METRIC_NAMES) - panels


def test_the_issue_s_alerts_are_all_there() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "TryonHighServerErrorRatio",
        "TryonJobFailureRatio",
        "TryonQueueWaitHigh",
        "TryonOldestQueuedJob",
        "TryonWebhookFailures",
        "TryonGeminiModelUnavailableBurst",
    } <= names
    tested = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    fired = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert len(fired) >= 4, fired


def test_observability_doc_names_every_metric_and_setting() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    for name in metrics.METRIC_NAMES:
        assert f"`{name}" in doc, f"docs/observability.md does not describe {name}"
    for variable in ("TRYON_LOG_FORMAT", "TRYON_METRICS_TOKEN", "TRYON_METRICS_PORT", "TRYON_METRICS_DIR"):
        assert variable in doc
