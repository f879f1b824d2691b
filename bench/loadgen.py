"""HTTP load from a separate process: ``wrk`` when it is on PATH, else a Python generator.

Both keep ``connections`` keep-alive connections busy for ``duration`` seconds (after a
``warmup`` that is not counted), cycle through a list of prepared requests (so a run can
rotate API keys, which FtmvAI's per-account limits need), and report the rate of 2xx
answers, the other statuses and the latency percentiles. A non-2xx answer is counted, never
treated as throughput. Run in its own process so the generator's CPU is not the server's:

    python -m bench.loadgen SPEC.json OUT.json    # the Python generator (used when wrk is absent)

The Python generator runs one asyncio process (uvloop when installed) per CPU, up to two, of
raw-socket HTTP/1.1 connections: no client library between the socket and the count. It is still
slower than wrk (about 60 % of wrk's rate on a bare GET on a 2-CPU machine), which matters only
for the bare-GET ceiling; every route with a target runs far below it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec


class LoadRequest(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    path: str
    headers: dict[str, str] = {}
    body: str = ""


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True):
    base: str
    requests: list[LoadRequest]
    connections: int = 32
    duration: float = 10.0
    warmup: float = 2.0


class LoadResult(msgspec.Struct, kw_only=True):
    tool: str
    ok: int
    other: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int] = {}


def tool() -> str:
    """``wrk`` if installed (and not disabled with ``TRYON_BENCH_LOADGEN=python``), else ``python``."""
    if os.environ.get("TRYON_BENCH_LOADGEN", "") == "python" or shutil.which("wrk") is None:
        return "python"
    return "wrk"


def run(spec: LoadSpec) -> LoadResult:
    """Run one load in a child process and return its counts."""
    return _run_wrk(spec) if tool() == "wrk" else _run_python(spec)


# --- wrk -------------------------------------------------------------------------------------------


def _lua_string(text: str) -> str:
    level = "=" * 4
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def _lua_script(spec: LoadSpec) -> str:
    lines = ["local reqs = {}", "local i = 0", "init = function(args)"]
    bodies: dict[str, str] = {}
    for request in spec.requests:
        if request.body and request.body not in bodies:
            bodies[request.body] = f"b{len(bodies)}"
    lines = [f"local {name} = {_lua_string(body)}" for body, name in bodies.items()] + lines
    for request in spec.requests:
        headers = dict(request.headers)
        if request.body:
            headers.setdefault("Content-Type", "application/json")
        pairs = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items())
        body = bodies[request.body] if request.body else "nil"
        lines.append(
            f"  reqs[#reqs + 1] = wrk.format({_lua_string(request.method)}, {_lua_string(request.path)},"
            f" {{{pairs}}}, {body})"
        )
    lines += [
        "  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))",
        "  i = math.random(#reqs) - 1",
        "end",
        "request = function()",
        "  i = i % #reqs + 1",
        "  return reqs[i]",
        "end",
        "done = function(summary, latency, requests)",
        '  io.write(string.format("BENCHJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"non2xx\\": %d,'
        ' \\"socket_errors\\": %d, \\"p50_us\\": %f, \\"p99_us\\": %f}\\n",',
        "    summary.requests, summary.duration, summary.errors.status,",
        "    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,",
        "    latency:percentile(50), latency:percentile(99)))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _wrk_once(spec: LoadSpec, script: Path, seconds: float) -> dict[str, float]:
    threads = max(1, min(2, spec.connections))
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{max(spec.connections, threads)}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        spec.base,
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            parsed: dict[str, float] = json.loads(line.removeprefix("BENCHJSON "))
            return parsed
    raise RuntimeError(f"wrk printed no result (exit {done.returncode}): {done.stdout}\n{done.stderr}")


def _run_wrk(spec: LoadSpec) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "requests.lua"
        script.write_text(_lua_script(spec))
        if spec.warmup > 0:
            _wrk_once(spec, script, spec.warmup)
        raw = _wrk_once(spec, script, spec.duration)
    seconds = raw["duration_us"] / 1e6
    ok = int(raw["requests"] - raw["non2xx"])
    statuses = {"non-2xx": int(raw["non2xx"])} if raw["non2xx"] else {}
    if raw["socket_errors"]:
        statuses["socket-errors"] = int(raw["socket_errors"])
    return LoadResult(
        tool="wrk",
        ok=ok,
        other=int(raw["non2xx"] + raw["socket_errors"]),
        seconds=seconds,
        rate=ok / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        statuses=statuses,
    )


# --- the Python generator --------------------------------------------------------------------------


def _run_python(spec: LoadSpec) -> LoadResult:
    """One generator process per CPU (at most one per connection), like wrk's threads; summed."""
    processes = max(1, min(os.cpu_count() or 1, 2, spec.connections))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        children = []
        for index in range(processes):
            share = spec.connections // processes + (1 if index < spec.connections % processes else 0)
            spec_path, out_path = Path(tmp) / f"spec-{index}.json", Path(tmp) / f"out-{index}.json"
            spec_path.write_bytes(msgspec.json.encode(msgspec.structs.replace(spec, connections=share)))
            args = [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)]
            children.append((subprocess.Popen(args, env=env), out_path))
        parts = []
        for child, out_path in children:
            if child.wait() != 0:
                raise RuntimeError(f"the load generator exited with {child.returncode}")
            parts.append(msgspec.json.decode(out_path.read_bytes(), type=LoadResult))
    statuses: dict[str, int] = {}
    for part in parts:
        for status, count in part.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    ok = sum(part.ok for part in parts)
    return LoadResult(
        tool="python",
        ok=ok,
        other=sum(part.other for part in parts),
        seconds=max(part.seconds for part in parts),
        rate=sum(part.rate for part in parts),
        # per-process percentiles combined: p50 weighted by answers, p99 the worst process's
        p50_ms=sum(part.p50_ms * part.ok for part in parts) / ok if ok else 0.0,
        p99_ms=max(part.p99_ms for part in parts),
        statuses=statuses,
    )


