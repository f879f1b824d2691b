"""Rates at size: polls and submits with 1,000,000 jobs and 2,000,000 ledger entries already stored.

A second database is filled by :func:`bench.admin_at_size.fill` (3,000 accounts with a skewed size
mix, ``generate_series`` rows, ``ANALYZE``), is vacuumed and checkpointed
(:func:`_vacuum_and_checkpoint`), then gets this run's customers and its own ``serve``, and the
poll and submit measurements of :mod:`bench.gateway_paths` run again, with the same load. Right
before, the run's empty database
is measured again the same way, and each at-size rate is compared with that (within 15 % is the
target); without it (``measure(empty=None)``), with the ``poll`` and ``submit`` sections' figures.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import NamedTuple

import asyncpg

from bench import gateway_paths
from bench.admin_at_size import fill
from bench.ceilings import Shape
from bench.loadgen import LoadResult
from bench.processes import gateway_env, new_namespace, start_serve
from bench.report import Run
from bench.services import BenchServices
from bench.world import World, make_world
from gateway.settings import Settings

TARGET = 0.85
FILL_ACCOUNTS = 3000


async def _vacuum_and_checkpoint(database_url: str) -> None:
    """Leave the filled database as months of traffic would: vacuumed and checkpointed.

    Straight after a bulk fill, autovacuum's insert threshold starts vacuuming the 3,000,000 new
    rows and the next checkpoint writes the fill's dirty pages, in the middle of the at-size
    measurement; those are costs of the fill, not of the size the target is about.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("VACUUM (ANALYZE)")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


class EmptyDatabase(NamedTuple):
    """The run's own (empty) deployment, measured again just before the filled one."""

    env: dict[str, str]
    world: World


def _measure(
    env: dict[str, str],
    world: World,
    shape: Shape,
    bodies: dict[str, str],
    log_dir: Path,
    name: str,
) -> tuple[dict[str, LoadResult], dict[str, LoadResult]]:
    """Poll and submit rates of one deployment, through a ``serve`` of its own (polls read newly
    seeded queued jobs: a submit phase fails the jobs it leaves, the earlier seeds included)."""
    serve, base = start_serve(env, log_dir, name=name)
    try:
        polls = gateway_paths.seed_jobs(base, world, bodies)
        poll = gateway_paths.measure_poll(base, world, shape, polls)
        submit = gateway_paths.measure_submit(base, world, shape, bodies, env["TRYON_DATABASE_URL"])
    finally:
        serve.stop()
    return poll, submit


def measure(
    run: Run,
    services: BenchServices,
    shape: Shape,
    bodies: dict[str, str],
    log_dir: Path,
    *,
    jobs: int,
    entries: int,
    accounts: int,
    empty: EmptyDatabase | None = None,
) -> None:
    """Fill, settle, then measure the empty deployment (``empty``) and the filled one back to back.

    Measuring the empty database again right before the filled one, rather than comparing with
    the run's first figures, keeps minutes of drift out of the ratio: on a shared VM the same
    route measured several minutes apart moved by 10-30 % (2026-12-01 runs)."""
    assert services.endpoints is not None
    database_url = asyncio.run(services.create_database("tryon_bench_history_"))
    started = time.monotonic()
    counts = asyncio.run(
        fill(database_url, accounts=min(FILL_ACCOUNTS, max(10, jobs // 300)), jobs=jobs, entries=entries)
    )
    run.add(
        "history",
        "fill",
        time.monotonic() - started,
        "s",
        f"{counts['jobs']:,} jobs, {counts['ledger_entries']:,} entries, {counts['accounts']:,} accounts",
    )
    started = time.monotonic()
    asyncio.run(_vacuum_and_checkpoint(database_url))
    run.add("history", "settle", time.monotonic() - started, "s", "VACUUM (ANALYZE), then CHECKPOINT")
    env = gateway_env(services.endpoints, database_url, new_namespace())
    world = asyncio.run(make_world(Settings.from_env(env), accounts=accounts))
    baseline: dict[str, dict[str, LoadResult]] = {}
    if empty is not None:
        empty_poll, empty_submit = _measure(
            empty.env, empty.world, shape, bodies, log_dir, "serve-history-empty"
        )
        baseline = {"poll": empty_poll, "submit": empty_submit}
    poll, submit = _measure(env, world, shape, bodies, log_dir, "serve-history")
    for section, results in (("poll", poll), ("submit", submit)):
        for name, result in results.items():
            before = baseline.get(section, {}).get(name)
            if before is not None:
                run.add(
                    "history",
                    f"{section} {name} (empty DB)",
                    before.rate,
                    "req/s",
                    f"just before; p99 {before.p99_ms:.1f} ms",
                )
            run.add("history", f"{section} {name}", result.rate, "req/s", f"p99 {result.p99_ms:.1f} ms")
            reference = before.rate if before is not None else run.value(section, name)
            if reference:
                run.at_least(f"{section} {name}: at size / empty DB", result.rate / reference, TARGET)
