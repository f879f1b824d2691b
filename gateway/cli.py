"""``tryon-gateway``: dev, serve, worker, migrate, ledger verify.

``dev`` is the embedded mode: real PostgreSQL, Redis and S3 as child processes
of this command (from PyPI wheels), the migrations, a worker inside the API
process, and demo accounts on first start. ``serve`` and ``worker`` are the
production processes; run any number of each against shared services.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn

from gateway.settings import Settings, SettingsError
from gateway.wiring import DEV_ENGINE, PRODUCTION_ENGINE, build_runtime

log = logging.getLogger("tryon_gateway")


class StartupError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"tryon-gateway: {message}")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise StartupError(str(exc)) from None


def setup_logging(settings: Settings, *, default: str) -> None:
    """JSON lines for ``serve``/``worker``, readable lines for ``dev`` (``TRYON_LOG_FORMAT``)."""
    from gateway.logging_setup import configure_logging

    try:
        configure_logging(settings.log_format, settings.log_level, default=default)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def production_engine_check(settings: Settings) -> None:
    """A production process never bills a local composite by accident."""
    engine = settings.engine or PRODUCTION_ENGINE
    if engine == "gemini" and not settings.gemini_api_key:
        raise StartupError(
            "TRYON_ENGINE defaults to 'gemini' for serve/worker and TRYON_GEMINI_API_KEY is not set;"
            " set the key, or set TRYON_ENGINE explicitly (for example TRYON_ENGINE=local)"
        )


# migrate --------------------------------------------------------------------------
async def _migrate(settings: Settings) -> list[str]:
    from gateway.migrations import migrate
    from gateway.wiring import storage_config
    from storage.objects import ObjectStore

    return await migrate(settings.database_url, ObjectStore(storage_config(settings)))


def cmd_migrate(_: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate(_settings()))
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


# ledger verify --------------------------------------------------------------------
async def _verify(data_dir: str | None) -> list[str]:
    from engine.audit import verify_all
    from gateway.locate import NotReachable, cli_settings, redacted

    with cli_settings(data_dir) as settings:
        runtime = build_runtime(settings)
        try:
            await runtime.start(listen_for_completions=False)
        except (OSError, asyncpg.PostgresError) as exc:
            raise NotReachable(
                f"cannot reach PostgreSQL at {redacted(settings.database_url)} ({exc});"
                " set TRYON_DATABASE_URL, or pass --data-dir DIR of a dev deployment"
            ) from None
        try:
            return await verify_all(runtime)
        finally:
            await runtime.close()


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    problems = asyncio.run(_verify(args.data_dir))
    for problem in problems:
        print(problem)
    print(f"ledger verify: {len(problems)} violation(s)")
    return 1 if problems else 0


# serve ----------------------------------------------------------------------------
SERVER_HTTP = "httptools" if importlib.util.find_spec("httptools") else "h11"
SERVER_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
"""The C HTTP parser and event loop of ``uvicorn[standard]`` (a dependency); a poll spent a
large share of its time in h11 and the pure-Python loop (issue 10). Pure Python only if absent."""


def serve_app() -> Any:
    """uvicorn factory for ``serve`` (each uvicorn worker process builds its own app)."""
    from gateway.app import create_app

    settings = _settings()
    setup_logging(settings, default="json")  # a uvicorn worker process starts with no handlers
    return create_app(settings, default_engine=PRODUCTION_ENGINE, drain_on_signals=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.observability import prepare_metrics_dir

    settings = _settings()
    setup_logging(settings, default="json")
    production_engine_check(settings)
    prepare_metrics_dir(settings.metrics_dir, "serve", args.port)
    uvicorn.run(
        "gateway.cli:serve_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=None,  # our handlers (setup_logging), not uvicorn's
        access_log=False,  # the gateway logs each request itself, with its route and ids
        http=SERVER_HTTP,
        loop=SERVER_LOOP,
        # a worker process imports the whole gateway before it answers the supervisor's ping;
        # on a busy host that takes longer than uvicorn's 5 s, and it would be killed in a loop
        timeout_worker_healthcheck=60,
        timeout_graceful_shutdown=10,
    )
    return 0


# worker ---------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from gateway.observability import prepare_metrics_dir, serve_worker_metrics

    settings = _settings()
    setup_logging(settings, default="json")
    production_engine_check(settings)
    prepare_metrics_dir(settings.metrics_dir, "worker", settings.metrics_port)
    if settings.metrics_port and not args.supervised:
        serve_worker_metrics(settings.metrics_host, settings.metrics_port, settings.metrics_token)
    if args.processes > 1:
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "worker",
                    "--processes",
                    "1",
                    "--threads",
                    str(args.threads),
                    "--supervised",
                ]
            )
            for _ in range(args.processes)
        ]

        def forward(signum: int, _: object) -> None:
            for child in children:
                child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return max(child.wait() for child in children)
    return run_worker(settings, threads=args.threads, default_engine=PRODUCTION_ENGINE)


def run_worker(settings: Settings, *, threads: int, default_engine: str) -> int:
    from dramatiq.asyncio import get_event_loop_thread

    from engine import sweeper
    from engine.worker import make_broker, start_worker, sweep_forever

    runtime = build_runtime(settings, default_engine=default_engine)
    broker = make_broker(runtime)
    worker = start_worker(broker, threads=threads)
    loop_thread = get_event_loop_thread()
    assert loop_thread is not None
    sweeping = asyncio.run_coroutine_threadsafe(sweep_forever(runtime, sweeper.sweep), loop_thread.loop)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"worker ready ({threads} threads, engine {runtime.config.live_backend})", flush=True)
    stop.wait()
    sweeping.cancel()
    worker.stop(int(settings.worker_shutdown_seconds * 1000))
    broker.close()
    return 0


# dev ------------------------------------------------------------------------------
def _dev_secrets(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "dev-secrets.json"
    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    values: dict[str, Any] = {"admin_token": "adm_" + secrets.token_urlsafe(24)}
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


async def _create_demo_accounts(settings: Settings, data_dir: Path) -> dict[str, Any]:
    """One demo account per dialect with a live and a test key, made once per data dir."""
    path = data_dir / "demo-accounts.json"
    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    runtime = build_runtime(settings)
    await runtime.start(listen_for_completions=False)
    demo: dict[str, Any] = {}
    try:
        async with runtime.db.transaction():
            for dialect in ("fitinview", "ftmvai"):
                account = await runtime.ledger.open_account(
                    name=f"Demo {dialect}", dialect=dialect, plan="paid", credits=1000
                )
                live = await runtime.ledger.mint_key(account.id, mode="live", name="Demo live")
                test = await runtime.ledger.mint_key(account.id, mode="test", name="Demo test")
                demo[dialect] = {
                    "account_id": account.id,
                    "live_key": live.plaintext,
                    "test_key": test.plaintext,
                    "webhook_secret": live.webhook_secret,
                }
    finally:
        await runtime.close()
    path.write_text(json.dumps(demo, indent=2))
    path.chmod(0o600)
    return demo


def cmd_dev(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.embedded import EmbeddedServices, Supervisor

    setup_logging(Settings.from_env(log_level="info"), default="console")
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    services = EmbeddedServices(data_dir)
    print(f"starting embedded PostgreSQL, Redis and S3 under {data_dir} …", flush=True)
    endpoints = services.start()
    supervisor = Supervisor(services)
    supervisor.start()
    try:
        dev_secrets = _dev_secrets(data_dir)
        settings = Settings.from_env(
            database_url=endpoints.database_url,
            redis_url=endpoints.redis_url,
            s3_endpoint=endpoints.s3_endpoint,
            s3_access_key=endpoints.s3_access_key,
            s3_secret_key=endpoints.s3_secret_key,
            s3_region=endpoints.s3_region,
        )
        if not settings.admin_token:
            settings = settings.replace(admin_token=dev_secrets["admin_token"])
        if not settings.engine:
            settings = settings.replace(engine=DEV_ENGINE)
        applied = asyncio.run(_migrate(settings))
        if applied:
            print("migrations applied: " + ", ".join(applied), flush=True)
        demo = asyncio.run(_create_demo_accounts(settings, data_dir))
        base = f"http://{args.host}:{args.port}"
        print(_banner(base, settings, demo), flush=True)
        app = create_app(settings, with_worker=True, default_engine=DEV_ENGINE, drain_on_signals=True)
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="info",
            log_config=None,
            access_log=False,
            http=SERVER_HTTP,
            loop=SERVER_LOOP,
            timeout_graceful_shutdown=5,
        )
    finally:
        print("stopping embedded services …", flush=True)
        supervisor.stop()
        services.stop()
    return 0


def _banner(base: str, settings: Settings, demo: dict[str, Any]) -> str:
    fiv, ftm = demo["fitinview"], demo["ftmvai"]
    return "\n".join(
        [
            "",
            f"tryon-gateway dev is serving on {base} (engine: {settings.engine})",
            f"  admin token            {settings.admin_token}",
            f"  ops console            {base}/console (sign in with the admin token)",
            f"  FitInView live key     {fiv['live_key']}",
            f"  FitInView test key     {fiv['test_key']}",
            f"  FitInView webhook key  {fiv['webhook_secret']}",
            f"  FtmvAI live key        {ftm['live_key']}",
            f"  FtmvAI test key        {ftm['test_key']}",
            "",
            "try:",
            f"  curl -s {base}/api/v1/account -H 'Authorization: Bearer {fiv['live_key']}'",
            f"  curl -s {base}/api/v1/account -H 'Authorization: Bearer {ftm['live_key']}'",
            "",
        ]
    )


# entry point ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tryon-gateway", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run everything embedded: services, worker and API")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--data-dir", default=os.environ.get("TRYON_DATA_DIR", ".tryon"))
    dev.set_defaults(func=cmd_dev)

    serve = commands.add_parser("serve", help="run the API (production)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="run job workers (production)")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=4)
    # set by a supervising `worker --processes N` for its children: the supervisor serves metrics
    worker.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)

    migrate = commands.add_parser("migrate", help="create or update the schema and the bucket")
    migrate.set_defaults(func=cmd_migrate)

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser("verify", help="check every account and job against the ledger")
    verify.add_argument("--data-dir", default=None, help="a dev deployment's data directory (default .tryon)")
    verify.set_defaults(func=cmd_ledger_verify)

    from gateway.admin.commands import add_admin_parser

    add_admin_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gateway.locate import NotReachable

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except NotReachable as exc:
        print(f"tryon-gateway: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
