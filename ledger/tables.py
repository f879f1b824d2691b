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
    email = Varchar(length=320, null=True)
    suspended = Boolean(default=False)
    suspended_reason = Text(null=True)
    erased_at = Timestamptz(null=True)


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
    expires_at = Timestamptz(null=True)
    last_used_at = Timestamptz(null=True)
    previous_key_hash = Varchar(length=64, null=True)
    previous_key_expires_at = Timestamptz(null=True)
    previous_webhook_secret = Varchar(length=100, null=True)
    previous_webhook_secret_expires_at = Timestamptz(null=True)


class LedgerEntry(Table, tablename="ledger_entries"):
    account = ForeignKey(Account)
    kind = Varchar(length=16)
    amount = Integer()
    balance_after = Integer()
    job_id = BigInt(null=True)
    reason = Text(default="")
    reference = Varchar(length=200, null=True, unique=True)
    created_at = Timestamptz()


class Operator(Table, tablename="operators"):
    """A named person with admin rights; ``root`` is the bootstrap operator of ``TRYON_ADMIN_TOKEN``."""

    name = Varchar(length=100, unique=True)
    role = Varchar(length=16)
    token_hash = Varchar(length=64, unique=True, null=True)
    token_hint = Varchar(length=32, default="")
    disabled = Boolean(default=False)
    created_at = Timestamptz()


class AuditEntry(Table, tablename="audit_log"):
    """One admin write: who, what, to which target, why, and the change. Append-only like the ledger."""

    operator = Varchar(length=100)
    action = Varchar(length=64)
    target_type = Varchar(length=16)
    target_id = Varchar(length=64)
    account = BigInt(null=True)
    reason = Text(default="")
    change = JSONB(default="{}")
    request_id = Varchar(length=128, null=True)
    created_at = Timestamptz()


class LedgerCheck(Table, tablename="ledger_checks"):
    """The result of each scheduled ``ledger verify``; the newest one is what ``/admin/health`` shows."""

    ok = Boolean()
    problems = JSONB(default="[]")
    checked_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (Account, ApiKey, LedgerEntry, Operator, AuditEntry, LedgerCheck)

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
    (
        "ledger_0002_operators_audit_key_lifecycle",
        [
            "ALTER TABLE accounts ADD COLUMN email varchar(320)",
            "ALTER TABLE accounts ADD COLUMN suspended boolean NOT NULL DEFAULT false",
            "ALTER TABLE accounts ADD COLUMN suspended_reason text",
            "ALTER TABLE accounts ADD COLUMN erased_at timestamptz",
            "CREATE INDEX accounts_name_lower ON accounts (lower(name) text_pattern_ops)",
            "CREATE INDEX accounts_email_lower ON accounts (lower(email) text_pattern_ops)",
            # A key's lifecycle: optional expiry, a cheaply kept last use, and a rotation's grace
            # period, during which the previous secret (and previous webhook secret) still work.
            "ALTER TABLE api_keys ADD COLUMN expires_at timestamptz",
            "ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz",
            "ALTER TABLE api_keys ADD COLUMN previous_key_hash varchar(64)",
            "ALTER TABLE api_keys ADD COLUMN previous_key_expires_at timestamptz",
            "ALTER TABLE api_keys ADD COLUMN previous_webhook_secret varchar(100)",
            "ALTER TABLE api_keys ADD COLUMN previous_webhook_secret_expires_at timestamptz",
            "CREATE UNIQUE INDEX api_keys_previous_hash ON api_keys (previous_key_hash)"
            " WHERE previous_key_hash IS NOT NULL",
            "CREATE INDEX api_keys_account ON api_keys (account, id)",
            "CREATE INDEX api_keys_hint ON api_keys (key_hint text_pattern_ops)",
            """CREATE TABLE operators (
                id bigserial PRIMARY KEY,
                name varchar(100) NOT NULL UNIQUE,
                role varchar(16) NOT NULL CHECK (role IN ('viewer', 'support', 'admin')),
                token_hash varchar(64) UNIQUE,
                token_hint varchar(32) NOT NULL DEFAULT '',
                disabled boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE audit_log (
                id bigserial PRIMARY KEY,
                operator varchar(100) NOT NULL,
                action varchar(64) NOT NULL,
                target_type varchar(16) NOT NULL,
                target_id varchar(64) NOT NULL,
                account bigint,
                reason text NOT NULL DEFAULT '',
                change jsonb NOT NULL DEFAULT '{}',
                request_id varchar(128),
                created_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE INDEX audit_log_operator ON audit_log (operator, id DESC)",
            "CREATE INDEX audit_log_action ON audit_log (action, id DESC)",
            "CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id DESC)",
            "CREATE INDEX audit_log_account ON audit_log (account, id DESC) WHERE account IS NOT NULL",
            "CREATE INDEX audit_log_created ON audit_log (created_at)",
            """CREATE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$""",
            """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
               FOR EACH ROW EXECUTE FUNCTION audit_log_immutable()""",
            """CREATE TABLE ledger_checks (
                id bigserial PRIMARY KEY,
                ok boolean NOT NULL,
                problems jsonb NOT NULL DEFAULT '[]',
                checked_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE INDEX ledger_entries_account_kind ON ledger_entries (account, kind, id)",
        ],
    ),
]
