"""The Python and JavaScript examples of ftmvai-api.txt, run unchanged apart from the base URL,
the key and the image paths, through to downloading the results they print."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.contracts import contract_text
from tests.support.gateway import FIXTURES, RunningGateway


def example(language: str) -> str:
    lines = contract_text("ftmvai-api.txt").splitlines()
    start = lines.index(language) + 1
    end = next(index for index in range(start, len(lines)) if lines[index] in ("Python", "PHP"))
    return "\n".join(lines[start:end]).strip() + "\n"


def adapt(code: str, gateway: RunningGateway, key: str) -> str:
    return (
        code.replace("https://ftmvai.com/api/v1", gateway.base_url + "/api/v1")
        .replace("YOUR_API_KEY", key)
        .replace("./path/to/person.jpg", str(FIXTURES / "person-astronaut.png"))
        .replace("./path/to/clothing.jpg", str(FIXTURES / "garment-shirt-red-stripes.png"))
        .replace("path/to/person.jpg", str(FIXTURES / "person-astronaut.png"))
        .replace("path/to/clothing.jpg", str(FIXTURES / "garment-shirt-red-stripes.png"))
    )


async def check_printed_results(gateway: RunningGateway, output: str) -> None:
    urls = {name: re.search(rf"{name}:? (\S+)", output) for name in ("Person", "Clothing", "Result")}
    assert all(urls.values()), output
    for match in urls.values():
        assert match is not None
        async with gateway.http.get(match.group(1)) as response:
            assert response.status == 200
            assert len(await response.read()) > 1000


async def test_python_example(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    code = adapt(example("Python"), gateway, key)
    assert "def generate_virtual_tryon" in code and key in code
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Virtual try-on generated successfully!" in result.stdout, result.stdout
    assert "Done!" in result.stdout
    await check_printed_results(gateway, result.stdout)


async def test_javascript_example(gateway: RunningGateway, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to run the document's JavaScript example", pytrace=False)
    _, key = await gateway.account_with_key(dialect="ftmvai", credits=10)
    (tmp_path / "example.js").write_text(adapt(example("JavaScript (Node.js)"), gateway, key))
    probe = await asyncio.to_thread(
        subprocess.run, [node, "-e", "require.resolve('node-fetch')"], cwd=tmp_path, capture_output=True
    )
    has_node_fetch = probe.returncode == 0
    if not has_node_fetch:
        # Node.js 18+ has fetch built in; stand it in for the missing package.
        shim = tmp_path / "node_modules" / "node-fetch"
        shim.mkdir(parents=True)
        (shim / "index.js").write_text("module.exports = globalThis.fetch;\n")
    result = await asyncio.to_thread(
        subprocess.run, [node, "example.js"], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Virtual try-on generated successfully!" in result.stdout, result.stdout + result.stderr
    assert "Done!" in result.stdout
    await check_printed_results(gateway, result.stdout)
