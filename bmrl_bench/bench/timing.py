"""Interleaved timing: every repeat runs every case once, in an order rotated by one per repeat."""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Timed:
    """What a self-timed step measured itself: `count` updates in `wall` seconds and `cpu` CPU-seconds."""

    count: float
    wall: float
    cpu: float


@dataclass
class Case:
    key: str
    step: Callable[[], object]
    units: float  # what one call counts for (agent-updates, FLOPs, calls, env steps); self-timed: one update
    threads: int
    self_timed: bool = False  # `step` runs a whole loop once per repeat and returns what it timed (`Timed`)
    samples: list[float] = field(default_factory=list)  # units per wall second, one per repeat
    cpu_samples: list[float] = field(default_factory=list)  # units per CPU-second of this process

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return max(self.samples)

    @property
    def per_cpu_s(self) -> float:
        return statistics.median(self.cpu_samples)

    def paired(self, other: Case) -> float:
        """Median over repeats of this case's rate / the other's in the same repeat."""
        return statistics.median(a / b for a, b in zip(self.samples, other.samples))


def measure(cases: Sequence[Case], repeats: int, min_time: float, min_calls: int, warmup: int,
             sync: Callable[[], None]) -> None:
    """Interleaved timing: every repeat runs every case once, rotating the order each repeat."""
    import torch

    for c in cases:
        torch.set_num_threads(c.threads)
        for _ in range(min(warmup, 1) if c.self_timed else warmup):  # a self-timed run leaves its set-up out
            c.step()
    sync()
    for r in range(repeats):
        shift = r % len(cases)
        for c in [*cases[shift:], *cases[:shift]]:
            torch.set_num_threads(c.threads)
            if c.self_timed:
                t = c.step()
                assert isinstance(t, Timed), f"{c.key}: a self-timed step returns a Timed"
                c.samples.append(t.count * c.units / t.wall)
                c.cpu_samples.append(t.count * c.units / max(t.cpu, 1e-9))
                continue
            calls, t0, c0 = 0, time.perf_counter(), time.process_time()
            while calls < min_calls or time.perf_counter() - t0 < min_time:
                c.step()
                calls += 1
            sync()
            c.samples.append(calls * c.units / (time.perf_counter() - t0))
            c.cpu_samples.append(calls * c.units / max(time.process_time() - c0, 1e-9))


def cycle(fn: Callable[[Any], object], items: Sequence[Any]) -> Callable[[], object]:
    state = {"i": 0}

    def step() -> object:
        i = state["i"]
        state["i"] = i + 1
        return fn(items[i % len(items)])

    return step


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
