"""Unit functions and fault-injecting wrappers for the executor tests.

A separate, light module: worker processes import it to unpickle the units, and it
imports nothing heavy (no torch, no MuJoCo), so spawned workers start fast.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmrl_bench.errors import BmrlError
from bmrl_bench.executor import report


@dataclass
class KillOnce:
    """Runs `fn`; the first time it runs unit `label`, SIGKILLs its own worker.

    `at_step=0`: before the unit starts; otherwise mid-run, as soon as the unit reports
    progress past that step (deterministic, however fast the machine).
    """

    fn: Callable[[Any, Any], Any]
    marker: str
    label: Any
    at_step: int = 0

    def __call__(self, item: Any, shared: Any) -> Any:
        from bmrl_bench import executor

        label = getattr(item, "label", item)
        if label != self.label or os.path.exists(self.marker):
            return self.fn(item, shared)

        def kill() -> None:
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

        ctx = executor._context  # this unit's progress channel, set by the executor before calling us
        if self.at_step <= 0 or ctx is None:
            kill()
        report_progress = ctx.sink

        def sink(event: Any) -> None:
            report_progress(event)
            if event.total and event.done > self.at_step:
                kill()

        ctx.sink, ctx.min_interval = sink, 0.0  # see every progress report
        return self.fn(item, shared)


@dataclass
class FailOnce:
    """Runs `fn`, except that the first run of unit `label` raises."""

    fn: Callable[[Any, Any], Any]
    marker: str
    label: str

    def __call__(self, item: Any, shared: Any) -> Any:
        if getattr(item, "label", item) == self.label and not os.path.exists(self.marker):
            Path(self.marker).write_text("failed")
            raise RuntimeError(f"simulated crash in {self.label}")
        return self.fn(item, shared)


class Wrapping:
    """An executor whose units run wrapped (fault injection) on another executor."""

    def __init__(self, inner: Any, wrap: Callable[[Callable[[Any, Any], Any]], Callable[[Any, Any], Any]]) -> None:
        self.inner, self.wrap = inner, wrap
        self.name, self.inline = inner.name, inner.inline

    @property
    def progress(self) -> Any:
        return self.inner.progress

    def map(self, fn: Callable[[Any, Any], Any], items: Any, **kwargs: Any) -> list[Any]:
        return self.inner.map(self.wrap(fn), items, **kwargs)

    def close(self) -> None:
        self.inner.close()


def square(x: int, shared: Any) -> int:
    report(1, 2, "half way", phase="squaring")
    return x * x + (shared or 0)


def fail_on_three(x: int, shared: Any) -> int:
    if x == 3:
        raise ValueError("three is not allowed\nsecond line")
    if x == 4:
        raise BmrlError("four: a user error, one line")
    return x
