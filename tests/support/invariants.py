"""The money invariants every fault test and the money simulation end with.

They are checked straight against the database (asyncpg, no gateway code), so a bug in the
gateway's own bookkeeping can't hide itself, and then once more through the real
``tryon-gateway ledger verify`` CLI, which is what operators run:

(a) a live job has exactly one debit entry (of its ``cost_credits``, even when that is 0) and at
    most one refund (of exactly its debit, mirrored in ``credits_refunded``); a test-key job and an
    operator's re-run (``rerun_of``) move no credits at all; no entry names a job that doesn't exist;
(b) each account's balance equals the sum of its entries, each entry's ``balance_after`` is the
    running sum up to it, and a balance is negative only after a payment reversal;
(c) no job is still ``running`` past its deadline (plus a grace for the sweeper), and — at the end
    of a test — every accepted job reaches a terminal status (:func:`wait_all_terminal`);
(d) ``tryon-gateway ledger verify`` exits 0.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping

import asyncpg

TERMINAL = ("succeeded", "failed")
DEADLINE_GRACE_SECONDS = 30.0
"""How long past ``deadline_at`` a running job may stay before (c) fails: the sweeper expires such
jobs on its next sweep, and a test gateway sweeps every 0.5 s."""

_JOBS = """
SELECT j.id, j.public_id, j.mode, j.status, j.cost_credits, j.credits_refunded, j.rerun_of,
       (j.status = 'running' AND j.deadline_at < now() - make_interval(secs => $1)) AS overdue,
       count(e.id) FILTER (WHERE e.kind = 'debit') AS debits,
       COALESCE(-sum(e.amount) FILTER (WHERE e.kind = 'debit'), 0) AS debited,
       count(e.id) FILTER (WHERE e.kind = 'refund') AS refunds,
       COALESCE(sum(e.amount) FILTER (WHERE e.kind = 'refund'), 0) AS refunded,
       count(e.id) FILTER (WHERE e.kind NOT IN ('debit', 'refund')) AS others
FROM jobs j LEFT JOIN ledger_entries e ON e.job_id = j.id
GROUP BY j.id ORDER BY j.id
"""

_ORPHANS = """
SELECT e.id, e.job_id FROM ledger_entries e
WHERE e.job_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)
"""

_ACCOUNTS = """
SELECT a.id, a.balance, COALESCE(sum(e.amount), 0) AS entries_sum,
       COALESCE(bool_or(e.kind = 'reversal'), false) AS has_reversal
