"""The ops console under ``/console``: server-rendered pages over the admin API's services.

Every page calls the same domain functions as ``/admin`` (``engine.operations``,
``runtime.accounts``, ``runtime.audit``, ``ledger.statements``, ``engine.usage``,
``engine.health``, ``engine.webhooks``); the console adds only HTML. Sign-in turns an operator
token into a server-side session (:mod:`gateway.console.sessions`); every POST carries a CSRF
token (Litestar's CSRF middleware, on this router only, so the JSON APIs stay token-free) and is
checked against the role its route declares in ``opt`` with :func:`ledger.operators.require`,
whatever buttons the page showed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream, Template
from litestar.template.config import TemplateConfig
from markupsafe import Markup

try:
    from litestar.plugins.jinja import JinjaTemplateEngine
except ImportError:  # Litestar before 2.22 has it only here
    from litestar.contrib.jinja import JinjaTemplateEngine  # type: ignore[no-redef,attr-defined,unused-ignore]

from engine import health, operations, webhooks
from engine.context import current_request_id, new_request_id
from engine.errors import DomainError, InvalidRequest, NotFound
from engine.models import JobFilter, JobRecord
from engine.payments_admin import PurchaseFilter, PurchaseView, list_purchases
from engine.runtime import Runtime
from engine.usage import UsageQuery, usage_report
from gateway.admin.accounts import patch_changes
from gateway.admin.accounts_schemas import PatchAccount
from gateway.admin.errors import _STATUS
from gateway.console import charts
from gateway.console.sessions import COOKIE, SessionStore
from ledger.accounts import PLANS, AccountQuery
from ledger.audit import AuditFilter
from ledger.models import Actor, OperatorRecord, UsageDayRecord
from ledger.operators import allows, require
from ledger.statements import statement_csv, statement_page

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
PAGE = 50
STATUSES = ("queued", "running", "succeeded", "failed")
DIALECTS = ("fitinview", "ftmvai")
KINDS = ("tryon", "catalog")
BACKENDS = ("local", "gemini", "stock")
PURCHASES_PAGE = 10
SAMPLE = 200
"""Jobs read for the overview's failure codes and generation times (the newest in 24 h)."""


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine)


