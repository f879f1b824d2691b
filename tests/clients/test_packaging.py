"""The SDK is a real distribution of its own: it builds into a wheel with its console script and
type marker, type-checks under ``mypy --strict`` with its own settings, and stays Python 3.9
syntax (msgspec evaluates field annotations at run time, so no ``X | None`` there)."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.clients.conftest import REPO

SDK = REPO / "clients" / "python"
PACKAGE = SDK / "src" / "tryon_client"


def _can_build_wheels() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_pip_builds_the_wheel(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "src-copy"
    shutil.copytree(
        SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", ".mypy_cache", "__pycache__")
    )
    wheels = tmp_path / "wheels"
    # Without build isolation when this environment can build wheels itself (setuptools >= 70.1
    # or the `wheel` package); otherwise pip fetches the build backend as `pip install` would.
    isolation = ["--no-build-isolation"] if _can_build_wheels() else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = wheels.glob("tryon_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    for module in (
        "__init__.py",
        "py.typed",
        "client.py",
        "cli.py",
        "webhooks.py",
        "mcp_server.py",
        "__main__.py",
    ):
        assert f"tryon_client/{module}" in names
    assert "tryon = tryon_client.cli:main" in entry_points
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [line for line in requires if "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0] for line in runtime) == ["httpx", "msgspec"], requires
    assert "Requires-Python: >=3.9" in metadata


def test_sdk_is_mypy_strict_clean() -> None:
    """With clients/python/pyproject.toml's settings (strict, its own files and cache)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict"], cwd=SDK, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _runtime_unions(tree: ast.AST) -> list[int]:
    """Lines where ``X | Y`` would be evaluated at run time on Python 3.9: class-body annotations
    (msgspec and dataclasses read them) and module-level type aliases."""
    lines = []
    for node in ast.walk(tree):
        annotations: list[ast.expr] = []
        if isinstance(node, ast.ClassDef):
            annotations = [item.annotation for item in node.body if isinstance(item, ast.AnnAssign)]
        elif isinstance(node, ast.Module):
            annotations = [item.value for item in node.body if isinstance(item, ast.Assign)]
        for annotation in annotations:
            for part in ast.walk(annotation):
                if isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr):
                    lines.append(part.lineno)
    return lines


def test_sdk_stays_python_39_compatible() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        assert "from __future__ import annotations" in source, path
        assert _runtime_unions(tree) == [], f"{path.name}: use typing.Optional/Union at run time"
