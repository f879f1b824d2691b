"""What operators do to accounts, keys and balances, each write audited in the same transaction.

The admin API, the CLI and the console call these; they run in the caller's transaction
and never commit. Every money movement and every key disable needs a reason
(:func:`ledger.audit.require_reason`); so do suspending, unsuspending and erasing.

Key rotation keeps the key's row (its id, name, settings and history, so usage and the audit
trail follow it) and gives it a new secret; the replaced secret's hash stays in
``previous_key_hash`` until ``previous_key_expires_at`` and authenticates until then
(:meth:`ledger.repository.LedgerRepository.key_by_hash`). Rotating again inside a grace
period ends the older secret's grace at once: at most two secrets work at any moment.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ledger.audit import AuditLog, require_reason
from ledger.errors import Conflict, InvalidRequest, NotFound
from ledger.keys import Dialect, KeyMode, dialect_of_token, hash_key, key_hint, new_key, new_webhook_secret
from ledger.models import AccountRecord, Actor, ApiKeyRecord, MintedKey, RotatedKey, UsageDayRecord
from ledger.service import LedgerService

PLANS = ("free", "paid")
USAGE_DAYS = 30
"""How many days of usage an account's detail shows (from ``usage_daily``, never ``jobs``)."""
MIN_KEY_PREFIX = 4
"""A search shorter than this does not match key prefixes (one hex digit would match 1/16 of keys)."""
MAX_GRACE_SECONDS = 30 * 86_400


class AccountChanges(msgspec.Struct, frozen=True, kw_only=True):
    """A PATCH of an account: only the fields given change (``UNSET`` leaves one as it is).

    ``prices`` replaces the account's price overrides as a whole (``{}`` clears them);
    ``email`` may be set to None to clear it. ``reason`` is required when ``suspended`` changes.
    """

    name: str | msgspec.UnsetType = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    plan: str | msgspec.UnsetType = msgspec.UNSET
    prices: dict[str, int] | msgspec.UnsetType = msgspec.UNSET
    suspended: bool | msgspec.UnsetType = msgspec.UNSET
    reason: str | None = None


class AccountDetailRecord(msgspec.Struct, frozen=True, kw_only=True):
    account: AccountRecord
    ledger_sum: int
    keys: list[ApiKeyRecord]
    usage: list[UsageDayRecord]
    """One row per UTC day with activity in the last :data:`USAGE_DAYS` days, oldest first."""


class AccountQuery(msgspec.Struct, frozen=True, kw_only=True):
    q: str | None = None
    dialect: str | None = None
    plan: str | None = None
    before_id: int | None = None
    limit: int = 50


def _prefix_range(prefix: str) -> tuple[str, str]:
    """The byte-wise range ``[prefix, upper)`` holding exactly the strings that start with ``prefix``.

    UTF-8 keeps code point order byte-wise, so raising the last character by one bounds the range.
    """
    last = ord(prefix[-1])
    if last >= 0x10FFFF or 0xD7FF <= last < 0xE000:
        return prefix, prefix + "\U0010ffff"
    return prefix, prefix[:-1] + chr(last + 1)


def mask_email(email: str | None) -> str | None:
    """``j***@example.com``: enough for ops to recognise a change in the append-only audit log,
    which an erasure cannot scrub, without keeping the address there."""
    if not email:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _audited(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: mask_email(value) if name == "email" else value for name, value in fields.items()}


def _now() -> datetime:
    return datetime.now(UTC)


