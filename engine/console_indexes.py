"""Indexes the ops console's pages need to answer in under 200 ms with a million jobs.

``bench/console_at_size.py`` found the pages that walked the whole ``jobs`` table: a search by a
rare ``kind``, ``dialect`` or ``backend`` (``ORDER BY id DESC LIMIT 51`` over the primary key
reads every row when no row matches). An index per filter, newest first, makes each a short
index scan, as ``(status, id DESC)`` already does for the status filter. An account's purchases
and the overview's failing webhook events get theirs for the same reason (their tables grow
with the business; the failing events are few, so that index is partial and tiny), and the
account page's sum of the account's entries one it can answer from the index alone.

Plain ``CREATE INDEX`` (migrations run in a transaction, which ``CONCURRENTLY`` cannot): on a
million jobs each takes seconds, during which job writes wait.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "engine_0005_console_indexes",
        [
            "CREATE INDEX jobs_kind_newest ON jobs (kind, id DESC)",
            "CREATE INDEX jobs_dialect_newest ON jobs (dialect, id DESC)",
            "CREATE INDEX jobs_backend_newest ON jobs (backend, id DESC)",
            # the account page's balance check sums every entry of the account: with the amount in
            # the index that is an index-only scan of a few pages (the table is append-only, so its
            # pages stay all-visible) instead of one heap page per entry, spread over the years
            "CREATE INDEX ledger_entries_account_amount ON ledger_entries (account) INCLUDE (amount)",
            "CREATE INDEX purchases_account_newest ON purchases (account, id DESC)",
            "CREATE INDEX webhook_events_failed_newest ON webhook_events (id DESC) WHERE status = 'failed'",
        ],
    ),
]
