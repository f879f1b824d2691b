"""``tryon mcp`` driven by the ``mcp`` package's own client, over stdio and streamable HTTP,
against a running gateway: tools, image content, the pricing resource, progress notifications."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from tests.clients.conftest import CUP, PERSON, sdk_env
from tests.support.gateway import RunningGateway, free_port
from tests.support.image_host import ImageHost


@asynccontextmanager
async def mcp_session(key: str, base_url: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tryon_client", "mcp"],
        env=sdk_env(TRYON_API_KEY=key, TRYON_BASE_URL=base_url),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


class Progress:
    def __init__(self) -> None:
        self.updates: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append((progress, total, message))


def image_of(result: Any) -> Image.Image:
    assert isinstance(result, CallToolResult) and not result.is_error, result
    [image] = [block for block in result.content if isinstance(block, ImageContent)]
    return Image.open(io.BytesIO(base64.b64decode(image.data)))


def text_of(result: Any) -> str:
    assert isinstance(result, CallToolResult)
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def test_fitinview_agent_tries_on_with_progress(
    slow_gateway: RunningGateway, image_host: ImageHost
) -> None:
    _, key = await slow_gateway.account_with_key(credits=100)
    async with mcp_session(key, slow_gateway.base_url) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == {"virtual_tryon", "product_catalog", "get_job", "account_balance"}

        progress = Progress()
        result = await session.call_tool(
            "virtual_tryon",
            {"person": str(PERSON), "garments": [image_host.url("/shirt.png")], "size": "1K"},
            progress_callback=progress,
        )
        image = image_of(result)
        assert max(image.size) == 1024 and image.format == "PNG"
        text = text_of(result)
        assert "succeeded (8 credits)" in text and "result_url: http" in text
        assert (
            progress.updates and progress.updates[0][2] is not None and "submitted" in progress.updates[0][2]
        )
        assert [update[0] for update in progress.updates] == sorted(
            {update[0] for update in progress.updates}
        )
        assert any(update[2] and "running" in update[2] for update in progress.updates), progress.updates

        job_id = text.split()[0]
        job = json.loads(text_of(await session.call_tool("get_job", {"job_id": job_id})))
        assert (job["job_id"], job["status"], job["cost_credits"]) == (job_id, "succeeded", 8)
        balance = json.loads(text_of(await session.call_tool("account_balance", {})))
        assert balance["credits_remaining"] == 92

        pricing = await session.read_resource("tryon://pricing")
        prices = json.loads(pricing.contents[0].text)  # type: ignore[union-attr]
        assert prices["fitinview"]["output_sizes"]["2K"]["credits"] == 12
        assert prices["ftmvai"]["styles"]["product_catalog"]["quantities"]["12"]["credits"] == 36

        failed = await session.call_tool(
            "virtual_tryon", {"person": str(PERSON), "garments": ["/no/such.png"]}
        )
        assert isinstance(failed, CallToolResult) and failed.is_error and "cannot read" in text_of(failed)
        catalog = await session.call_tool("product_catalog", {"product": str(CUP)})
        assert isinstance(catalog, CallToolResult) and catalog.is_error and "FtmvAI" in text_of(catalog)


async def test_ftmvai_agent_over_streamable_http(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(credits=0, mode="test", dialect="ftmvai")
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryon_client",
        "mcp",
        "--http",
        str(port),
        env=sdk_env(TRYON_API_KEY=key, TRYON_BASE_URL=gateway.base_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 120  # importing mcp is slow on a busy machine
        while True:  # until it listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                assert server.returncode is None, "the MCP server exited"
                assert asyncio.get_running_loop().time() < deadline, "the MCP server never listened"
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        url = f"http://127.0.0.1:{port}/mcp"
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            progress = Progress()
            result = await session.call_tool(
                "product_catalog",
                {"product": str(CUP), "count": 6, "quality": "standard"},
                progress_callback=progress,
            )
            assert max(image_of(result).size) == 1024
            assert text_of(result).count("result_url: ") == 6
            assert progress.updates[0][1] == 100.0 and progress.updates[-1][0] == 100.0, progress.updates
            balance = json.loads(text_of(await session.call_tool("account_balance", {})))
            assert balance["account"]["credits_remaining"] == 0 and balance["account"]["plan"] == "paid"
    finally:
        server.terminate()
        await server.wait()
