"""Who is calling: the authenticated key and its account, as the gateway resolved them.

The gateway builds a :class:`Caller` from the bearer token and injects it into
dialect routes; the engine only reads it (dialect, mode, account, key).
"""

from __future__ import annotations

import msgspec

from ledger.models import AccountRecord, ApiKeyRecord


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKeyRecord
    account: AccountRecord

    @property
    def is_test(self) -> bool:
        return self.key.mode == "test"

    @property
    def dialect(self) -> str:
        return self.key.dialect


class RateVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """The state of the window closest to running out after this request was counted.

    Dialects that publish limits (FtmvAI's ``X-RateLimit-*``) render it; ``reset``
    is in unix seconds.
    """

    limit: int
    remaining: int
    reset: int
    scope: str
