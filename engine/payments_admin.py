"""Ops' view of credit purchases: each PaymentIntent, its status, its credits and what was reversed.

A purchase row (:mod:`engine.payments`) remembers the pack and the PaymentIntent; the credits it
actually brought and took back live in the ledger (the grant's ``reference`` is ``pi:<id>``, each
reversal's ``reversal:<id>:<stripe event>``), so the list shows both and an operator can see at
a glance whether a purchase was granted, refunded or disputed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ledger.database import Database

MAX_ID = 2**63 - 1


class PurchaseView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    account_id: int
    key_id: int
    pack_slug: str
    payment_intent_id: str | None
    status: str
    credits: int
    """The pack's credits (what a successful payment grants)."""
    credits_granted: int
    """What the ledger actually granted for this PaymentIntent (0 until it succeeded)."""
    credits_reversed: int
    """What refunds and lost disputes took back (positive)."""
    reversals: int
    """How many reversal entries there are."""
    created_at: datetime
    updated_at: datetime


class PurchaseFilter(msgspec.Struct, frozen=True, kw_only=True):
    account_id: int | None = None
    status: str | None = None
    before_id: int | None = None
    limit: int = 50


async def list_purchases(db: Database, query: PurchaseFilter) -> list[PurchaseView]:
    """Purchases newest first (keyset on id), with the ledger's grant and reversals of each."""
    rows: list[dict[str, Any]] = await db.fetch(
        """SELECT p.*,
                  COALESCE(g.amount, 0) AS credits_granted,
                  COALESCE(r.taken, 0) AS credits_reversed,
                  COALESCE(r.n, 0) AS reversals
           FROM purchases p
           LEFT JOIN ledger_entries g ON g.reference = 'pi:' || p.payment_intent_id
           LEFT JOIN LATERAL (
               SELECT -SUM(e.amount) AS taken, count(*) AS n FROM ledger_entries e
               WHERE e.account = p.account AND e.kind = 'reversal'
                 AND starts_with(e.reference, 'reversal:' || p.payment_intent_id || ':')
           ) r ON p.payment_intent_id IS NOT NULL
           WHERE ($1::bigint IS NULL OR p.account = $1)
             AND ($2::text IS NULL OR p.status = $2)
             AND p.id < $3
           ORDER BY p.id DESC LIMIT $4""",
        query.account_id,
        query.status,
        MAX_ID if query.before_id is None else query.before_id,
        query.limit,
    )
    return [
        PurchaseView(
            id=row["id"],
            account_id=row["account"],
            key_id=row["api_key"],
            pack_slug=row["pack_slug"],
            payment_intent_id=row["payment_intent_id"],
            status=row["status"],
            credits=row["credits"],
            credits_granted=int(row["credits_granted"]),
            credits_reversed=int(row["credits_reversed"]),
            reversals=int(row["reversals"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]