def _encode(request: LoadRequest, host: str) -> bytes:
    body = request.body.encode()
    head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}"]
    head += [f"{name}: {value}" for name, value in request.headers.items()]
    if body:
        if not any(name.lower() == "content-type" for name in request.headers):
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Tally:
    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.next = 0
        self.recording = False
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.ok = 0
        self.other = 0

    def take(self) -> bytes:
        self.next = (self.next + 1) % len(self.requests)
        return self.requests[self.next]

    def record(self, status: str, latency: float) -> None:
        if not self.recording:
            return
        self.latencies.append(latency)
        if status.startswith("2"):
            self.ok += 1
        else:
            self.other += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, read one whole answer, send the next."""

    def __init__(self, tally: _Tally, closed: asyncio.Future[None]) -> None:
        self.tally = tally
        self.closed = closed
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.stopping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if self.stopping:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.tally.take())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            status = head[9:12]
            length = 0
            chunked = False
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                lowered = name.strip().lower()
                if lowered == "content-length":
                    length = int(value)
                elif lowered == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                terminator = self.buffer.find(b"\r\n0\r\n\r\n", end)
                if terminator < 0:
                    return
                total = terminator + 7
            else:
                total = end + 4 + length
                if len(self.buffer) < total:
                    return
            del self.buffer[:total]
            self.tally.record(status, time.perf_counter() - self.sent_at)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stopping:
            self.tally.record("socket-error", 0.0)
        if not self.closed.done():
            self.closed.set_result(None)


async def _generate(spec: LoadSpec) -> LoadResult:
    parts = urlsplit(spec.base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tally = _Tally([_encode(request, f"{host}:{port}") for request in spec.requests])
    loop = asyncio.get_running_loop()
    connections: list[tuple[_Connection, asyncio.Future[None]]] = []
    for _ in range(spec.connections):
        closed: asyncio.Future[None] = loop.create_future()
        _, protocol = await loop.create_connection(lambda c=closed: _Connection(tally, c), host, port)  # type: ignore[misc]
        connections.append((protocol, closed))
    await asyncio.sleep(spec.warmup)
    tally.recording = True
    started = time.perf_counter()
    await asyncio.sleep(spec.duration)
    tally.recording = False
    seconds = time.perf_counter() - started
    for protocol, _ in connections:
        protocol.stopping = True
    await asyncio.wait([closed for _, closed in connections], timeout=35)
    latencies = sorted(tally.latencies)

    def percentile(fraction: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    return LoadResult(
        tool="python",
        ok=tally.ok,
        other=tally.other,
        seconds=seconds,
        rate=tally.ok / seconds,
        p50_ms=percentile(0.50),
        p99_ms=percentile(0.99),
        statuses=tally.statuses,
    )


def main(argv: list[str]) -> None:
    spec = msgspec.json.decode(Path(argv[0]).read_bytes(), type=LoadSpec)
    try:
        import uvloop

        result = uvloop.run(_generate(spec))
    except ImportError:
        result = asyncio.run(_generate(spec))
    Path(argv[1]).write_bytes(msgspec.json.encode(result))


if __name__ == "__main__":
    main(sys.argv[1:])
