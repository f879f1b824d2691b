"""``tryon``: the command line client (also ``python -m tryon_client``).

The key (``--api-key`` or ``$TRYON_API_KEY``) picks the dialect; ``--base-url`` or
``$TRYON_BASE_URL`` the gateway (default ``http://127.0.0.1:8000``, i.e. ``tryon-gateway dev``).
Results go to stdout (``--json`` for scripts), progress and errors to stderr. The exit code
says what failed (see :data:`EXIT_CODES` and docs/clients.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import msgspec

from tryon_client import webhooks
from tryon_client._core import RetryEvent, dialect_of
from tryon_client._progress import Display
from tryon_client.client import Client, FitInView, FtmvAI
from tryon_client.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    DialectError,
    InvalidInputError,
    JobFailedError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TryonError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from tryon_client.models import Job, Order

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_AUTH = 3
EXIT_PAYMENT_REQUIRED = 4
EXIT_RATE_LIMITED = 5
EXIT_JOB_FAILED = 6
EXIT_NOT_FOUND = 7
EXIT_UNAVAILABLE = 8
EXIT_BAD_SIGNATURE = 9

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "any other error",
    EXIT_BAD_INPUT: "bad input: usage, unreadable file, or the gateway refused the request (400/422)",
    EXIT_AUTH: "missing, unknown or disabled API key (401/403)",
    EXIT_PAYMENT_REQUIRED: "payment required: not enough credits (402)",
    EXIT_RATE_LIMITED: "rate limited (429) beyond what the client waits out",
    EXIT_JOB_FAILED: "the job or order failed (error code and message printed)",
    EXIT_NOT_FOUND: "job or order not found (404)",
    EXIT_UNAVAILABLE: "gateway unreachable, server error (5xx) or the wait timed out",
    EXIT_BAD_SIGNATURE: "webhook verify: the signature or timestamp is invalid",
}

_ERROR_EXITS: list[tuple[type[TryonError], int]] = [
    (WebhookVerificationError, EXIT_BAD_SIGNATURE),
    (JobFailedError, EXIT_JOB_FAILED),
    (InvalidInputError, EXIT_BAD_INPUT),
    (DialectError, EXIT_BAD_INPUT),
    (BadRequestError, EXIT_BAD_INPUT),
    (AuthenticationError, EXIT_AUTH),
    (PermissionDeniedError, EXIT_AUTH),
    (PaymentRequiredError, EXIT_PAYMENT_REQUIRED),
    (RateLimitError, EXIT_RATE_LIMITED),
    (NotFoundError, EXIT_NOT_FOUND),
    (APIConnectionError, EXIT_UNAVAILABLE),
    (ServerError, EXIT_UNAVAILABLE),
    (WaitTimeoutError, EXIT_UNAVAILABLE),
]

SIZE_TO_QUALITY = {"1K": "standard", "2K": "high"}


def exit_code(error: TryonError) -> int:
    for cls, code in _ERROR_EXITS:
        if isinstance(error, cls):
            return code
    return EXIT_ERROR


class _Out:
    """Where answers go: readable lines, or one JSON document with ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, data: Any, lines: list[str]) -> None:
        if self.as_json:
            print(json.dumps(msgspec.to_builtins(data), indent=2))
        else:
            for line in lines:
                print(line)


def _job_dict(result: Union[Job, Order], saved: Optional[list[Path]] = None) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(result)
    if isinstance(result, Order):
        data["result_urls"] = result.result_urls
    if saved is not None:
        data["saved"] = [str(path) for path in saved]
    return data


def _describe(result: Union[Job, Order]) -> list[str]:
    if isinstance(result, Job):
        cost = f"{result.cost_credits} credits" if result.cost_credits is not None else ""
        head = f"{result.job_id}: {result.status}" + (f" ({cost})" if cost else "")
        lines = [head]
        if result.result_url:
            lines.append(f"result: {result.result_url}")
        if result.failed:
            lines.append(f"error: {result.error_code}: {result.error_message}")
        if result.message:
            lines.append(result.message)
        return lines
    progress = f", {result.progress}%" if result.progress is not None and not result.done else ""
    lines = [f"order {result.id}: {result.status} ({result.credits_used} credits{progress})"]
    lines += [f"result: {url}" for url in result.result_urls]
    if result.error is not None:
        lines.append(f"error: {result.error.code}: {result.error.message}")
    return lines


