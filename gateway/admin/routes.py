"""The minimal admin routes ops use: accounts, keys, credits. Bearer ``TRYON_ADMIN_TOKEN``.

Errors are ``{"detail": "…"}``. Every write runs in one transaction owned here.
"""

from __future__ import annotations

import hmac
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath

from engine.errors import (
    AccessDenied,
    Conflict,
    DomainError,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from engine.runtime import Runtime
from gateway.admin import service
from gateway.admin.schemas import (
    AccountDetail,
    AccountOut,
    Balance,
    CreateAccount,
    CreateKey,
    GrantCredits,
    KeyCreated,
    KeyState,
)
from gateway.admin.webhooks import build_webhook_admin_routes
from gateway.auth import bearer_token

T = TypeVar("T")


def _decode(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc)) from None
    except msgspec.DecodeError:
        raise InvalidRequest("Request body must be valid JSON") from None


@post("/accounts", status_code=201)
async def create_account(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> AccountOut:
    body = _decode(await request.body(), CreateAccount)
    async with runtime.db.transaction():
        account = await service.open_account(runtime, body)
    return account


@get("/accounts/{account_id:int}")
async def get_account(account_id: FromPath[int], runtime: NamedDependency[Runtime]) -> AccountDetail:
    return await service.account_detail(runtime, account_id)


@post("/accounts/{account_id:int}/keys", status_code=201)
async def create_key(
    account_id: FromPath[int], request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> KeyCreated:
    body = _decode(await request.body(), CreateKey)
    async with runtime.db.transaction():
        minted = await service.mint_key(runtime, account_id, body)
    return minted


@post("/accounts/{account_id:int}/credits", status_code=200)
async def grant_credits(
    account_id: FromPath[int], request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> Balance:
    body = _decode(await request.body(), GrantCredits)
    async with runtime.db.transaction():
        balance = await service.adjust_credits(runtime, account_id, body.amount, body.reason)
    return Balance(credits_remaining=balance)


@post("/keys/{key_id:int}/disable", status_code=200)
async def disable_key(key_id: FromPath[int], runtime: NamedDependency[Runtime]) -> KeyState:
    async with runtime.db.transaction():
        state = await service.set_key_disabled(runtime, key_id, True)
    return state


@post("/keys/{key_id:int}/enable", status_code=200)
async def enable_key(key_id: FromPath[int], runtime: NamedDependency[Runtime]) -> KeyState:
    async with runtime.db.transaction():
        state = await service.set_key_disabled(runtime, key_id, False)
    return state


_STATUS: list[tuple[type[DomainError], int]] = [
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (InsufficientCredits, 409),
    (AccessDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
]


def _domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, str]]:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    detail = exc.message
    if isinstance(exc, InsufficientCredits):
        detail = f"balance {exc.available} does not cover {exc.required}"
    return Response({"detail": detail}, status_code=status)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    status = 400 if exc.status_code == 422 else exc.status_code
    return Response({"detail": str(exc.detail)}, status_code=status)


def build_admin_router(admin_token: str, runtime: NamedDependency[Runtime]) -> Router:
    async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = bearer_token(connection)
        if not admin_token or token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise Unauthenticated("Missing or invalid admin token")

    return Router(
        path="/admin",
        route_handlers=[
            create_account,
            get_account,
            create_key,
            grant_credits,
            disable_key,
            enable_key,
            *build_webhook_admin_routes(),
        ],
        guards=[require_admin],
        dependencies={"runtime": Provide(lambda: runtime, sync_to_thread=False)},
        exception_handlers={DomainError: _domain_error, HTTPException: _http_error},
        include_in_schema=False,
    )
