"""``tryon mcp``: an MCP server that lets LLM agents run try-ons through the gateway.

Built on the official ``mcp`` package (2.x, ``MCPServer``); needs the ``mcp`` extra. One API
key (``--api-key`` / ``$TRYON_API_KEY``) serves every call, and its shape picks the dialect,
as everywhere in this SDK.

Tools
    ``virtual_tryon`` — a person and 1 to 3 garments (URLs or local files; FtmvAI takes one),
    ``size``, ``prompt``; returns the result as image content plus its URL. ``product_catalog``
    (FtmvAI) — 6 or 12 shots of a product; returns the first shot and every URL. ``get_job`` and
    ``account_balance`` — JSON text.
Resource
    ``tryon://pricing`` — prices, sizes and credit packs from ``GET /api/discovery``.
Progress
    While a job runs the server sends MCP progress notifications to a caller that asked for
    them (a ``progressToken``): FtmvAI's percent out of 100; FitInView has no percent, so the
    progress is the seconds elapsed, with no total.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Optional, Union

import httpx
import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from tryon_client._core import make_config
from tryon_client.client import AsyncClient, AsyncFitInView
from tryon_client.errors import InvalidInputError, TryonError
from tryon_client.models import Job, Order, ProgressEvent

__all__ = ["build_server", "serve"]

INSTRUCTIONS = (
    "Virtual try-on through a tryon-gateway. Call virtual_tryon with a person photo and 1-3 garment "
    "photos (https URLs or local file paths) to get a generated image of the person wearing them. "
    "Read the tryon://pricing resource for credit prices; account_balance shows what is left."
)


class _Progress:
    """Forwards the SDK's progress events as MCP progress notifications, strictly increasing."""

    def __init__(self, ctx: Context[Any, Any]) -> None:
        self.ctx = ctx
        self.last = -1.0

    async def report(self, progress: float, total: Optional[float], message: str) -> None:
        if progress <= self.last:
            return
        self.last = progress
        await self.ctx.report_progress(progress, total, message)

    async def __call__(self, event: ProgressEvent) -> None:
        if event.percent is not None:
            await self.report(float(event.percent), 100.0, f"{event.status} {event.percent}%")
        else:
            await self.report(round(event.elapsed, 1), None, f"{event.status} ({event.elapsed:.0f} s)")


def _error(error: Exception) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=f"error: {error}")], is_error=True)


def _mime(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    return "image/jpeg" if path.endswith((".jpg", ".jpeg")) else "image/png"


def _summary(result: Union[Job, Order]) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(result)
    data["result_urls"] = result.result_urls
    return data


async def _image_result(result: Union[Job, Order], note: str) -> CallToolResult:
    urls = result.result_urls
    content: list[ContentBlock] = []
    if urls:
        data = (await result.adownload())[0] if len(urls) == 1 else await _first(urls[0])
        content.append(
            ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=_mime(urls[0]))
        )
    lines = [note] + [f"result_url: {url}" for url in urls]
    content.append(TextContent(type="text", text="\n".join(lines)))
    return CallToolResult(content=content, structured_content=_summary(result))


async def _first(url: str) -> bytes:
    async with httpx.AsyncClient(timeout=120) as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.content


