"""Console sign-in: an operator token becomes a server-side session in Redis.

The browser only holds a random session id (an HttpOnly, SameSite=Strict cookie); the token
itself is never stored, only its hash, so that every request re-reads the operator and a
disabled operator or a changed role takes effect at once, as on the admin API.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import msgspec
from redis.asyncio import Redis

from engine.runtime import Runtime
from ledger.models import OperatorRecord
from ledger.operators import ROOT_OPERATOR, hash_token

COOKIE = "tryon_console"
_ID_BYTES = 32


class StoredSession(msgspec.Struct, frozen=True, kw_only=True):
    root: bool
    token_hash: str
    """sha256 of the operator token (root's too), never the token."""


class SessionStore:
    def __init__(self, redis: Redis, namespace: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.namespace = namespace
        self.ttl_seconds = ttl_seconds

    def _key(self, session_id: str) -> str:
        return f"{self.namespace}:console:session:{session_id}"

    async def create(self, operator: OperatorRecord, token: str) -> str:
        session_id = secrets.token_urlsafe(_ID_BYTES)
        stored = StoredSession(root=operator is ROOT_OPERATOR, token_hash=hash_token(token))
        await self.redis.set(self._key(session_id), msgspec.json.encode(stored), ex=self.ttl_seconds)
        return session_id

    async def delete(self, session_id: str) -> None:
        await self.redis.delete(self._key(session_id))

    async def operator(
        self, runtime: Runtime, session_id: str | None, root_token: str
    ) -> OperatorRecord | None:
        """The session's operator as of now; None for no, an expired or a revoked session."""
        if not session_id or len(session_id) > 100:
            return None
        raw: Any = await self.redis.get(self._key(session_id))
        if raw is None:
            return None
        stored = msgspec.json.decode(raw, type=StoredSession)
        if stored.root:
            # a changed TRYON_ADMIN_TOKEN ends root's sessions
            same = bool(root_token) and hmac.compare_digest(stored.token_hash, hash_token(root_token))
            return ROOT_OPERATOR if same else None
        operator = await runtime.operators.repo.by_token_hash(stored.token_hash)
        if operator is None or operator.disabled:
            return None
        return operator
