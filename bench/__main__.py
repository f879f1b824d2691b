"""``python -m bench``: every measurement of issue 10 in one run, one table, a JSON document, a chart.

    python -m bench                        # full run (~15 min + the 1M-job history fill)
    python -m bench --quick                # short durations and small sizes (a smoke run)
    python -m bench --only ceilings,poll   # some sections only
    python -m bench --services machine     # 127.0.0.1 PostgreSQL/Redis (TRYON_TEST_*) instead of embedded
    python -m bench --json out.json --chart out.png

Sections: ceilings, poll, submit, waits, engine, local, history. The gateway runs as real
``tryon-gateway serve``/``worker`` processes; load comes from ``wrk`` (or the Python generator in
:mod:`bench.loadgen`) in a separate process. Exits 1 when a section failed to run, not when a
target is missed (a missed target is a FAIL in the table).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import ceilings, engine, gateway_paths, history, loadgen, local_backend, report, waits
from bench.ceilings import Shape
from bench.processes import gateway_env, new_namespace, start_serve
from bench.services import BenchServices
from bench.world import make_world, submit_bodies
from gateway.settings import Settings

SECTIONS = ("ceilings", "poll", "submit", "waits", "engine", "local", "history")
POLL_TARGET = 0.6
SUBMIT_TARGET = 0.3
FILL_SHARE = 0.6
"""Held waits are sent at this share of the run's async-submit rate: a ``wait: true`` submit also
reads its job before it waits, and at 80 % (2026-12-01) a fill at 363/s drew 503s from the pool."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="short durations and small sizes")
    parser.add_argument("--services", choices=("embedded", "machine"), default="embedded")
    parser.add_argument("--json", type=Path, default=None, help="write the run as JSON here")
    parser.add_argument("--chart", type=Path, default=None, help="write the rates chart (PNG) here")
    parser.add_argument("--connections", type=int, default=32, help="load generator connections")
    parser.add_argument("--duration", type=float, default=None, help="seconds per HTTP measurement")
    parser.add_argument("--waiters", type=int, default=None, help="held sync waits (default 5000)")
    parser.add_argument("--fill-rate", type=float, default=None, help="held waits started per second")
    parser.add_argument("--history-jobs", type=int, default=None, help="jobs in the history database")
    parser.add_argument("--history-entries", type=int, default=None, help="ledger entries there")
    parser.add_argument(
        "--engine-jobs", type=int, default=None, help="jobs through the worker (default 1000)"
    )
    parser.add_argument("--accounts", type=int, default=None, help="accounts per dialect (default 400)")
    parser.add_argument("--worker-threads", type=int, default=4)
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = only or list(SECTIONS)
    return args