FROM accounts a LEFT JOIN ledger_entries e ON e.account = a.id
GROUP BY a.id ORDER BY a.id
"""

# Entries are written under the account's row lock (the balance UPDATE comes first), so within an
# account ids follow the order the balance moved in and the running sum must match balance_after.
_CHAIN = """
SELECT id, account, kind, amount, balance_after, running FROM (
    SELECT e.*, sum(e.amount) OVER (PARTITION BY e.account ORDER BY e.id) AS running
    FROM ledger_entries e
) t WHERE balance_after <> running ORDER BY id LIMIT 20
"""


def _job_problems(row: asyncpg.Record) -> list[str]:
    name = f"job {row['public_id']} (#{row['id']}, {row['mode']}, {row['status']})"
    problems: list[str] = []
    if row["others"]:
        problems.append(f"{name}: {row['others']} entries that are neither debit nor refund")
    if row["refunds"] > 1:
        problems.append(f"{name}: {row['refunds']} refunds")
    if row["overdue"]:
        problems.append(f"{name}: still running more than {DEADLINE_GRACE_SECONDS:g} s past its deadline")
    if row["mode"] == "test" or row["rerun_of"] is not None:
        if row["debits"] or row["refunds"]:
            problems.append(f"{name}: moved credits although it is a test-key job or a re-run")
        return problems
    if row["debits"] != 1:
        problems.append(f"{name}: {row['debits']} debit entries (expected exactly 1)")
    elif row["debited"] != row["cost_credits"]:
        problems.append(f"{name}: debited {row['debited']}, cost_credits {row['cost_credits']}")
    if row["refunds"] and row["refunded"] != row["debited"]:
        problems.append(f"{name}: refunded {row['refunded']} of a debit of {row['debited']}")
    if row["credits_refunded"] != row["refunded"]:
        problems.append(f"{name}: credits_refunded {row['credits_refunded']}, refunds {row['refunded']}")
    return problems


def _account_problems(row: asyncpg.Record) -> list[str]:
    name = f"account {row['id']}"
    problems: list[str] = []
    if row["balance"] != row["entries_sum"]:
        problems.append(f"{name}: balance {row['balance']} != sum of entries {row['entries_sum']}")
    if row["balance"] < 0 and not row["has_reversal"]:
        problems.append(f"{name}: negative balance {row['balance']} without a reversal")
    return problems


async def money_violations(
    database: str | asyncpg.Connection, *, deadline_grace: float = DEADLINE_GRACE_SECONDS
) -> list[str]:
    """Violations of (a), (b) and the deadline half of (c), one sentence each (empty: all fine).

    ``database`` is a URL, or an open connection (a caller checking after every step keeps one).
    Reads one repeatable-read snapshot, so it may run while the gateway is busy: a job and its
    debit, or a balance and its entry, are committed together and so are seen together.
    """
    if not isinstance(database, str):
        return await _violations(database, deadline_grace)
    conn: asyncpg.Connection = await asyncpg.connect(database)
    try:
        return await _violations(conn, deadline_grace)
    finally:
        await conn.close()


async def _violations(conn: asyncpg.Connection, deadline_grace: float) -> list[str]:
    problems: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for row in await conn.fetch(_JOBS, deadline_grace):
            problems.extend(_job_problems(row))
        for row in await conn.fetch(_ORPHANS):
            problems.append(f"ledger entry #{row['id']} names job #{row['job_id']}, which doesn't exist")
        for row in await conn.fetch(_ACCOUNTS):
            problems.extend(_account_problems(row))
        for row in await conn.fetch(_CHAIN):
            problems.append(
                f"ledger entry #{row['id']} ({row['kind']} {row['amount']:+d}, account {row['account']}):"
                f" balance_after {row['balance_after']} but the running sum is {row['running']}"
            )
    return problems


async def wait_all_terminal(database_url: str, timeout: float) -> list[str]:
    """Wait until every job is succeeded or failed; return the ones still unfinished at ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT id, public_id, status, stage, created_at, deadline_at FROM jobs"
                " WHERE status NOT IN ('succeeded', 'failed') ORDER BY id"
            )
            if not rows or loop.time() >= deadline:
                return [
                    f"job {row['public_id']} (#{row['id']}) still {row['status']}/{row['stage']} after"
                    f" {timeout:g} s (created {row['created_at']:%H:%M:%S}, deadline {row['deadline_at']})"
                    for row in rows
                ]
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def ledger_verify(database_url: str, *, env: Mapping[str, str] | None = None) -> None:
    """Run ``tryon-gateway ledger verify`` against ``database_url``; assert it exits 0.

    ``env`` adds settings the deployment under test runs with (e.g. ``TRYON_REFUND_ON``), since the
    CLI judges refunds by them. Its output is printed either way (pytest shows it on failure).
    """
    child_env = {key: value for key, value in os.environ.items() if key != "TRYON_DATA_DIR"}
    child_env |= {"TRYON_DATABASE_URL": database_url, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", "verify"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(done.stdout, done.stderr, sep="", end="")
    assert done.returncode == 0, f"ledger verify exited {done.returncode}:\n{done.stdout}{done.stderr}"


async def assert_money_invariants(
    database_url: str, *, terminal_timeout: float = 60, env: Mapping[str, str] | None = None
) -> None:
    """The end of every money test: all jobs terminal, then (a)-(d) hold."""
    unfinished = await wait_all_terminal(database_url, terminal_timeout)
    problems = unfinished + await money_violations(database_url)
    assert not problems, "money invariants violated:\n" + "\n".join(problems)
    await asyncio.to_thread(ledger_verify, database_url, env=env)