def _client(args: argparse.Namespace, display: Optional[Display] = None) -> Union[FitInView, FtmvAI]:
    key = args.api_key or os.environ.get("TRYON_API_KEY")
    if not key:
        raise InvalidInputError("no API key: pass --api-key or set TRYON_API_KEY")
    on_retry: Optional[Callable[[RetryEvent], None]] = display.retry if display is not None else None
    return Client(
        key,
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_rate_limit_wait=args.max_rate_limit_wait,
        on_retry=on_retry,
    )


def _display(args: argparse.Namespace, description: str) -> Display:
    return Display(not (args.json or args.quiet), description)


def cmd_tryon(args: argparse.Namespace, out: _Out) -> int:
    display = _display(args, "submitting")
    with display, _client(args, display) as client:
        if isinstance(client, FitInView):
            metadata = _metadata(args.metadata)
            result: Union[Job, Order] = client.tryon(
                person=args.person,
                garments=args.garments,
                output_size=args.size,
                prompt=args.prompt,
                seed=args.seed,
                metadata=metadata,
                wait=not args.no_wait,
                idempotency_key=args.idempotency_key,
                webhook_url=args.webhook_url,
                on_progress=display.progress,
            )
        else:
            if len(args.garments) != 1:
                raise InvalidInputError("an FtmvAI order takes exactly one clothing image")
            quality = SIZE_TO_QUALITY.get(args.size.upper())
            if quality is None:
                raise InvalidInputError("FtmvAI sizes: 1K (standard) or 2K (high)")
            result = client.generate(
                person=args.person,
                clothing=args.garments[0],
                quality=quality,
                format=_format_for(args.output),
                wait=not args.no_wait,
                on_progress=display.progress,
            )
        saved = result.save(args.output) if args.output and result.succeeded else None
    lines = _describe(result) + [f"saved: {path}" for path in saved or []]
    out.result(_job_dict(result, saved), lines)
    return EXIT_OK


def _metadata(items: Optional[list[str]]) -> Optional[dict[str, Any]]:
    if not items:
        return None
    pairs = [item.split("=", 1) for item in items]
    if any(len(pair) != 2 for pair in pairs):
        raise InvalidInputError("--metadata wants KEY=VALUE")
    return {key: value for key, value in pairs}


def _format_for(output: Optional[str]) -> str:
    return "png" if output and output.lower().endswith(".png") else "jpg"


def cmd_catalog(args: argparse.Namespace, out: _Out) -> int:
    display = _display(args, "submitting")
    with display, _client(args, display) as client:
        if isinstance(client, FitInView):
            raise DialectError("product catalogs are an FtmvAI feature: use an FtmvAI key")
        order = client.catalog(
            product=args.product,
            count=args.count,
            quality=args.quality,
            format=args.format,
            wait=not args.no_wait,
            on_progress=display.progress,
        )
        saved = order.save(args.output) if args.output and order.succeeded else None
    lines = _describe(order) + [f"saved: {path}" for path in saved or []]
    out.result(_job_dict(order, saved), lines)
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, out: _Out) -> int:
    with _client(args) as client:
        if not isinstance(client, FitInView):
            raise DialectError("FtmvAI has no job list: use `tryon job ORDER_ID`")
        jobs: list[Job] = []
        for job in client.list(status=args.status):
            jobs.append(job)
            if len(jobs) >= args.limit:
                break
    lines = [
        f"{job.job_id}  {job.status:<9}  {job.created_at or '':<20}  "
        + (job.result_url or f"{job.error_code or ''} {job.error_message or ''}".strip())
        for job in jobs
    ]
    out.result({"jobs": [_job_dict(job) for job in jobs]}, lines or ["no jobs"])
    return EXIT_OK


def cmd_job(args: argparse.Namespace, out: _Out) -> int:
    display = _display(args, args.id) if args.wait else None
    with _client(args, display) as client:
        result: Union[Job, Order]
        if isinstance(client, FitInView):
            result = client.get(args.id)
            if args.wait and not result.done:
                assert display is not None
                with display:
                    result = client.wait_for(result, on_progress=display.progress, raise_on_failure=False)
        else:
            result = client.order(args.id)
            if args.wait and not result.done:
                assert display is not None
                with display:
                    result = client.wait_for_order(
                        result, on_progress=display.progress, raise_on_failure=False
                    )
        saved = result.save(args.output) if args.output and result.succeeded else None
    lines = _describe(result) + [f"saved: {path}" for path in saved or []]
    out.result(_job_dict(result, saved), lines)
    return EXIT_JOB_FAILED if result.failed else EXIT_OK


