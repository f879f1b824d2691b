"""The one job table every dialect's requests become, and remembered Idempotency-Keys.

``jobs.id`` is the per-deployment integer order number (FtmvAI shows it as
``order_id``); ``public_id`` (``job_…``) is what FitInView shows. Status moves
only forward: every transition is a conditional UPDATE on the current status,
so a redelivered message can neither run a job twice nor move it backwards.
"""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    BigInt,
    Date,
    DoublePrecision,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
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
    rerun_of = BigInt(null=True)
    purged_at = Timestamptz(null=True)


class IdempotencyRecord(Table, tablename="idempotency_keys"):
    api_key = ForeignKey(ApiKey)
    key = Varchar(length=200)
    request_hash = Varchar(length=64)
    job = ForeignKey(Job)
    created_at = Timestamptz()


class UsageDay(Table, tablename="usage_daily"):
    """Usage per UTC day, account, dialect and backend, kept by triggers in the transactions that
    create jobs, finish them and move credits, so usage reports never scan ``jobs``."""

    day = Date()
    account = BigInt()
    dialect = Varchar(length=16)
    backend = Varchar(length=32)
    jobs_submitted = Integer(default=0)
    jobs_succeeded = Integer(default=0)
    jobs_failed = Integer(default=0)
    credits_debited = BigInt(default=0)
    credits_refunded = BigInt(default=0)
    credits_granted = BigInt(default=0)
    credits_purchased = BigInt(default=0)
    credits_adjusted = BigInt(default=0)
    credits_reversed = BigInt(default=0)
    generation_seconds = DoublePrecision(default=0)


