"""One table of figures and ratios (each with its target and PASS/FAIL), a JSON document and a chart.

A :class:`Figure` is a measured number; a :class:`Check` is a ratio or bound the issue sets a
target for. Both go into the JSON document as they are, so a later run can be compared field by
field; the chart shows poll and submit rates against the ceilings they are held to.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]


class Figure(msgspec.Struct, kw_only=True):
    section: str
    name: str
    value: float
    unit: str
    note: str = ""


class Check(msgspec.Struct, kw_only=True):
    """A target: ``value`` None when it could not be measured (for example a waiter never answered)."""

    name: str
    value: float | None
    unit: str
    target: str
    passed: bool


class Machine(msgspec.Struct, kw_only=True):
    cpus: int
    cpu_model: str
    memory_gb: float
    python: str
    commit: str
    loadgen: str


class Run(msgspec.Struct, kw_only=True):
    started_at: str
    seconds: float = 0.0
    quick: bool
    services: str
    machine: Machine
    figures: list[Figure] = []
    checks: list[Check] = []
    errors: list[str] = []

    def add(self, section: str, name: str, value: float, unit: str, note: str = "") -> None:
        self.figures.append(Figure(section=section, name=name, value=value, unit=unit, note=note))

    def at_least(self, name: str, value: float, target: float, unit: str = "x") -> None:
        self.checks.append(
            Check(name=name, value=value, unit=unit, target=f">= {target:g}", passed=value >= target)
        )

    def at_most(
        self, name: str, value: float | None, target: float, unit: str, *, strict: bool = True
    ) -> None:
        passed = value is not None and (value < target if strict else value <= target)
        sign = "<" if strict else "<="
        self.checks.append(
            Check(name=name, value=value, unit=unit, target=f"{sign} {target:g}", passed=passed)
        )

    def value(self, section: str, name: str) -> float | None:
        for figure in self.figures:
            if figure.section == section and figure.name == name:
                return figure.value
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} with uncommitted work" if dirty else head


def machine(loadgen: str) -> Machine:
    return Machine(
        cpus=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        memory_gb=_memory_gb(),
        python=platform.python_version(),
        commit=_commit(),
        loadgen=loadgen,
    )


def new_run(*, quick: bool, services: str, loadgen: str) -> Run:
    return Run(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        quick=quick,
        services=services,
        machine=machine(loadgen),
    )


def _number(value: float | None) -> str:
    if value is None or value != value:  # not measured, or NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(run: Run) -> str:
    m = run.machine
    lines = [
        f"tryon-gateway bench — {run.started_at}, {'quick' if run.quick else 'full'} run, "
        f"{run.services} services, load by {m.loadgen}",
        f"machine: {m.cpus} CPUs, {m.cpu_model}, {m.memory_gb:g} GB, Python {m.python}; commit {m.commit}",
        "",
        f"{'section':<10} {'figure':<34} {'value':>12}  unit",
    ]
    for figure in run.figures:
        note = f"  ({figure.note})" if figure.note else ""
        lines.append(
            f"{figure.section:<10} {figure.name:<34} {_number(figure.value):>12}  {figure.unit}{note}"
        )
    lines += ["", f"{'check':<52} {'value':>10}  {'target':<12} result"]
    for check in run.checks:
        value = f"{_number(check.value)} {check.unit}"
        target = f"{check.target} {check.unit}"
        lines.append(f"{check.name:<52} {value:>10}  {target:<12} {'PASS' if check.passed else 'FAIL'}")
    for error in run.errors:
        lines.append(f"ERROR {error}")
    passed = sum(check.passed for check in run.checks)
    lines += ["", f"{passed}/{len(run.checks)} checks pass; {run.seconds:.0f} s"]
    return "\n".join(lines)


def write_json(run: Run, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(run), indent=2) + b"\n")


def chart(run: Run, path: Path) -> bool:
    """Poll and submit rates against their ceilings, as a PNG (False when nothing to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (
            "Polls vs. the bare PK-select route (target >= 0.6x)",
            [("bare GET", "ceilings", "bare_get"), ("bare PK select", "ceilings", "pk_select")],
            [("FitInView poll", "poll", "fitinview"), ("FtmvAI poll", "poll", "ftmvai")],
            ("ceilings", "pk_select", 0.6),
        ),
        (
            "Async submits vs. the bare debit transaction (target >= 0.3x, test keys)",
            [
                ("bare POST decode", "ceilings", "decode_post"),
                ("bare debit tx", "ceilings", "debit_tx"),
                ("bare 2 PUTs + debit", "ceilings", "store_debit"),
            ],
            [
                ("FitInView test", "submit", "fitinview_test"),
                ("FitInView live", "submit", "fitinview_live"),
                ("FtmvAI test", "submit", "ftmvai_test"),
                ("FtmvAI live", "submit", "ftmvai_live"),
            ],
            ("ceilings", "debit_tx", 0.3),
        ),
    ]
    drawn = [panel for panel in panels if any(run.value(s, n) is not None for _, s, n in panel[1] + panel[2])]
    if not drawn:
        return False
    figure, axes = plt.subplots(len(drawn), 1, figsize=(9, 3.2 * len(drawn)), squeeze=False)
    for axis, (title, ceilings, gateway, (ref_section, ref_name, factor)) in zip(
        axes[:, 0], drawn, strict=True
    ):
        bars = [(label, run.value(s, n), "#9aa5b1") for label, s, n in ceilings]
        bars += [(label, run.value(s, n), "#2f6fb0") for label, s, n in gateway]
        shown = [(label, value, color) for label, value, color in bars if value is not None]
        labels = [label for label, _, _ in shown]
        values = [value for _, value, _ in shown]
        axis.barh(labels, values, color=[color for _, _, color in shown])
        axis.invert_yaxis()
        for index, value in enumerate(values):
            axis.text(value, index, f" {value:,.0f}/s", va="center", fontsize=8)
        reference = run.value(ref_section, ref_name)
        if reference:
            axis.axvline(reference * factor, color="#c0392b", linestyle="--", linewidth=1)
            axis.text(reference * factor, -0.6, f" target {factor:g}x", color="#c0392b", fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.set_xscale("log")  # ceilings and routes differ by orders of magnitude
        axis.set_xlabel("requests per second (2xx, log scale)")
        axis.margins(x=0.15)
    m = run.machine
    figure.suptitle(f"{m.cpus} CPUs, {m.cpu_model}, commit {m.commit}, {run.started_at}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
