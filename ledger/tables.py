"""Accounts, their API keys, and the append-only credit ledger.

The DDL is written out in :data:`MIGRATIONS` (versioned, applied by
``tryon-gateway migrate``) so constraints the ORM can't express live in the
database itself: one test key per account, one debit and at most one refund per
job, and ledger entries that can never be updated or deleted.
"""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class Account(Table, tablename="accounts"):
    name = Varchar(length=200)
    dialect = Varchar(length=16)
    plan = Varchar(length=16, default="paid")
    balance = Integer(default=0)
    prices = JSONB(default="{}")
    created_at = Timestamptz()


class ApiKey(Table, tablename="api_keys"):
    account = ForeignKey(Account)
    dialect = Varchar(length=16)
    mode = Varchar(length=8)
    name = Varchar(length=200)
    key_hash = Varchar(length=64, unique=True)
    key_hint = Varchar(length=32)
    webhook_secret = Varchar(length=100, null=True)
    disabled = Boolean(default=False)
    disabled_reason = Text(null=True)
    created_at = Timestamptz()


class LedgerEntry(Table, tablename="ledger_entries"):
    account = ForeignKey(Account)
    kind = Varchar(length=16)
    amount = Integer()
    balance_after = Integer()
    job_id = BigInt(null=True)
    reason = Text(default="")
    reference = Varchar(length=200, null=True, unique=True)
    created_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (Account, ApiKey, LedgerEntry)

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "ledger_0001_accounts_keys_entries",
        [
            """CREATE TABLE accounts (
                id bigserial PRIMARY KEY,
                name varchar(200) NOT NULL,
                dialect varchar(16) NOT NULL CHECK (dialect IN ('fitinview', 'ftmvai')),
                plan varchar(16) NOT NULL DEFAULT 'paid' CHECK (plan IN ('free', 'paid')),
                balance integer NOT NULL DEFAULT 0,
                prices jsonb NOT NULL DEFAULT '{}',
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE api_keys (
                id bigserial PRIMARY KEY,
                account bigint NOT NULL REFERENCES accounts(id),
                dialect varchar(16) NOT NULL,
                mode varchar(8) NOT NULL CHECK (mode IN ('live', 'test')),
                name varchar(200) NOT NULL DEFAULT '',
                key_hash varchar(64) NOT NULL UNIQUE,
                key_hint varchar(32) NOT NULL,
                webhook_secret varchar(100),
                disabled boolean NOT NULL DEFAULT false,
                disabled_reason text,
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE UNIQUE INDEX api_keys_one_test_key ON api_keys (account) WHERE mode = 'test'",
            """CREATE TABLE ledger_entries (
                id bigserial PRIMARY KEY,
                account bigint NOT NULL REFERENCES accounts(id),
                kind varchar(16) NOT NULL
                    CHECK (kind IN ('grant', 'debit', 'refund', 'adjust', 'purchase', 'reversal')),
                amount integer NOT NULL,
                balance_after integer NOT NULL,
                job_id bigint,
                reason text NOT NULL DEFAULT '',
                reference varchar(200) UNIQUE,
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE INDEX ledger_entries_account ON ledger_entries (account, id)",
            """CREATE UNIQUE INDEX ledger_entries_once_per_job ON ledger_entries (job_id, kind)
               WHERE kind IN ('debit', 'refund')""",
            """CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'ledger entries are append-only'; END $$""",
            """CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
               FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()""",
        ],
    ),
]