def cmd_account(args: argparse.Namespace, out: _Out) -> int:
    with _client(args) as client:
        if isinstance(client, FitInView):
            account = client.account()
            prices = ", ".join(f"{size} {credits}" for size, credits in account.tryon_cost_credits.items())
            lines = [
                f"key: {account.name}",
                f"credits: {account.credits_remaining}",
                f"calls: {account.total_calls}",
                f"rate limit: {account.rate_limit_per_min}/min",
                f"prices: {prices}",
            ]
            out.result(account, lines)
        else:
            ftmv = client.account()
            info, limit = ftmv.account, ftmv.rate_limit
            lines = [
                f"user: {info.user_id} ({info.plan} plan)",
                f"credits: {info.credits_remaining}",
                f"orders today: {info.api_calls_today}, total: {info.api_calls_total}",
                f"rate limit: {limit.remaining}/{limit.limit} left, resets at {limit.reset}",
            ]
            out.result(ftmv, lines)
    return EXIT_OK


def cmd_purchase(args: argparse.Namespace, out: _Out) -> int:
    with _client(args) as client:
        if not isinstance(client, FitInView):
            raise DialectError("credit packs are bought with a FitInView key")
        purchase = client.purchase_credits(args.pack, args.token)
    lines = [
        f"{purchase.payment_intent_id}: {purchase.status}",
        f"credits added: {purchase.credits_added}, balance: {purchase.credits_remaining}",
    ]
    out.result(purchase, lines)
    return EXIT_OK


def _read_headers(args: argparse.Namespace) -> dict[str, str]:
    headers: dict[str, str] = {}
    if args.headers_file:
        text = Path(args.headers_file).read_text()
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            headers.update({str(name): str(value) for name, value in loaded.items()})
        else:  # raw "Name: value" lines, as an HTTP dump shows them
            for line in text.splitlines():
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip()] = value.strip()
    for item in args.header or []:
        if ":" not in item:
            raise InvalidInputError(f"--header wants 'Name: value', not {item!r}")
        name, value = item.split(":", 1)
        headers[name.strip()] = value.strip()
    return headers


