"""The project stays ``ruff`` and ``mypy --strict`` clean (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_checker_is_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


PACKAGES = ("storage", "ledger", "engine", "dialects", "gateway")
LAYER = {"storage": 0, "ledger": 0, "engine": 1, "dialects": 2, "gateway": 3}
"""Imports point down only: gateway → dialects → engine → ledger, storage (each other's strangers)."""


def _module_imports() -> dict[str, set[str]]:
    """Each project module's imports of other project modules (module level and TYPE_CHECKING blocks)."""
    import ast

    modules: dict[str, set[str]] = {}
    for path in ROOT.glob("*/**/*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] not in PACKAGES:
            continue
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        imported: set[str] = set()
        statements = ast.parse(path.read_text()).body
        guarded = [sub for block in statements if isinstance(block, ast.If) for sub in block.body]
        for node in [*statements, *guarded]:
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        modules[name] = imported
    return {name: {dep for dep in deps if dep in modules and dep != name} for name, deps in modules.items()}


def test_imports_point_down_and_never_in_a_circle() -> None:
    graph = _module_imports()
    upward = [
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if LAYER[dep.split(".")[0]] > LAYER[module.split(".")[0]]
        or {module.split(".")[0], dep.split(".")[0]} == {"ledger", "storage"}
    ]
    assert upward == []
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import circle: {' → '.join([*visiting, module])}"
        visiting.append(module)
        for dep in sorted(graph[module]):
            visit(dep)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