class AccountAdmin:
    def __init__(
        self, ledger: LedgerService, audit: AuditLog, *, price_names: Collection[str] | None = None
    ) -> None:
        self.ledger = ledger
        self.repo = ledger.repo
        self.audit = audit
        self.price_names = frozenset(price_names) if price_names is not None else None
        """The price book's names an override may set (the engine passes them; the ledger
        doesn't know the engine's price book). None: only the ``<dialect>.`` prefix is checked."""

    async def open_account(
        self, actor: Actor, *, name: str, dialect: Dialect, plan: str, credits: int
    ) -> AccountRecord:
        if not name.strip():
            raise InvalidRequest("name must not be empty", field="name")
        if credits < 0:
            raise InvalidRequest("credits must not be negative", field="credits")
        if plan not in PLANS:
            raise InvalidRequest(f"plan must be one of {', '.join(PLANS)}", field="plan")
        account = await self.ledger.open_account(name=name, dialect=dialect, plan=plan, credits=credits)
        await self.audit.record(
            actor,
            "account.create",
            target_type="account",
            target_id=account.id,
            account_id=account.id,
            after={"name": name, "dialect": dialect, "plan": plan, "credits": credits},
        )
        return account

    async def mint_key(
        self, actor: Actor, account_id: int, *, mode: KeyMode, name: str, expires_at: datetime | None = None
    ) -> MintedKey:
        if (await self.ledger.account(account_id)).erased_at is not None:
            raise Conflict("Account is erased: it gets no new keys")
        minted = await self.ledger.mint_key(account_id, mode=mode, name=name, expires_at=expires_at)
        await self.audit.record(
            actor,
            "key.create",
            target_type="key",
            target_id=minted.record.id,
            account_id=account_id,
            after={"mode": mode, "name": name, "prefix": minted.record.key_hint, "expires_at": expires_at},
        )
        return minted

    async def adjust_credits(self, actor: Actor, account_id: int, amount: int, reason: str) -> int:
        """A grant (positive) or a correction (negative, never below zero). Returns the balance."""
        reason = require_reason(reason)
        if amount == 0:
            raise InvalidRequest("amount must not be zero", field="amount")
        before = await self.ledger.balance(account_id)
        balance = await self.ledger.adjust(account_id, amount, reason=reason)
        await self.audit.record(
            actor,
            "credits.grant" if amount > 0 else "credits.adjust",
            target_type="account",
            target_id=account_id,
            account_id=account_id,
            reason=reason,
            before={"balance": before},
            after={"balance": balance, "amount": amount},
        )
        return balance

    async def set_key_disabled(
        self, actor: Actor, key_id: int, *, disabled: bool, reason: str | None
    ) -> ApiKeyRecord:
        text = require_reason(reason) if disabled else (reason or "").strip()
        before = await self.ledger.key(key_id)
        if not disabled and (await self.ledger.account(before.account_id)).erased_at is not None:
            raise Conflict("Account is erased: its keys stay disabled")
        key = await self.ledger.set_key_disabled(key_id, disabled=disabled, reason=text or None)
        await self.audit.record(
            actor,
            "key.disable" if disabled else "key.enable",
            target_type="key",
            target_id=key_id,
            account_id=key.account_id,
            reason=text,
            before={"disabled": before.disabled, "disabled_reason": before.disabled_reason},
            after={"disabled": key.disabled, "disabled_reason": key.disabled_reason},
        )
        return key

    async def record_key_uses(self, key_ids: list[int], used_at: list[datetime]) -> int:
        """Move the keys' ``last_used_at`` forward (batched by :mod:`engine.key_usage`; not audited:
        no operator did anything)."""
        if not key_ids:
            return 0
        return await self.repo.touch_keys(key_ids, used_at)

    # reading ------------------------------------------------------------------------------
    async def search(self, query: AccountQuery) -> list[AccountRecord]:
        """Accounts newest first; ``q`` matches an id, a name or email prefix (any case), a key
        prefix (4+ characters, as ``key_hint`` shows it) or a whole pasted key."""
        q = (query.q or "").strip()
        if not q:
            return await self.repo.search_accounts(
                account_id=None,
                text_from=None,
                text_to=None,
                hint_from=None,
                hint_to=None,
                key_hash=None,
                dialect=query.dialect,
                plan=query.plan,
                before_id=query.before_id,
                limit=query.limit,
            )
        account_id = int(q) if q.isdecimal() and len(q) <= 18 else None
        text_from, text_to = _prefix_range(q.lower())
        hint = q.rstrip("…")[:12]
        hint_from, hint_to = _prefix_range(hint) if len(hint) >= MIN_KEY_PREFIX else (None, None)
        return await self.repo.search_accounts(
            account_id=account_id,
            text_from=text_from,
            text_to=text_to,
            hint_from=hint_from,
            hint_to=hint_to,
            key_hash=hash_key(q) if dialect_of_token(q) else None,
            dialect=query.dialect,
            plan=query.plan,
            before_id=query.before_id,
            limit=query.limit,
        )

    async def detail(self, account_id: int) -> AccountDetailRecord:
        account = await self.ledger.account(account_id)
        since = (_now() - timedelta(days=USAGE_DAYS - 1)).date()
        return AccountDetailRecord(
            account=account,
            ledger_sum=await self.ledger.ledger_sum(account_id),
            keys=await self.repo.account_keys(account_id),
            usage=await self.repo.usage_days(account_id, since),
        )

    async def keys(self, account_id: int) -> list[ApiKeyRecord]:
        await self.ledger.account(account_id)
        return await self.repo.account_keys(account_id)

    # changing an account ------------------------------------------------------------------
    def _check_prices(self, account: AccountRecord, prices: dict[str, int]) -> dict[str, int]:
        for name, value in prices.items():
            known = self.price_names is None or name in self.price_names
            if not known or not name.startswith(account.dialect + "."):
                allowed = sorted(n for n in self.price_names or () if n.startswith(account.dialect + "."))
                raise InvalidRequest(
                    f"unknown price {name!r} for a {account.dialect} account"
                    + (f"; one of {', '.join(allowed)}" if allowed else ""),
                    field="prices",
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRequest(f"price {name!r} must be a whole number >= 0", field="prices")
        return dict(sorted(prices.items()))

    async def update(self, actor: Actor, account_id: int, changes: AccountChanges) -> AccountRecord:
        """Apply a PATCH under the account's row lock; one audit entry for the fields that changed
        (``account.update``) and one for a change of ``suspended`` (``account.suspend`` /
        ``account.unsuspend``, which needs a reason). Nothing changes: no entry."""
        account = await self.repo.account_for_update(account_id)
        if account is None:
            raise NotFound("Account not found")
        if account.erased_at is not None:
            raise Conflict("Account is erased")
        new: dict[str, Any] = {}
        if changes.name is not msgspec.UNSET:
            if not changes.name.strip():
                raise InvalidRequest("name must not be empty", field="name")
            new["name"] = changes.name
        if changes.email is not msgspec.UNSET:
            new["email"] = changes.email or None
        if changes.plan is not msgspec.UNSET:
            if changes.plan not in PLANS:
                raise InvalidRequest(f"plan must be one of {', '.join(PLANS)}", field="plan")
            if account.dialect != "ftmvai" and changes.plan != account.plan:
                raise InvalidRequest("plan applies to FtmvAI accounts only", field="plan")
            new["plan"] = changes.plan
        if changes.prices is not msgspec.UNSET:
            new["prices"] = self._check_prices(account, changes.prices)
        current: dict[str, Any] = {
            "name": account.name,
            "email": account.email,
            "plan": account.plan,
            "prices": {name: int(value) for name, value in sorted(account.prices.items())},
        }
        changed = {field: value for field, value in new.items() if current[field] != value}
        suspend_to = changes.suspended if changes.suspended is not msgspec.UNSET else account.suspended
        suspending = suspend_to != account.suspended
        reason = require_reason(changes.reason) if suspending else (changes.reason or "").strip()
        if not changed and not suspending:
            return account
        merged = current | changed
        updated = await self.repo.update_account(
            account_id,
            name=merged["name"],
            email=merged["email"],
            plan=merged["plan"],
            prices=merged["prices"],
            suspended=suspend_to,
            suspended_reason=(reason if suspend_to else None) if suspending else account.suspended_reason,
        )
        if changed:
            await self.audit.record(
                actor,
                "account.update",
                target_type="account",
                target_id=account_id,
                account_id=account_id,
                reason=reason,
                before=_audited({field: current[field] for field in changed}),
                after=_audited(changed),
            )
        if suspending:
            await self.audit.record(
                actor,
                "account.suspend" if suspend_to else "account.unsuspend",
                target_type="account",
                target_id=account_id,
                account_id=account_id,
                reason=reason,
                before={"suspended": account.suspended, "suspended_reason": account.suspended_reason},
                after={"suspended": updated.suspended, "suspended_reason": updated.suspended_reason},
            )
        return updated

    async def set_suspended(
        self, actor: Actor, account_id: int, *, suspended: bool, reason: str | None
    ) -> AccountRecord:
        """Suspend (or lift it): the account's keys are refused with 403; queued jobs still finish."""
        return await self.update(actor, account_id, AccountChanges(suspended=suspended, reason=reason))

    # rotating keys ------------------------------------------------------------------------
    @staticmethod
    def _grace(grace_seconds: int) -> int:
        if grace_seconds < 0 or grace_seconds > MAX_GRACE_SECONDS:
            raise InvalidRequest(
                f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}", field="grace_seconds"
            )
        return grace_seconds

    async def _rotatable(self, key_id: int) -> ApiKeyRecord:
        key = await self.ledger.key(key_id)
        account = await self.ledger.account(key.account_id)
        if account.erased_at is not None:
            raise Conflict("Account is erased")
        return key

    async def rotate(self, actor: Actor, key_id: int, grace_seconds: int) -> RotatedKey:
        """A new secret for the same key row, shown once; the old one works ``grace_seconds`` more."""
        grace = self._grace(grace_seconds)
        key = await self._rotatable(key_id)
        plaintext = new_key(key.dialect, key.mode)
        rotated = await self.repo.rotate_key(
            key_id, key_hash=hash_key(plaintext), key_hint=key_hint(plaintext), grace_seconds=grace
        )
        if rotated is None:
            raise NotFound("Key not found")
        await self.audit.record(
            actor,
            "key.rotate",
            target_type="key",
            target_id=key_id,
            account_id=key.account_id,
            before={"prefix": key.key_hint},
            after={
                "prefix": rotated.key_hint,
                "grace_seconds": grace,
                "previous_valid_until": rotated.previous_key_expires_at,
            },
        )
        return RotatedKey(
            record=rotated, plaintext=plaintext, previous_valid_until=rotated.previous_key_expires_at
        )

    async def rotate_webhook_secret(self, actor: Actor, key_id: int, grace_seconds: int) -> RotatedKey:
        """A new ``whsec_…`` for a FitInView key, shown once; during the grace deliveries are
        signed with both (:mod:`engine.webhooks`)."""
        grace = self._grace(grace_seconds)
        key = await self._rotatable(key_id)
        if key.dialect != "fitinview":
            raise Conflict("Only FitInView keys have a webhook secret")
        secret = new_webhook_secret()
        rotated = await self.repo.rotate_webhook_secret(key_id, secret=secret, grace_seconds=grace)
        if rotated is None:
            raise NotFound("Key not found")
        await self.audit.record(
            actor,
            "key.webhook_secret.rotate",
            target_type="key",
            target_id=key_id,
            account_id=key.account_id,
            after={
                "grace_seconds": grace,
                "previous_valid_until": rotated.previous_webhook_secret_expires_at,
            },
        )
        return RotatedKey(
            record=rotated,
            webhook_secret=secret,
            previous_valid_until=rotated.previous_webhook_secret_expires_at,
        )