def cmd_webhook_verify(args: argparse.Namespace, out: _Out) -> int:
    secret = args.secret or os.environ.get("TRYON_WEBHOOK_SECRET")
    if not secret:
        raise InvalidInputError("no secret: pass --secret or set TRYON_WEBHOOK_SECRET")
    try:
        body = Path(args.body).read_bytes() if args.body and args.body != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the body: {exc}") from exc
    event = webhooks.verify(
        body, _read_headers(args), secret, tolerance=args.tolerance, require_v2=args.require_v2
    )
    out.result(
        {"valid": True, "event": msgspec.to_builtins(event)},
        [f"valid: {event.event} {event.job_id} {event.status}"],
    )
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace, out: _Out) -> int:
    try:
        from tryon_client.mcp_server import serve
    except ImportError as exc:
        raise InvalidInputError(f"the MCP server needs: pip install 'tryon-client[mcp]' ({exc})") from exc
    key = args.api_key or os.environ.get("TRYON_API_KEY")
    if not key:
        raise InvalidInputError("no API key: pass --api-key or set TRYON_API_KEY")
    dialect_of(key)
    serve(api_key=key, base_url=args.base_url, http_port=args.http, host=args.host)
    return EXIT_OK


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options accepted before or after the command (``tryon --json account`` = ``tryon account --json``)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--api-key",
        default=default(None),
        help="API key (default: $TRYON_API_KEY); its shape picks the dialect",
    )
    parser.add_argument(
        "--base-url",
        default=default(None),
        help="gateway URL (default: $TRYON_BASE_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON for scripts")
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default(False), help="no progress display"
    )
    parser.add_argument(
        "--timeout", type=float, default=default(None), help="seconds per HTTP request (default 120)"
    )
    parser.add_argument(
        "--max-retries", type=int, default=default(None), help="retries after transport and 5xx errors (4)"
    )
    parser.add_argument(
        "--max-rate-limit-wait",
        type=float,
        default=default(None),
        help="seconds of 429s to wait out before giving up with exit code 5 (60)",
    )


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="tryon",
        description="Virtual try-ons from the command line, against a tryon-gateway.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace, _Out], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text)
        _common(sub, suppress=True)
        sub.set_defaults(handler=handler)
        return sub

    tryon = command("tryon", cmd_tryon, "try garments on a person photo (files or URLs)")
    tryon.add_argument("person", help="person photo: a file or an http(s) URL")
    tryon.add_argument("garments", nargs="+", help="1 to 3 garment images (FtmvAI: exactly one)")
    tryon.add_argument("--size", default="1K", help="1K (default), 2K or 4K (FtmvAI: 1K=standard, 2K=high)")
    tryon.add_argument("-o", "--output", help="save the result here (a file, or a directory)")
    tryon.add_argument("--prompt", help="extra instruction (FitInView)")
    tryon.add_argument("--seed", type=int, help="seed, echoed back (FitInView)")
    tryon.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="metadata pair (FitInView)")
    tryon.add_argument("--webhook-url", help="POST a signed event here when the job ends (FitInView)")
    tryon.add_argument("--idempotency-key", help="reuse to make a repeated command return the same job")
    tryon.add_argument("--no-wait", action="store_true", help="return at once with the job id")

    catalog = command("catalog", cmd_catalog, "product catalog shots from one product photo (FtmvAI)")
    catalog.add_argument("product", help="product photo: a file or an http(s) URL")
    catalog.add_argument("--count", type=int, choices=(6, 12), default=6, help="6 (24 credits) or 12 (36)")
    catalog.add_argument("--quality", choices=("standard", "high"), default="high")
    catalog.add_argument("--format", choices=("jpg", "png"), default="jpg")
    catalog.add_argument("-o", "--output", help="directory to save the images in")
    catalog.add_argument("--no-wait", action="store_true", help="return at once with the order id")

    jobs = command("jobs", cmd_jobs, "list recent jobs, newest first (FitInView)")
    jobs.add_argument("--status", choices=("running", "succeeded", "failed"), help="only jobs in this status")
    jobs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    job = command("job", cmd_job, "show one job (FitInView) or order (FtmvAI)")
    job.add_argument("id", help="job_… or an order number")
    job.add_argument("--wait", action="store_true", help="wait until it ends")
    job.add_argument("-o", "--output", help="save the result(s) here")

    command("account", cmd_account, "balance, usage and limits of the key")

    purchase = command("purchase", cmd_purchase, "buy a credit pack with a Stripe Shared Payment Token")
    purchase.add_argument("pack", help="starter, growth or scale")
    purchase.add_argument("token", help="spt_…")

    webhook = command("webhook", cmd_webhook_verify, "webhook tools")
    webhook_commands = webhook.add_subparsers(dest="webhook_command", required=True, metavar="verify")
    verify = webhook_commands.add_parser("verify", help="check a received webhook's signatures")
    _common(verify, suppress=True)
    verify.set_defaults(handler=cmd_webhook_verify)
    verify.add_argument("--secret", help="the key's whsec_… secret (default: $TRYON_WEBHOOK_SECRET)")
    verify.add_argument("--body", help="file with the raw body (default: stdin)")
    verify.add_argument("-H", "--header", action="append", help="a received header, 'Name: value'")
    verify.add_argument("--headers-file", help="received headers: a JSON object or 'Name: value' lines")
    verify.add_argument("--tolerance", type=float, default=webhooks.DEFAULT_TOLERANCE, help="seconds (300)")
    verify.add_argument(
        "--require-v2", action="store_true", help="refuse deliveries without the v2 signature"
    )

    mcp = command("mcp", cmd_mcp, "run the MCP server for LLM agents (stdio, or streamable HTTP)")
    mcp.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on this port")
    mcp.add_argument("--host", default="127.0.0.1", help="address for --http (default 127.0.0.1)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = _Out(args.json)
    handler: Callable[[argparse.Namespace, _Out], int] = args.handler
    try:
        return handler(args, out)
    except TryonError as error:
        code = exit_code(error)
        if args.json:
            print(json.dumps({"error": error.to_dict(), "exit_code": code}), file=sys.stderr)
        else:
            print(f"tryon: {error}", file=sys.stderr)
            if isinstance(error, JobFailedError):
                for line in _describe(error.job):
                    print(line, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return 130
