"""The one job table every dialect's requests become, and remembered Idempotency-Keys.

``jobs.id`` is the per-deployment integer order number (FtmvAI shows it as
``order_id``); ``public_id`` (``job_…``) is what FitInView shows. Status moves
only forward: every transition is a conditional UPDATE on the current status,
so a redelivered message can neither run a job twice nor move it backwards.
"""

from __future__ import annotations

from piccolo.columns import JSONB, BigInt, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table

from ledger.tables import Account, ApiKey


class Job(Table, tablename="jobs"):
    public_id = Varchar(length=40, unique=True)
    account = ForeignKey(Account)
    api_key = ForeignKey(ApiKey)
    dialect = Varchar(length=16)
    kind = Varchar(length=16)
    mode = Varchar(length=8)
    backend = Varchar(length=32)
    status = Varchar(length=16, default="queued")
    stage = Varchar(length=32, default="accepted")
    progress = Integer(default=0)
    params = JSONB()
    inputs = JSONB()
    results = JSONB()
    error_code = Varchar(length=64, null=True)
    error_message = Text(null=True)
    cost_credits = Integer(default=0)
    credits_refunded = Integer(default=0)
    metadata = JSONB(null=True)
    seed = BigInt(null=True)
    webhook_url = Text(null=True)
    attempts = Integer(default=0)
    created_at = Timestamptz()
    started_at = Timestamptz(null=True)
    completed_at = Timestamptz(null=True)
    deadline_at = Timestamptz(null=True)
    duration_ms = Integer(null=True)
    report = JSONB()


class IdempotencyRecord(Table, tablename="idempotency_keys"):
    api_key = ForeignKey(ApiKey)
    key = Varchar(length=200)
    request_hash = Varchar(length=64)
    job = ForeignKey(Job)
    created_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (Job, IdempotencyRecord)

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "engine_0001_jobs_idempotency",
        [
            """CREATE TABLE jobs (
                id bigserial PRIMARY KEY,
                public_id varchar(40) NOT NULL UNIQUE,
                account bigint NOT NULL REFERENCES accounts(id),
                api_key bigint NOT NULL REFERENCES api_keys(id),
                dialect varchar(16) NOT NULL,
                kind varchar(16) NOT NULL,
                mode varchar(8) NOT NULL CHECK (mode IN ('live', 'test')),
                backend varchar(32) NOT NULL,
                status varchar(16) NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
                stage varchar(32) NOT NULL DEFAULT 'accepted',
                progress integer NOT NULL DEFAULT 0,
                params jsonb NOT NULL DEFAULT '{}',
                inputs jsonb NOT NULL DEFAULT '[]',
                results jsonb NOT NULL DEFAULT '[]',
                error_code varchar(64),
                error_message text,
                cost_credits integer NOT NULL DEFAULT 0,
                credits_refunded integer NOT NULL DEFAULT 0,
                metadata jsonb,
                seed bigint,
                webhook_url text,
                attempts integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL DEFAULT now(),
                started_at timestamptz,
                completed_at timestamptz,
                deadline_at timestamptz,
                duration_ms integer
            )""",
            "CREATE INDEX jobs_account_newest ON jobs (account, id DESC)",
            "CREATE INDEX jobs_key_newest ON jobs (api_key, id DESC)",
            "CREATE INDEX jobs_unfinished ON jobs (status, created_at) WHERE status IN ('queued', 'running')",
            """CREATE FUNCTION jobs_status_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF OLD.status IN ('succeeded', 'failed') AND NEW.status IS DISTINCT FROM OLD.status THEN
                   RAISE EXCEPTION 'job % is finished (%), it cannot become %',
                     OLD.id, OLD.status, NEW.status;
                 END IF;
                 IF OLD.status = 'running' AND NEW.status = 'queued' THEN
                   RAISE EXCEPTION 'job % cannot move back from running to queued', OLD.id;
                 END IF;
                 RETURN NEW;
               END $$""",
            """CREATE TRIGGER jobs_status_forward BEFORE UPDATE OF status ON jobs
               FOR EACH ROW EXECUTE FUNCTION jobs_status_forward_only()""",
            """CREATE TABLE idempotency_keys (
                id bigserial PRIMARY KEY,
                api_key bigint NOT NULL REFERENCES api_keys(id),
                key varchar(200) NOT NULL,
                request_hash varchar(64) NOT NULL,
                job bigint NOT NULL REFERENCES jobs(id),
                created_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (api_key, key)
            )""",
        ],
    ),
    (
        "engine_0002_job_generation_report",
        [
            # What ops need about each generation: model version, tokens, latency, prompt
            # version, quality-gate verdicts. Free-form on purpose: it differs per backend.
            "ALTER TABLE jobs ADD COLUMN report jsonb NOT NULL DEFAULT '{}'",
        ],
    ),
]