class Bench:
    """The run's services, database, customers and gateway, shared by the sections that need them."""

    def __init__(self, args: argparse.Namespace, run: report.Run) -> None:
        self.args = args
        self.run = run
        self.quick: bool = args.quick
        duration = args.duration or (2.0 if self.quick else 10.0)
        self.shape = Shape(connections=args.connections, duration=duration, warmup=min(2.0, duration / 4))
        self.services = BenchServices(args.services)
        self.log_dir = self.services.root / "logs"
        # customers 0-2 have roles (poll, held waits, their warm-up); the last one feeds the engine
        self.accounts = max(4, args.accounts or (20 if self.quick else 400))

    def section(self, name: str, body: Callable[[], None]) -> None:
        if name not in self.args.sections:
            return
        print(f"[bench] {name} …", flush=True)
        started = time.monotonic()
        try:
            body()
        except Exception as exc:
            traceback.print_exc()
            self.run.errors.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
        print(f"[bench] {name} done in {time.monotonic() - started:.0f} s", flush=True)
        if self.args.json is not None:  # a long run keeps what it measured so far
            report.write_json(self.run, self.args.json)

    def main(self) -> None:
        if set(self.args.sections) <= {"local"}:  # in-process only: no services needed
            self.section("local", self.local)
            return
        endpoints = self.services.start()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = asyncio.run(self.services.create_database())
        self.env = gateway_env(endpoints, self.database_url, new_namespace())
        settings = Settings.from_env(self.env)
        self.world = asyncio.run(make_world(settings, accounts=self.accounts))
        self.bodies = submit_bodies()
        serve, self.base = start_serve(self.env, self.log_dir)
        try:
            self.polls = gateway_paths.seed_jobs(self.base, self.world, self.bodies)
            self.section("ceilings", self.ceilings)
            self.section("poll", self.poll)
            self.section("submit", self.submit)
        finally:
            serve.stop()
        self.section("waits", self.waits)
        self.section("engine", self.engine)
        self.section("local", self.local)
        self.section("history", self.history)

    # ---- sections

    def ceilings(self) -> None:
        order_id = int(self.polls["ftmvai"].rsplit("/", 1)[1])
        results = ceilings.measure(
            self.database_url,
            self.log_dir,
            self.shape,
            job_id=order_id,
            submit_body=self.bodies["fitinview"],
            env=self.env,
        )
        labels = {
            "bare_get": "bare Litestar GET",
            "decode_post": "bare POST + msgspec decode",
            "pk_select": "bare asyncpg PK select",
            "debit_tx": "bare debit transaction",
            "store_debit": "bare decode, two S3 PUTs, debit",
        }
        for name, result in results.items():
            self.run.add(
                "ceilings", name, result.rate, "req/s", f"{labels[name]}; p99 {result.p99_ms:.1f} ms"
            )

    def poll(self) -> None:
        results = gateway_paths.measure_poll(self.base, self.world, self.shape, self.polls)
        for dialect, result in results.items():
            self.run.add("poll", dialect, result.rate, "req/s", _note(result))
        self.ratios("poll", ("fitinview", "ftmvai"), "pk_select", POLL_TARGET, "poll {} / bare PK select")

    def submit(self) -> None:
        results = gateway_paths.measure_submit(
            self.base, self.world, self.shape, self.bodies, self.database_url
        )
        for name, result in results.items():
            self.run.add("submit", name, result.rate, "req/s", _note(result))
        self.ratios(
            "submit",
            ("fitinview_test", "ftmvai_test"),
            "debit_tx",
            SUBMIT_TARGET,
            "async submit {} / bare debit tx",
        )
        stored = self.run.value("ceilings", "store_debit")
        for name in ("fitinview_test", "ftmvai_test"):
            value = self.run.value("submit", name)
            if value is not None and stored:
                note = "no target: the floor that also stores both inputs, as every submit must"
                self.run.add("submit", f"{name} / bare store+debit", value / stored, "x", note)

    def ratios(self, section: str, names: tuple[str, ...], ceiling: str, target: float, label: str) -> None:
        reference = self.run.value("ceilings", ceiling)
        if not reference:
            return
        for name in names:
            value = self.run.value(section, name)
            if value is not None:
                self.run.at_least(label.format(name), value / reference, target)

    def waits(self) -> None:
        waiters = self.args.waiters or (200 if self.quick else 5000)
        submit_rate = self.run.value("submit", "fitinview_test")
        fill_rate = self.args.fill_rate or max(5.0, FILL_SHARE * submit_rate if submit_rate else 25.0)
        waits.measure(
            self.run,
            self.env,
            self.world,
            self.bodies,
            self.log_dir,
            waiters=waiters,
            fill_rate=fill_rate,
            quick=self.quick,
        )

    def engine(self) -> None:
        jobs = self.args.engine_jobs or (60 if self.quick else 1000)
        engine.measure(
            self.run,
            self.env,
            self.world,
            self.bodies,
            self.log_dir,
            jobs=jobs,
            threads=self.args.worker_threads,
            database_url=self.database_url,
        )

    def local(self) -> None:
        if self.quick:
            local_backend.measure(self.run, repeats=1, sizes=("1K",))
        else:
            local_backend.measure(self.run, repeats=2)

    def history(self) -> None:
        jobs = self.args.history_jobs or (20_000 if self.quick else 1_000_000)
        entries = self.args.history_entries or jobs * 2
        history.measure(
            self.run,
            self.services,
            self.shape,
            self.bodies,
            self.log_dir,
            jobs=jobs,
            entries=entries,
            accounts=self.accounts,
            empty=history.EmptyDatabase(self.env, self.world),
        )

    def close(self) -> None:
        if self.run.errors and self.log_dir.exists():  # the services' directory goes; its logs stay
            kept = Path(tempfile.mkdtemp(prefix="tryon-bench-logs-"))
            shutil.copytree(self.log_dir, kept, dirs_exist_ok=True)
            print(f"[bench] logs of the failed run kept in {kept}", flush=True)
        self.services.stop()


def _note(result: loadgen.LoadResult) -> str:
    note = f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
    if result.other:
        note += f"; {result.other} not 2xx: " + ", ".join(
            f"{k}: {v}" for k, v in sorted(result.statuses.items())
        )
    return note


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = report.new_run(quick=args.quick, services=args.services, loadgen=loadgen.tool())
    started = time.monotonic()
    bench = Bench(args, run)
    try:
        bench.main()
    except Exception as exc:
        traceback.print_exc()
        run.errors.append(f"setup: {type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        print("[bench] stopping services …", flush=True)
        bench.close()
    run.seconds = time.monotonic() - started
    print(report.table(run), flush=True)
    if args.json is not None:
        report.write_json(run, args.json)
        print(f"JSON: {args.json}")
    if args.chart is not None and report.chart(run, args.chart):
        print(f"chart: {args.chart}")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
