"""Request ids, one log line and one timing per request, and the ``/metrics`` exposition.

:class:`RequestObservability` wraps the whole Litestar ASGI handler (outside its exception
handling and routing), so every response — both dialects, admin, errors, 404s and 500s —
carries ``X-Request-Id``, is timed into ``http_server_request_duration_seconds`` by its route
*template*, and is logged once. The request id is the caller's ``X-Request-Id`` when it is
sane (``engine.context.sane_request_id``), a new one otherwise; it is set in
``engine.context.request_id`` for the request's task, so engine lines and the Dramatiq message
(``job.submitted``) carry it to the worker.

``/metrics`` is served on the API port (optionally behind ``TRYON_METRICS_TOKEN``); a
``worker`` serves the same exposition on ``TRYON_METRICS_PORT``. In multiprocess mode the
processes of one command share a directory of value files (:func:`prepare_metrics_dir`).
"""

from __future__ import annotations

import glob
import hmac
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import MappingProxyType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST

from engine import context, health, metrics
from engine.runtime import Runtime

log = logging.getLogger("tryon_gateway.http")

REQUEST_ID_HEADER = b"x-request-id"
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probed every few seconds: their lines are DEBUG, so INFO logs stay about customers."""

_PATH_DIALECTS = (
    ("/api/v1/generate", "ftmvai"),
    ("/api/v1/orders", "ftmvai"),
    ("/api/v1/tryon", "fitinview"),
    ("/api/v1/credits", "fitinview"),
    ("/admin", "admin"),
    ("/console", "console"),
)


def route_dialect(route: str, caller: Any) -> str:
    """The authenticated caller's dialect; otherwise the one the route belongs to (or ``none``)."""
    dialect = getattr(caller, "dialect", None)
    if isinstance(dialect, str):
        return dialect
    for prefix, name in _PATH_DIALECTS:
        if route.startswith(prefix):
            return name
    return "none"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class RequestObservability:
    """The outermost ASGI layer of the app: request id, timing, the request's log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = context.sane_request_id(_header(scope, REQUEST_ID_HEADER)) or context.new_request_id()
        id_token = context.request_id.set(request_id)
        fields_token = context.log_fields.set(MappingProxyType({}))
        encoded = request_id.encode()
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, encoded)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - started
            self._record(scope, status, seconds)
            context.log_fields.reset(fields_token)
            context.request_id.reset(id_token)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float) -> None:
        route = str(scope.get("path_template") or "") or "unmatched"
        state = scope.get("state") or {}
        caller = state.get("caller")
        dialect = route_dialect(route, caller)
        method = str(scope.get("method", "GET"))
        metrics.http_request(route=route, method=method, status=status, dialect=dialect, seconds=seconds)
        if status >= 500:
            level = logging.ERROR
        elif route in QUIET_ROUTES:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not log.isEnabledFor(level):  # e.g. TRYON_LOG_LEVEL=warning: no line, so no fields to build
            return
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "dialect": dialect,
        }
        if caller is not None:
            fields["account_id"] = caller.account.id
            fields["key_prefix"] = caller.key.key_hint
        log.log(level, "http.request", extra=fields)


# /metrics ------------------------------------------------------------------------------------
def bearer_ok(token: str, authorization: str | None) -> bool:
    """No token configured: open. Otherwise ``Authorization: Bearer <token>``, compared in
    constant time."""
    if not token:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def build_metrics_route(runtime: Runtime, token: str) -> Any:
    """``GET /metrics``: every process's counts, plus the queue read from Redis and PostgreSQL."""

    @get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
        if not bearer_ok(token, request.headers.get("authorization")):
            return Response(
                b"metrics need the bearer token\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
        snapshot: metrics.QueueSnapshot | None
        try:
            snapshot = await health.queue_snapshot(runtime)
        except Exception as exc:  # the other metrics are still worth a scrape
            log.warning("queue gauges unavailable for this scrape: %s", type(exc).__name__)
            snapshot = None
        return Response(metrics.exposition(snapshot), media_type=CONTENT_TYPE_LATEST)

    return metrics_endpoint


def prepare_metrics_dir(configured: str, command: str, port: int) -> str:
    """Choose and empty the directory the processes of one command count into.

    A child of a supervising command (``worker --processes N``'s children, uvicorn's
    workers) inherits ``PROMETHEUS_MULTIPROC_DIR`` and uses it as it is; the supervisor
    empties it first, so counts start at zero with the command (Prometheus sees a restart
    as a counter reset). The default is per command and port under the system's temporary
    directory, so a ``serve`` and a ``worker`` on one host never share (and never empty
    each other's) files.
    """
    inherited = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if inherited:
        metrics.use_multiprocess_dir(inherited)
        return inherited
    path = configured or os.path.join(tempfile.gettempdir(), "tryon-gateway-metrics", f"{command}-{port}")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    metrics.use_multiprocess_dir(path)
    return path


# the worker's port -------------------------------------------------------------------------------
class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        return None


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def metrics_wsgi_app(token: str) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not bearer_ok(token, environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"metrics need the bearer token\n"]
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [metrics.exposition()]

    return app


def serve_worker_metrics(host: str, port: int, token: str) -> WSGIServer:
    """Serve ``/metrics`` for a worker (all its processes) on a daemon thread; returns the server."""
    server = make_server(host, port, metrics_wsgi_app(token), _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics.serving", extra={"route": "/metrics", "port": server.server_port})
    return server