def build_server(api_key: str, base_url: Optional[str] = None) -> MCPServer[Any]:
    """The MCP server, its tools bound to one API key and gateway."""
    server: MCPServer[Any] = MCPServer(name="tryon", instructions=INSTRUCTIONS, version="0.1.0")
    gateway_url = make_config(api_key, base_url).base_url

    def client() -> Any:
        return AsyncClient(api_key, base_url=gateway_url)

    @server.tool(structured_output=False)
    async def virtual_tryon(
        person: str,
        garments: list[str],
        ctx: Context[Any, Any],
        size: str = "1K",
        prompt: Optional[str] = None,
    ) -> CallToolResult:
        """Dress a person in 1-3 garments. `person` and each garment are https URLs or local file
        paths. `size` is 1K, 2K or 4K (FtmvAI keys: 1K or 2K, one garment). Returns the generated
        image and its URL (valid 24 h)."""
        progress = _Progress(ctx)
        try:
            async with client() as tryon:
                result: Union[Job, Order]
                if isinstance(tryon, AsyncFitInView):
                    job = await tryon.tryon(
                        person=person, garments=garments, output_size=size, prompt=prompt, wait=False
                    )
                    await progress.report(0.0, None, f"{job.job_id} submitted")
                    done = await tryon.wait_for(job, on_progress=progress)
                    result, note = done, f"{done.job_id} succeeded ({done.cost_credits} credits)"
                else:
                    if len(garments) != 1:
                        raise InvalidInputError("this gateway key is FtmvAI: exactly one garment per try-on")
                    quality = {"1K": "standard", "2K": "high"}.get(size.upper())
                    if quality is None:
                        raise InvalidInputError("size must be 1K or 2K with an FtmvAI key")
                    order = await tryon.generate(
                        person=person, clothing=garments[0], quality=quality, wait=False
                    )
                    await progress.report(0.0, 100.0, f"order {order.id} submitted")
                    completed = await tryon.wait_for_order(order, on_progress=progress)
                    result, note = (
                        completed,
                        f"order {completed.id} completed ({completed.credits_used} credits)",
                    )
                return await _image_result(result, note)
        except TryonError as error:
            return _error(error)

    @server.tool(structured_output=False)
    async def product_catalog(
        product: str, ctx: Context[Any, Any], count: int = 6, quality: str = "high"
    ) -> CallToolResult:
        """Professional catalog shots of a product (FtmvAI keys): 6 (24 credits) or 12 (36 credits)
        images from one product photo (an https URL or a local file), `quality` "high" (~2048 px)
        or "standard" (~1024 px). Returns the first shot and every URL."""
        progress = _Progress(ctx)
        try:
            async with client() as tryon:
                if isinstance(tryon, AsyncFitInView):
                    raise InvalidInputError("product catalogs need an FtmvAI key")
                order = await tryon.catalog(product=product, count=count, quality=quality, wait=False)
                await progress.report(0.0, 100.0, f"order {order.id} submitted")
                result = await tryon.wait_for_order(order, on_progress=progress)
                return await _image_result(result, f"order {result.id}: {len(result.result_urls)} images")
        except TryonError as error:
            return _error(error)

    @server.tool(structured_output=False)
    async def get_job(job_id: str) -> CallToolResult:
        """The status of a try-on job (job_…) or order (a number): status, result URLs, errors."""
        try:
            async with client() as tryon:
                result = await (
                    tryon.get(job_id) if isinstance(tryon, AsyncFitInView) else tryon.order(job_id)
                )
        except TryonError as error:
            return _error(error)
        summary = _summary(result)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(summary, indent=2))], structured_content=summary
        )

    @server.tool(structured_output=False)
    async def account_balance() -> CallToolResult:
        """Credits left, usage and rate limits of the gateway key."""
        try:
            async with client() as tryon:
                account = await tryon.account()
        except TryonError as error:
            return _error(error)
        data: dict[str, Any] = msgspec.to_builtins(account)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(data, indent=2))], structured_content=data
        )

    @server.resource("tryon://pricing", name="pricing", mime_type="application/json")
    async def pricing() -> str:
        """Credit prices per output size and style, and the credit packs (from /api/discovery)."""
        url = gateway_url + "/api/discovery"
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(url)
            response.raise_for_status()
            discovery = response.json()
        dialects = discovery.get("dialects", {})
        fitinview, ftmvai = dialects.get("fitinview", {}), dialects.get("ftmvai", {})
        commerce = discovery.get("capabilities", {}).get("agentic_commerce", {})
        return json.dumps(
            {
                "fitinview": {"output_sizes": fitinview.get("output_sizes")},
                "ftmvai": {"styles": ftmvai.get("styles"), "plans": ftmvai.get("plans")},
                "credit_packs": commerce.get("packs"),
                "source": "/api/discovery",
            },
            indent=2,
        )

    return server


def serve(
    api_key: str, base_url: Optional[str] = None, http_port: Optional[int] = None, host: str = "127.0.0.1"
) -> None:
    """Run until stdin closes (stdio) or the process is stopped (``--http PORT``)."""
    server = build_server(api_key, base_url)
    if http_port is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=http_port)
