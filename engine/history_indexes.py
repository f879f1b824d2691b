"""What keeps a request's cost independent of how many jobs the deployment already has (issue 10).

Two reads grew with history:

* **An account's counts.** FitInView's ``total_calls`` (the jobs a key created) and FtmvAI's
  orders today / all time counted the key's or the account's rows in ``jobs`` on every account
  read. ``job_counts`` holds one row per key (and its account) with the number of jobs it
  created, kept by a trigger on job insert in the creating transaction, as ``usage_daily`` is;
  today's orders are read from ``usage_daily`` (``jobs_submitted`` of today's rows). Both are
  one or a few index rows however long the history. The counter row is updated in the submit
  transaction, so it is held until that commits: concurrent submits of one key wait for each
  other there, which the same trigger's ``usage_daily`` row (one per day, account, dialect and
  backend) and the debit's account row already make them do — the counter adds no new wait.
* **The job search by ``until`` / ``since``.** ``jobs (created_at, id)`` lets
  :meth:`engine.repository.JobRepository.search` turn a time bound into an id bound (see
  :data:`ID_BOUND_MARGIN`) so the newest-first walk starts at the right place instead of
  skipping every newer job.

The migration locks ``jobs`` against writes (reads go on) while it counts the existing jobs and
creates the trigger, so no job is counted twice or missed; on a million jobs that is seconds.

A later migration (``engine_0007_rollups_at_commit``) makes the rollup triggers deferred: they
run at COMMIT, so the hot rollup rows are held only while a transaction commits.
"""

from __future__ import annotations

from datetime import timedelta

from piccolo.columns import BigInt
from piccolo.table import Table

ID_BOUND_MARGIN = timedelta(hours=1)
"""How far apart in ``created_at`` two jobs must be for their ids to be known to be in the same
order.

A job's ``created_at`` is its transaction's start (``now()``); its id is drawn at the INSERT,
later in that transaction. Ids therefore follow ``created_at`` only up to the time between a
job-creating transaction's start and its INSERT: a job created at 10:00:00 may get a larger id
than one created at 10:00:01. Both transactions that create jobs (a submit, an operator's
re-run) run at most three statements before the INSERT, each bounded by
``TRYON_DATABASE_COMMAND_TIMEOUT_SECONDS`` (10 s) and the pool wait (5 s), so an hour is far
beyond any reachable gap: every job created before ``T`` has a smaller id than any job created
at ``T + margin`` or later, and every job created at ``T`` or later a larger id than any job
created before ``T - margin``. (A database clock stepped back by more than the margin would
break this, as it breaks ``created_at`` order itself.) Widening it only costs the search a
longer walk over the jobs of the margin."""


class JobCount(Table, tablename="job_counts"):
    """Jobs created per API key (and the key's account), kept by the ``jobs_count`` trigger."""

    api_key = BigInt()
    account = BigInt()
    jobs = BigInt(default=0)


TABLES: tuple[type[Table], ...] = (JobCount,)

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "engine_0006_history_indexes",
        [
            # writes wait (reads do not) until this migration commits: the counts taken below
            # and the trigger created after them then see exactly the same jobs
            "LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE",
            "CREATE INDEX jobs_created_id ON jobs (created_at, id)",
            """CREATE TABLE job_counts (
                id bigserial PRIMARY KEY,
                api_key bigint NOT NULL,
                account bigint NOT NULL,
                jobs bigint NOT NULL DEFAULT 0,
                CONSTRAINT job_counts_key UNIQUE (api_key, account)
            )""",
            "CREATE INDEX job_counts_account ON job_counts (account)",
            """INSERT INTO job_counts (api_key, account, jobs)
               SELECT api_key, account, count(*) FROM jobs GROUP BY api_key, account""",
            """CREATE FUNCTION job_counts_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 INSERT INTO job_counts AS c (api_key, account, jobs) VALUES (NEW.api_key, NEW.account, 1)
                 ON CONFLICT (api_key, account) DO UPDATE SET jobs = c.jobs + 1;
                 RETURN NULL;
               END $$""",
            """CREATE TRIGGER jobs_count AFTER INSERT ON jobs
               FOR EACH ROW EXECUTE FUNCTION job_counts_on_insert()""",
        ],
    ),
    (
        "engine_0007_rollups_at_commit",
        [
            # The rollups (usage_daily, job_counts) are hot rows: every submit of an account bumps
            # the same ones. Bumped by plain AFTER triggers, each was locked from the job's INSERT
            # until COMMIT, so an account's submits queued behind each other for their whole
            # transactions (and, in a burst, for the pool's connections). As deferred constraint
            # triggers they run at COMMIT, holding those rows only while the transaction commits.
            # Events fire in statement order, so every transaction still takes the rows in the same
            # order (an account's balance row, when it is debited, before its rollups).
            "DROP TRIGGER jobs_usage ON jobs",
            """CREATE CONSTRAINT TRIGGER jobs_usage AFTER INSERT OR UPDATE OF status ON jobs
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION usage_on_job()""",
            "DROP TRIGGER ledger_entries_usage ON ledger_entries",
            """CREATE CONSTRAINT TRIGGER ledger_entries_usage AFTER INSERT ON ledger_entries
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION usage_on_entry()""",
            "DROP TRIGGER jobs_count ON jobs",
            """CREATE CONSTRAINT TRIGGER jobs_count AFTER INSERT ON jobs
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION job_counts_on_insert()""",
        ],
    ),
]