class SignInNeeded(Exception):
    """No valid session: GETs go to the sign-in page (and come back), POSTs get 401."""


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (``//host``, ``/\\host``) or scheme."""
    if (
        not target
        or not target.startswith("/console")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return "/console"
    return target


def _is_https(request: Request[Any, Any, Any]) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return (forwarded or request.url.scheme) == "https"


def _actor(operator: OperatorRecord) -> Actor:
    return Actor(operator=operator.name, request_id=current_request_id() or new_request_id())


def _page(request: Request[Any, Any, Any], name: str, status_code: int = 200, **context: Any) -> Template:
    operator: OperatorRecord | None = getattr(request.state, "operator", None)
    return Template(
        template_name=name,
        context={
            "operator": operator,
            "can": (lambda role: operator is not None and allows(operator.role, role)),
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )


def _error_page(request: Request[Any, Any, Any], status: int, message: str) -> Response[Any]:
    return _page(request, "error.html", status_code=status, status=status, message=message)


def _on_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    return _error_page(request, status, exc.message)


def _on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return _error_page(request, exc.status_code, str(exc.detail))


def _on_sign_in_needed(request: Request[Any, Any, Any], _: SignInNeeded) -> Response[Any]:
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/console/login?{urlencode({'next': target})}")
    return _error_page(request, 401, "sign in first")


def _parse_when(text: str | None, field: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest("expected an ISO 8601 date-time", field=field) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_int(text: str | None, field: str) -> int | None:
    if not text:
        return None
    if not text.strip().isdigit() or len(text.strip()) > 18:
        raise InvalidRequest("expected a positive integer", field=field)
    return int(text)


def _choice(text: str | None, allowed: tuple[str, ...]) -> str | None:
    return text if text in allowed else None


def _links(runtime: Runtime, job: JobRecord, role: str) -> list[str]:
    """Presigned links for a table's thumbnails, as the job detail makes them (none once purged)."""
    if job.purged_at is not None:
        return []
    images = job.results if role == "result" else job.inputs
    ttl = runtime.config.presign_ttl_seconds
    return [runtime.store.presigned_url(image.key, ttl) for image in images]


async def _reason(request: Request[Any, Any, Any]) -> str:
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    if not reason or len(reason) > 500:
        raise InvalidRequest("a reason of 1 to 500 characters is required", field="reason")
    return reason


def build_console_router(runtime: Runtime, root_token: str, session_seconds: int) -> Router:
    sessions = SessionStore(runtime.redis, runtime.config.redis_namespace, session_seconds)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public"):
            return
        operator = await sessions.operator(runtime, connection.cookies.get(COOKIE), root_token)
        if operator is None:
            raise SignInNeeded()
        connection.state.operator = operator
        methods: set[str] = set(getattr(handler, "http_methods", ()))
        if not methods <= {"GET", "HEAD"}:
            require(operator, str(handler.opt.get("role", "admin")))

    def operator_of(request: Request[Any, Any, Any]) -> OperatorRecord:
        operator: OperatorRecord = request.state.operator
        return operator

    # ---- sign-in -------------------------------------------------------------------------------

    @get("/login", opt={"public": True})
    async def login_page(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template:
        return _page(request, "login.html", next=safe_next(next), error=None)

    @post("/login", opt={"public": True})
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        form = await request.form()
        target = safe_next(str(form.get("next") or ""))
        token = str(form.get("token") or "").strip()
        try:
            operator = await runtime.operators.authenticate(token, root_token)
        except DomainError:
            return _page(request, "login.html", status_code=401, next=target, error="Unknown token")
        session_id = await sessions.create(operator, token)
        log.info("console sign-in", extra={"operator": operator.name})
        return Redirect(
            target,
            cookies=[
                Cookie(
                    key=COOKIE,
                    value=session_id,
                    path="/console",
                    max_age=session_seconds,
                    httponly=True,
                    samesite="strict",
                    secure=_is_https(request),
                )
            ],
        )

    @post("/logout", opt={"role": "viewer"})
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        session_id = request.cookies.get(COOKIE)
        if session_id:
            await sessions.delete(session_id)
        response = Redirect("/console/login")
        response.delete_cookie(COOKIE, path="/console")
        return response

    # ---- overview ------------------------------------------------------------------------------

    @get("/")
    async def overview(request: Request[Any, Any, Any]) -> Template:
        now = datetime.now(UTC)
        since = now - timedelta(hours=24)
        today = now.date()
        yesterday = today - timedelta(days=1)
        # independent reads, each on its own pooled connection: the page takes the slowest, not the sum
        by_dialect, by_backend, failed, done, report, failing = await asyncio.gather(
            usage_report(runtime.db, UsageQuery(group="dialect", first_day=yesterday, last_day=today)),
            usage_report(runtime.db, UsageQuery(group="backend", first_day=yesterday, last_day=today)),
            operations.search(runtime, JobFilter(status="failed", since=since, limit=SAMPLE)),
            operations.search(runtime, JobFilter(status="succeeded", since=since, limit=SAMPLE)),
            health.health_report(runtime),
            webhooks.list_events(runtime, webhooks.EventFilter(status="failed", limit=20)),
        )
        seconds = sorted(
            (job.completed_at - job.started_at).total_seconds()
            for job in done.jobs
            if job.started_at and job.completed_at
        )
        quantiles = statistics.quantiles(seconds, n=20) if len(seconds) >= 2 else seconds * 19
        totals = by_dialect.totals
        queue = report.queue
        statuses = [
            ("queued", float(queue.queued if queue else 0)),
            ("running", float(queue.running if queue else 0)),
            ("succeeded", float(totals.jobs_succeeded)),
            ("failed", float(totals.jobs_failed)),
        ]
        codes = Counter(job.error_code or "unknown" for job in failed.jobs)
        return _page(
            request,
            "overview.html",
            report=report,
            totals=totals,
            first_day=by_dialect.first_day,
            status_chart=charts.bars(statuses),
            dialect_chart=charts.bars([(str(row.key), float(row.jobs_submitted)) for row in by_dialect.rows]),
            backend_chart=charts.bars(
                [(str(row.key), float(row.jobs_submitted)) for row in by_backend.rows if row.key is not None]
            ),
            code_chart=charts.bars([(code, float(count)) for code, count in codes.most_common(10)]),
            credits_chart=charts.bars(
                [("spent", float(totals.credits_debited)), ("refunded", float(totals.credits_refunded))]
            ),
            p50=round(quantiles[9], 2) if quantiles else None,
            p95=round(quantiles[18], 2) if quantiles else None,
            sampled=len(seconds),
            failing=failing,
        )

    # ---- jobs ----------------------------------------------------------------------------------

    @get("/jobs")
    async def jobs(request: Request[Any, Any, Any]) -> Template:
        query = request.query_params
        ref = (query.get("id") or "").strip()
        if ref:
            return Redirect(f"/console/jobs/{quote(ref, safe='')}")  # type: ignore[return-value]
        found = await operations.search(
            runtime,
            JobFilter(
                account=_parse_int(query.get("account"), "account"),
                api_key=_parse_int(query.get("key"), "key"),
                dialect=_choice(query.get("dialect"), DIALECTS),
                kind=_choice(query.get("kind"), KINDS),
                status=_choice(query.get("status"), STATUSES),
                error_code=(query.get("error_code") or "").strip() or None,
                backend=_choice(query.get("backend"), BACKENDS),
                since=_parse_when(query.get("since"), "since"),
                until=_parse_when(query.get("until"), "until"),
                before_id=_parse_int(query.get("cursor"), "cursor"),
                limit=PAGE,
            ),
        )
        rows = [
            {"job": job, "results": _links(runtime, job, "result"), "inputs": _links(runtime, job, "input")}
            for job in found.jobs
        ]
        filters = {name: query.get(name) or "" for name in query if name != "cursor"}
        more = None if found.next_cursor is None else urlencode({**filters, "cursor": found.next_cursor})
        return _page(
            request,
            "jobs.html",
            rows=rows,
            filters=filters,
            more=more,
            statuses=STATUSES,
            dialects=DIALECTS,
            kinds=KINDS,
            backends=BACKENDS,
        )

    @get("/jobs/{ref:str}")
    async def job(request: Request[Any, Any, Any], ref: FromPath[str]) -> Template:
        if len(ref) > 44:
            raise NotFound("no such job")
        detail = await operations.detail(runtime, ref)
        return _page(request, "job.html", d=detail, job=detail.job)

    @post("/jobs/{ref:str}/cancel", opt={"role": "support"})
    async def cancel(request: Request[Any, Any, Any], ref: FromPath[str]) -> Redirect:
        job = await operations.cancel(runtime, _actor(operator_of(request)), ref, await _reason(request))
        return Redirect(f"/console/jobs/{job.public_id}")

    @post("/jobs/{ref:str}/refund", opt={"role": "support"})
    async def refund(request: Request[Any, Any, Any], ref: FromPath[str]) -> Redirect:
        reason = await _reason(request)
        async with runtime.db.transaction():
            job = await operations.refund(runtime, _actor(operator_of(request)), ref, reason)
        return Redirect(f"/console/jobs/{job.public_id}")

    @post("/jobs/{ref:str}/rerun", opt={"role": "support"})
    async def rerun(request: Request[Any, Any, Any], ref: FromPath[str]) -> Redirect:
        job = await operations.rerun(runtime, _actor(operator_of(request)), ref, await _reason(request))
        return Redirect(f"/console/jobs/{job.public_id}")

    # ---- accounts ------------------------------------------------------------------------------

    @get("/accounts")
    async def accounts(request: Request[Any, Any, Any]) -> Template:
        query = request.query_params
        text = (query.get("q") or "").strip()[:100] or None
        found = await runtime.accounts.search(
            AccountQuery(
                q=text,
                dialect=_choice(query.get("dialect"), DIALECTS),
                before_id=_parse_int(query.get("cursor"), "cursor"),
                limit=PAGE + 1,
            )
        )
        page = found[:PAGE]
        more = None
        if len(found) > PAGE and page:
            more = urlencode({"q": text or "", "dialect": query.get("dialect") or "", "cursor": page[-1].id})
        return _page(request, "accounts.html", accounts=page, q=text or "", more=more, dialects=DIALECTS)

    async def account_page(
        request: Request[Any, Any, Any],
        account_id: int,
        *,
        cursor: int | None = None,
        purchases_cursor: int | None = None,
        rotated: Any = None,
    ) -> Template:
        """Keys, 30 days of usage, a page of purchases and a page of the ledger (keyset cursors)."""
        # independent reads, each on its own pooled connection (an unknown account: detail's NotFound)
        detail, ledger, found = await asyncio.gather(
            runtime.accounts.detail(account_id),
            statement_page(runtime.ledger, account_id, kind=None, before_id=cursor, limit=PAGE),
            list_purchases(
                runtime.db,
                PurchaseFilter(account_id=account_id, before_id=purchases_cursor, limit=PURCHASES_PAGE + 1),
            ),
        )
        purchases: list[PurchaseView] = found[:PURCHASES_PAGE]
        more_purchases = purchases[-1].id if len(found) > PURCHASES_PAGE and purchases else None
        return _page(
            request,
            "account.html",
            d=detail,
            ledger=ledger,
            usage_chart=_usage_chart(detail.usage),
            purchases=purchases,
            more_purchases=more_purchases,
            plans=PLANS,
            rotated=rotated,
        )

    @get("/accounts/{account_id:int}")
    async def account(request: Request[Any, Any, Any], account_id: FromPath[int]) -> Template:
        query = request.query_params
        return await account_page(
            request,
            account_id,
            cursor=_parse_int(query.get("cursor"), "cursor"),
            purchases_cursor=_parse_int(query.get("purchases_cursor"), "purchases_cursor"),
        )

    @post("/accounts/{account_id:int}/edit", opt={"role": "admin"})
    async def edit_account(request: Request[Any, Any, Any], account_id: FromPath[int]) -> Redirect:
        changes = patch_changes(_account_form(await request.form()))
        async with runtime.db.transaction():
            await runtime.accounts.update(_actor(operator_of(request)), account_id, changes)
        await runtime.callers.invalidate(account_ids=[account_id])  # after the commit
        return Redirect(f"/console/accounts/{account_id}")

    @get("/accounts/{account_id:int}/statement.csv")
    async def statement(account_id: FromPath[int]) -> Stream:
        lines: AsyncIterator[str] = await statement_csv(runtime.ledger, account_id)
        return Stream(
            lines,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="account-{account_id}.csv"'},
        )

    @post("/keys/{key_id:int}/disable", opt={"role": "support"})
    async def disable_key(request: Request[Any, Any, Any], key_id: FromPath[int]) -> Redirect:
        reason = await _reason(request)
        async with runtime.db.transaction():
            key = await runtime.accounts.set_key_disabled(
                _actor(operator_of(request)), key_id, disabled=True, reason=reason
            )
        await runtime.callers.invalidate(key_ids=[key_id])  # after the commit
        return Redirect(f"/console/accounts/{key.account_id}")

    @post("/keys/{key_id:int}/enable", opt={"role": "support"})
    async def enable_key(request: Request[Any, Any, Any], key_id: FromPath[int]) -> Redirect:
        reason = await _reason(request)
        async with runtime.db.transaction():
            key = await runtime.accounts.set_key_disabled(
                _actor(operator_of(request)), key_id, disabled=False, reason=reason
            )
        await runtime.callers.invalidate(key_ids=[key_id])
        return Redirect(f"/console/accounts/{key.account_id}")

    @post("/keys/{key_id:int}/rotate", opt={"role": "admin"})
    async def rotate_key(request: Request[Any, Any, Any], key_id: FromPath[int]) -> Template:
        form = await request.form()
        grace = _parse_int(str(form.get("grace_seconds") or "0"), "grace_seconds") or 0
        if grace > 30 * 86_400:
            raise InvalidRequest("at most 30 days", field="grace_seconds")
        async with runtime.db.transaction():
            rotated = await runtime.accounts.rotate(_actor(operator_of(request)), key_id, grace)
        await runtime.callers.invalidate(key_ids=[key_id])
        return await account_page(request, rotated.record.account_id, rotated=rotated)

    # ---- audit ---------------------------------------------------------------------------------

    @get("/audit")
    async def audit(request: Request[Any, Any, Any]) -> Template:
        query = request.query_params
        target_type, _, target_id = (query.get("target") or "").strip().partition(":")
        entries = await runtime.audit.search(
            AuditFilter(
                operator=(query.get("operator") or "").strip()[:100] or None,
                action=(query.get("action") or "").strip()[:100] or None,
                target_type=target_type or None,
                target_id=target_id or None,
                account_id=_parse_int(query.get("account"), "account"),
                since=_parse_when(query.get("since"), "since"),
                until=_parse_when(query.get("until"), "until"),
                before_id=_parse_int(query.get("cursor"), "cursor"),
                limit=PAGE + 1,
            )
        )
        page = entries[:PAGE]
        filters = {name: query.get(name) or "" for name in query if name != "cursor"}
        more = urlencode({**filters, "cursor": page[-1].id}) if len(entries) > PAGE and page else None
        return _page(request, "audit.html", entries=page, filters=filters, more=more)

    csrf = CSRFConfig(
        secret=_csrf_secret(root_token),
        cookie_name="tryon_console_csrf",
        cookie_path="/console",
        cookie_samesite="strict",
        cookie_httponly=True,
    )
    return Router(
        path="/console",
        route_handlers=[
            login_page,
            login,
            logout,
            overview,
            jobs,
            job,
            cancel,
            refund,
            rerun,
            accounts,
            account,
            edit_account,
            statement,
            disable_key,
            enable_key,
            rotate_key,
            audit,
        ],
        guards=[guard],
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
        dependencies={"runtime": Provide(lambda: runtime, sync_to_thread=False)},
        exception_handlers={
            SignInNeeded: _on_sign_in_needed,
            DomainError: _on_domain_error,
            HTTPException: _on_http_error,
        },
        include_in_schema=False,
    )


def _account_form(form: Any) -> PatchAccount:
    """The edit form as the admin API's PATCH body, validated by the same schema.

    Every field is sent (the service changes, and audits, only the ones that differ); an empty
    email clears it; ``plan`` is only on FtmvAI accounts' forms; a change of ``suspended`` needs the
    reason, which the service checks, like ``PATCH /admin/accounts/{id}``.
    """
    fields: dict[str, Any] = {"name": str(form.get("name") or ""), "suspended": form.get("suspended") == "on"}
    email = str(form.get("email") or "").strip()
    fields["email"] = email or None
    if form.get("plan"):
        fields["plan"] = str(form.get("plan"))
    reason = str(form.get("reason") or "").strip()
    if reason:
        fields["reason"] = reason
    try:
        return msgspec.convert(fields, PatchAccount)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc)) from exc


def _usage_chart(days: list[UsageDayRecord]) -> Markup:
    """Jobs submitted per UTC day over the last 30 days, quiet days as zero."""
    submitted = {day.day: day.jobs_submitted for day in days}
    today = datetime.now(UTC).date()
    span = [today - timedelta(days=back) for back in range(29, -1, -1)]
    return charts.columns([(day.isoformat(), float(submitted.get(day, 0))) for day in span])


def _csrf_secret(root_token: str) -> str:
    """Every process of one deployment must sign CSRF tokens alike; derive it from root's token.

    Without a root token (admin API off) each process draws its own, which suits ``dev``'s one
    process; a multi-process ``serve`` sets ``TRYON_ADMIN_TOKEN`` anyway.
    """
    if not root_token:
        return secrets.token_hex(32)
    return hashlib.sha256(b"tryon-console-csrf\x00" + root_token.encode()).hexdigest()