TABLES: tuple[type[Table], ...] = (Job, IdempotencyRecord, UsageDay)

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
    (
        "engine_0003_ops_reruns_retention_usage",
        [
            # A re-run is a new job linked to the one it repeats; retention marks purged jobs.
            "ALTER TABLE jobs ADD COLUMN rerun_of bigint REFERENCES jobs(id)",
            "ALTER TABLE jobs ADD COLUMN purged_at timestamptz",
            "CREATE INDEX jobs_rerun_of ON jobs (rerun_of) WHERE rerun_of IS NOT NULL",
            # The admin search's filters, newest first, and the retention purge's scan.
            "CREATE INDEX jobs_account_status_newest ON jobs (account, status, id DESC)",
            "CREATE INDEX jobs_status_newest ON jobs (status, id DESC)",
            "CREATE INDEX jobs_error_code_newest ON jobs (error_code, id DESC) WHERE error_code IS NOT NULL",
            "CREATE INDEX jobs_unpurged_created ON jobs (created_at) WHERE purged_at IS NULL",
            """CREATE TABLE usage_daily (
                id bigserial PRIMARY KEY,
                day date NOT NULL,
                account bigint NOT NULL,
                dialect varchar(16) NOT NULL,
                backend varchar(32) NOT NULL,
                jobs_submitted integer NOT NULL DEFAULT 0,
                jobs_succeeded integer NOT NULL DEFAULT 0,
                jobs_failed integer NOT NULL DEFAULT 0,
                credits_debited bigint NOT NULL DEFAULT 0,
                credits_refunded bigint NOT NULL DEFAULT 0,
                credits_granted bigint NOT NULL DEFAULT 0,
                credits_purchased bigint NOT NULL DEFAULT 0,
                credits_adjusted bigint NOT NULL DEFAULT 0,
                credits_reversed bigint NOT NULL DEFAULT 0,
                generation_seconds double precision NOT NULL DEFAULT 0,
                UNIQUE (day, account, dialect, backend)
            )""",
            "CREATE INDEX usage_daily_account ON usage_daily (account, day)",
            """CREATE FUNCTION usage_bump(p_day date, p_account bigint, p_dialect text, p_backend text,
                   p_submitted integer, p_succeeded integer, p_failed integer, p_debited bigint,
                   p_refunded bigint, p_granted bigint, p_purchased bigint, p_adjusted bigint,
                   p_reversed bigint, p_seconds double precision) RETURNS void LANGUAGE sql AS $$
                 INSERT INTO usage_daily AS u (day, account, dialect, backend, jobs_submitted, jobs_succeeded,
                     jobs_failed, credits_debited, credits_refunded, credits_granted, credits_purchased,
                     credits_adjusted, credits_reversed, generation_seconds)
                 VALUES (p_day, p_account, p_dialect, p_backend, p_submitted, p_succeeded, p_failed,
                     p_debited, p_refunded, p_granted, p_purchased, p_adjusted, p_reversed, p_seconds)
                 ON CONFLICT (day, account, dialect, backend) DO UPDATE SET
                     jobs_submitted = u.jobs_submitted + EXCLUDED.jobs_submitted,
                     jobs_succeeded = u.jobs_succeeded + EXCLUDED.jobs_succeeded,
                     jobs_failed = u.jobs_failed + EXCLUDED.jobs_failed,
                     credits_debited = u.credits_debited + EXCLUDED.credits_debited,
                     credits_refunded = u.credits_refunded + EXCLUDED.credits_refunded,
                     credits_granted = u.credits_granted + EXCLUDED.credits_granted,
                     credits_purchased = u.credits_purchased + EXCLUDED.credits_purchased,
                     credits_adjusted = u.credits_adjusted + EXCLUDED.credits_adjusted,
                     credits_reversed = u.credits_reversed + EXCLUDED.credits_reversed,
                     generation_seconds = u.generation_seconds + EXCLUDED.generation_seconds
               $$""",
            """CREATE FUNCTION usage_on_job() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF TG_OP = 'INSERT' THEN
                   PERFORM usage_bump((NEW.created_at AT TIME ZONE 'UTC')::date, NEW.account, NEW.dialect,
                                      NEW.backend, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0);
                 ELSIF NEW.status IN ('succeeded', 'failed')
                       AND OLD.status NOT IN ('succeeded', 'failed') THEN
                   PERFORM usage_bump((COALESCE(NEW.completed_at, now()) AT TIME ZONE 'UTC')::date,
                       NEW.account, NEW.dialect, NEW.backend, 0,
                       CASE WHEN NEW.status = 'succeeded' THEN 1 ELSE 0 END,
                       CASE WHEN NEW.status = 'failed' THEN 1 ELSE 0 END, 0, 0, 0, 0, 0, 0,
                       COALESCE(EXTRACT(EPOCH FROM (NEW.completed_at - NEW.started_at)), 0));
                 END IF;
                 RETURN NULL;
               END $$""",
            """CREATE TRIGGER jobs_usage AFTER INSERT OR UPDATE OF status ON jobs
               FOR EACH ROW EXECUTE FUNCTION usage_on_job()""",
            """CREATE FUNCTION usage_on_entry() RETURNS trigger LANGUAGE plpgsql AS $$
               DECLARE v_dialect text; v_backend text := '';
               BEGIN
                 IF NEW.job_id IS NOT NULL THEN
                   SELECT dialect, backend INTO v_dialect, v_backend FROM jobs WHERE id = NEW.job_id;
                 END IF;
                 IF v_dialect IS NULL THEN
                   SELECT dialect INTO v_dialect FROM accounts WHERE id = NEW.account;
                   v_backend := '';
                 END IF;
                 PERFORM usage_bump((NEW.created_at AT TIME ZONE 'UTC')::date, NEW.account, v_dialect,
                     v_backend, 0, 0, 0,
                     CASE WHEN NEW.kind = 'debit' THEN -NEW.amount ELSE 0 END,
                     CASE WHEN NEW.kind = 'refund' THEN NEW.amount ELSE 0 END,
                     CASE WHEN NEW.kind = 'grant' THEN NEW.amount ELSE 0 END,
                     CASE WHEN NEW.kind = 'purchase' THEN NEW.amount ELSE 0 END,
                     CASE WHEN NEW.kind = 'adjust' THEN NEW.amount ELSE 0 END,
                     CASE WHEN NEW.kind = 'reversal' THEN -NEW.amount ELSE 0 END, 0);
                 RETURN NULL;
               END $$""",
            """CREATE TRIGGER ledger_entries_usage AFTER INSERT ON ledger_entries
               FOR EACH ROW EXECUTE FUNCTION usage_on_entry()""",
        ],
    ),
    (
        "engine_0004_idempotency_by_job",
        [
            # GET /admin/jobs/{id} shows the job's Idempotency-Key: by job, not by scanning every
            # key its API key ever remembered (rows outlive their TTL until the key is reused).
            "CREATE INDEX idempotency_keys_job ON idempotency_keys (job)",
        ],
    ),
]
