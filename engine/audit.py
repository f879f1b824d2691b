"""Checks that jobs and the ledger agree (``tryon-gateway ledger verify``).

A live job has exactly one debit, of its price; a test job moves nothing; a job
has at most one refund, only when it failed with a refundable outcome, and for
exactly what it was charged. Operators add three cases, each recognisable:
a cancelled job (``error_code`` ``cancelled``) is always refunded; a goodwill
refund (reference ``goodwill:job_…``) may follow any finished job; an operator's
re-run (``rerun_of`` set) is free — no debit and no refund at all.
"""

from __future__ import annotations

from engine.execution import should_refund
from engine.models import CANCELLED, GOODWILL_PREFIX
from engine.runtime import Runtime


async def verify_jobs(runtime: Runtime) -> list[str]:
    problems: list[str] = []
    for row in await runtime.jobs.audit():
        name = f"job {row['public_id']} (#{row['id']})"
        if row["mode"] == "test":
            if row["debits"] or row["refunds"]:
                problems.append(f"{name}: a test-key job moved credits")
            continue
        if row["rerun_of"] is not None:
            if row["debits"] or row["refunds"] or row["cost_credits"] or row["credits_refunded"]:
                problems.append(f"{name}: a re-run (of job #{row['rerun_of']}) moved credits")
            continue
        if row["debits"] != 1:
            problems.append(f"{name}: {row['debits']} debit entries (expected exactly 1)")
        elif row["debited"] != row["cost_credits"]:
            problems.append(f"{name}: debited {row['debited']} but cost_credits is {row['cost_credits']}")
        if row["refunds"] > 1:
            problems.append(f"{name}: {row['refunds']} refunds")
        refundable = row["status"] == "failed" and (
            row["error_code"] == CANCELLED
            or should_refund(runtime, row["error_code"] or "", row["error_message"] or "")
        )
        goodwill = (row["refund_reference"] or "").startswith(GOODWILL_PREFIX)
        if refundable and row["cost_credits"] > 0 and not row["refunds"]:
            problems.append(f"{name}: failed refundably but was not refunded")
        if row["refunds"]:
            if goodwill and row["status"] not in ("succeeded", "failed"):
                problems.append(f"{name}: a goodwill refund of an unfinished job")
            elif goodwill and row["refund_reference"] != GOODWILL_PREFIX + row["public_id"]:
                problems.append(f"{name}: goodwill refund reference {row['refund_reference']!r}")
            elif not refundable and not goodwill:
                problems.append(f"{name}: refunded although its outcome is not refundable")
            if row["refunded"] != row["debited"] or row["credits_refunded"] != row["refunded"]:
                problems.append(
                    f"{name}: refunded {row['refunded']}, job shows {row['credits_refunded']},"
                    f" debited {row['debited']}"
                )
    return problems


async def verify_all(runtime: Runtime) -> list[str]:
    return await runtime.ledger.verify() + await verify_jobs(runtime)
