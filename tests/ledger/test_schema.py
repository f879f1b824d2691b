"""The Piccolo table classes describe exactly the columns the migrations create."""

from __future__ import annotations

import asyncpg
import pytest
from piccolo.table import Table

from engine.history_indexes import TABLES as HISTORY_TABLES
from engine.payments import TABLES as PAYMENT_TABLES
from engine.tables import TABLES as ENGINE_TABLES
from engine.webhooks import TABLES as WEBHOOK_TABLES
from ledger.tables import TABLES as LEDGER_TABLES


@pytest.mark.parametrize(
    "table",
    LEDGER_TABLES + ENGINE_TABLES + WEBHOOK_TABLES + PAYMENT_TABLES + HISTORY_TABLES,
    ids=lambda t: t._meta.tablename,
)
async def test_table_columns_match_the_database(database_url: str, table: type[Table]) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table._meta.tablename
        )
    finally:
        await connection.close()
    in_database = {row["column_name"] for row in rows}
    declared = {column._meta.db_column_name for column in table._meta.columns}
    assert declared == in_database
