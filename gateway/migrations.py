"""``tryon-gateway migrate``: the database schema and the object storage bucket."""

from __future__ import annotations

from engine.console_indexes import MIGRATIONS as CONSOLE_INDEX_MIGRATIONS
from engine.history_indexes import MIGRATIONS as HISTORY_INDEX_MIGRATIONS
from engine.payments import MIGRATIONS as PAYMENT_MIGRATIONS
from engine.tables import MIGRATIONS as ENGINE_MIGRATIONS
from engine.webhooks import MIGRATIONS as WEBHOOK_MIGRATIONS
from ledger.database import apply_migrations
from ledger.tables import MIGRATIONS as LEDGER_MIGRATIONS
from storage.objects import ObjectStore

ALL_MIGRATIONS = (
    LEDGER_MIGRATIONS
    + ENGINE_MIGRATIONS
    + WEBHOOK_MIGRATIONS
    + PAYMENT_MIGRATIONS
    + CONSOLE_INDEX_MIGRATIONS
    + HISTORY_INDEX_MIGRATIONS
)


async def migrate(database_url: str, store: ObjectStore) -> list[str]:
    applied = await apply_migrations(database_url, ALL_MIGRATIONS)
    await store.ensure_bucket()
    return applied
