"""What the bench outputs: its rows, the machine they were measured on, a table, notes and JSON."""
from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bmrl_bench.bench.timing import available_cores


@dataclass
class BenchRow:
    """One line of the benchmark table."""

    section: str
    """matmul | bcq | sac | loop (sampling, acting, env) | recipe | training (every training loop, `loops`)"""
    name: str
    impl: str
    """ours | d3rlpy | torch | gymnasium"""
    members: int
    """K: agents trained together by one update (1 for d3rlpy)."""
    value: float
    """Median over repeats, in `unit`."""
    unit: str
    """agent-updates/s (K agents updated once = K), upd/s (training rows: updates of the loop), GFLOP/s,
    calls/s, steps/s or min."""
    gflop_per_update: float | None = None
    """FLOPs of one unit of `value` (an agent's update; training rows: one update of the loop), counted by
    torch's FlopCounterMode (`flops.COUNTED` says what is and is not counted)."""
    bound_fraction: float | None = None
    """value * gflop_per_update / matmul GFLOP/s at the same thread count."""
    vs_d3rlpy: float | None = None
    """ours / d3rlpy on the same config: median over repeats of the ratio within a repeat (the two ran
    seconds apart). Recipe rows: d3rlpy time / our time."""
    vs_k1: float | None = None
    """this row / the same learner with K=1 (agent-updates/s), paired like `vs_d3rlpy`."""
    threads: int = 1
    spread: tuple[float, float] | None = None
    """(min, max) of `value` over repeats."""
    best: float | None = None
    """The best repeat (the least disturbed by other processes on a busy machine)."""
    vs_d3rlpy_best: float | None = None
    """best / d3rlpy's best."""
    per_cpu_s: float | None = None
    """`value` per CPU-second of this process (median): at 1 thread, the speed of an undisturbed core."""
    vs_d3rlpy_cpu: float | None = None
    """per_cpu_s / d3rlpy's per_cpu_s: the ratio of work per core, insensitive to other processes."""
    gflop_s: float | None = None
    """Achieved GFLOP/s: value * gflop_per_update."""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_info(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on (for the JSON next to the rows)."""
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "processor": _cpu_model(), "cores": available_cores(), "threads": threads or available_cores(),
        "device": device, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        from importlib.metadata import version

        info["d3rlpy"] = version("d3rlpy")
    except Exception:  # d3rlpy missing: the rows say so
        info["d3rlpy"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def rows_table(rows: Sequence[BenchRow], info: dict[str, Any] | None = None) -> Any:
    """The rows as a rich Table (what the rows ran and how the recipe was computed: `row_notes`)."""
    from rich.table import Table

    title = "bmrl-bench bench"
    if info:
        title += (f" on {info.get('processor')}, {info.get('cores')} cores, device {info.get('device')}, "
                  f"torch {info.get('torch')}, d3rlpy {info.get('d3rlpy')}")
    table = Table(title=title, caption=(
        "value: median of interleaved repeats; GFLOP/upd: counted by torch's FlopCounterMode (matmuls forward and "
        "backward; elementwise work, Adam's step and sampling not counted); GFLOP/s: value x GFLOP/upd; "
        "bound: GFLOP/s / matmul GFLOP/s at the same threads; "
        "x d3rlpy: ours / d3rlpy, median of the ratios within a repeat (recipe: d3rlpy time / ours); best: ratio of "
        "the best repeats; CPU: ratio of updates per CPU-second (work per core, blind to other processes)"))
    for col in ("what", "thr", "value", "unit", "GFLOP/upd", "GFLOP/s", "bound", "x d3rlpy", "best", "CPU",
                "x K=1"):
        table.add_column(col, justify="left" if col in ("what", "unit") else "right")
    for r in rows:
        table.add_row(
            r.name, str(r.threads) if r.section != "recipe" else "-",
            f"{r.value:,.0f}" if r.value >= 1000 else f"{r.value:.4g}", r.unit, _fmt(r.gflop_per_update, ".3f"),
            _fmt(r.gflop_s, ".1f"), "-" if r.bound_fraction is None else f"{100 * r.bound_fraction:.0f}%",
            _fmt(r.vs_d3rlpy, ".2f"), _fmt(r.vs_d3rlpy_best, ".2f"), _fmt(r.vs_d3rlpy_cpu, ".2f"), _fmt(r.vs_k1, ".2f"),
        )
    return table


def row_notes(rows: Sequence[BenchRow]) -> list[str]:
    """One line per row that carries a note (what d3rlpy ran, how a recipe row was computed)."""
    return [f"{r.name}: {r.note}" for r in rows if r.note]


def write_json(path: Any, rows: Sequence[BenchRow], info: dict[str, Any]) -> None:
    """Rows and machine info as JSON, written atomically."""
    import json
    from pathlib import Path

    from bmrl_bench.fsutil import atomic_write_text

    atomic_write_text(Path(path), json.dumps({"info": info, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")


@dataclass(frozen=True)
class BenchReport:
    """What `bench` returns: the rows in table order and what they were measured on."""

    rows: list[BenchRow]
    info: dict[str, Any]

    def table(self) -> Any:
        return rows_table(self.rows, self.info)

    def notes(self) -> list[str]:
        return row_notes(self.rows)

    def write_json(self, path: Any) -> None:
        write_json(path, self.rows, self.info)
