"""One progress display for units of work: per-unit state (queued, running, done, failed) and throughput.

`UnitBoard` folds the `UnitEvent`s of an executor into one row per unit; it knows
nothing about terminals, so tests assert on it directly. `unit_display()` shows a
board: a live rich table on a terminal, plain lines otherwise (CI logs, `nohup`),
where a redrawn table would print nothing until the end. `phase_progress` adapts a
plain (phase, done, total, message) display to unit events.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from rich.markup import escape

from bmrl_bench.executor import ProgressFn, UnitEvent, UnitProgressFn, UnitState

STATES: tuple[UnitState, ...] = ("queued", "running", "done", "failed")


@dataclass
class UnitRow:
    job: str
    index: int
    label: str
    state: UnitState = "queued"
    attempts: int = 0  # starts seen: above 1 means the unit was retried
    phase: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    started: float | None = None
    finished: float | None = None
    error: str = ""
    rate: float = 0.0  # progress steps per second of the current phase
    _mark: tuple[float, int] | None = None

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or now) - self.started


class UnitBoard:
    """Per-unit state from `UnitEvent`s; `update` is the executor's progress callback."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rows: dict[tuple[str, int, str], UnitRow] = {}
        self.t0 = clock()
        self.listeners: list[Callable[[UnitRow, UnitEvent], None]] = []

    def update(self, event: UnitEvent) -> None:
        key = (event.job, event.index, event.label)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = UnitRow(event.job, event.index, event.label)
        if row.state in ("done", "failed") and event.state in ("queued", "running"):
            return  # a late progress message of a finished unit
        now = event.time or self.clock()
        if event.state == "queued":
            row.state = "queued"
        elif event.state == "running":
            if event.total == 0 and not event.phase:  # the unit (re)started
                row.attempts += 1
                row.started, row.phase, row.done, row.total, row.message = now, "", 0, 0, ""
                row.rate, row._mark = 0.0, None
            else:
                mark = row._mark
                if mark is not None and event.phase == row.phase and event.done > mark[1] and now > mark[0]:
                    row.rate = (event.done - mark[1]) / (now - mark[0])
                elif event.phase != row.phase:
                    row.rate = 0.0
                row._mark = (now, event.done)
                row.phase, row.done, row.total, row.message = event.phase, event.done, event.total, event.message
            row.state = "running"
            if row.started is None:
                row.started = now
        else:
            row.state, row.finished, row.error = event.state, now, event.error
            if row.started is None:
                row.started = now
        for listener in self.listeners:
            listener(row, event)

    def phase(self, phase: str, done: int, total: int, message: str) -> None:
        """A (phase, done, total, message) progress call of work done here, shown as a row too."""
        key = ("here", hash(phase), phase)
        if key not in self.rows:
            self.update(UnitEvent("here", hash(phase), phase, "running", time=self.clock()))
        self.update(UnitEvent("here", hash(phase), phase, "running", phase=phase, done=done, total=total,
                              message=message, time=self.clock()))
        if done >= total:
            self.update(UnitEvent("here", hash(phase), phase, "done", time=self.clock()))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for row in self.rows.values():
            out[row.state] += 1
        return out

    def throughput(self) -> tuple[float, float]:
        """(units finished per hour so far, progress steps per second of the running units)."""
        hours = max(self.clock() - self.t0, 1e-9) / 3600
        done = sum(1 for r in self.rows.values() if r.state == "done")
        return done / hours, sum(r.rate for r in self.rows.values() if r.state == "running")

    def summary(self) -> str:
        c = self.counts()
        per_hour, steps = self.throughput()
        retried = sum(1 for r in self.rows.values() if r.attempts > 1)
        extra = f", {retried} retried" if retried else ""
        return (f"{c['queued']} queued, {c['running']} running, {c['done']} done, {c['failed']} failed{extra}; "
                f"{per_hour:.1f} units/h, {steps:,.0f} steps/s")

    def table(self, max_rows: int = 24) -> Any:
        """Running and failed units first, then queued, then the most recently finished; at most `max_rows`."""
        from rich.table import Table

        now = self.clock()
        order = {"running": 0, "failed": 1, "queued": 2, "done": 3}
        rows = sorted(self.rows.values(),
                      key=lambda r: (order[r.state], -(r.finished or 0.0) if r.state == "done" else 0.0))
        shown, hidden = rows[:max_rows], rows[max_rows:]
        caption = None
        if hidden:
            c = {s: sum(1 for r in hidden if r.state == s) for s in STATES}
            caption = "not shown: " + ", ".join(f"{n} {s}" for s, n in c.items() if n)
        table = Table(title=self.summary(), title_justify="left", caption=caption, caption_justify="left")
        # (name, justify, min width, max width): the message column gives way first on a narrow terminal.
        for col, justify, lo, hi in (("unit", "left", 12, 34), ("state", "left", 7, 7), ("progress", "right", 10, 32),
                                     ("rate /s", "right", 7, 9), ("time", "right", 7, 8), ("try", "right", 3, 3),
                                     ("", "left", 0, 48)):
            table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis",  # type: ignore[arg-type]
                             min_width=lo, max_width=hi, ratio=1 if col == "" else None)
        colour = {"queued": "dim", "running": "cyan", "done": "green", "failed": "red"}
        for row in shown:
            progress = f"{row.phase} {row.done}/{row.total}" if row.total else row.phase
            note = row.error if row.state == "failed" else row.message
            table.add_row(row.label, f"[{colour[row.state]}]{row.state}[/]", progress,
                          f"{row.rate:,.0f}" if row.state == "running" and row.rate else "",
                          _clock(row.elapsed(now)), str(row.attempts) if row.attempts else "", escape(note))
        return table


def phase_progress(progress: ProgressFn) -> UnitProgressFn:
    """Unit events as the (phase, done, total, message) calls of a plain progress display."""
    def on_event(event: UnitEvent) -> None:
        if event.state == "running" and event.total > 0:
            phase = f"{event.label}: {event.phase}" if event.phase else event.label
            progress(phase, event.done, event.total, event.message)
    return on_event


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class PlainLines:
    """Board listener for logs: a line per state change, progress at most every `every` s per unit."""

    def __init__(self, board: UnitBoard, out: TextIO = sys.stderr, every: float = 30.0) -> None:
        self.board, self.out, self.every = board, out, every
        self.last: dict[tuple[str, int, str], float] = {}
        self.queued: dict[str, int] = {}

    def __call__(self, row: UnitRow, event: UnitEvent) -> None:
        key = (row.job, row.index, row.label)
        now = self.board.clock()
        if event.state == "queued":
            if row.attempts:  # queued again: its worker died
                self._line(f"{row.label}: worker lost, queued again")
            return
        if event.state == "running" and event.total == 0 and not event.phase:
            retry = f" (attempt {row.attempts})" if row.attempts > 1 else ""
            self._line(f"{row.label}: running{retry}")
            self.last[key] = now
        elif event.state == "running":
            if now - self.last.get(key, 0.0) >= self.every or event.done >= event.total:
                self.last[key] = now
                rate = f", {row.rate:,.0f}/s" if row.rate else ""
                self._line(f"{row.label}: {row.phase} {row.done}/{row.total}{rate} {row.message}".rstrip())
        elif event.state == "done":
            self._line(f"{row.label}: done in {_clock(row.elapsed(now))} [{self.board.summary()}]")
        else:
            self._line(f"{row.label}: FAILED ({row.error}) [{self.board.summary()}]")

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


@contextmanager
def unit_display(console: Any = None, plain: bool | None = None) -> Iterator[UnitBoard]:
    """A board shown live (rich table on a terminal, plain lines otherwise); yields the board."""
    from rich.console import Console

    console = console or Console(stderr=True)
    board = UnitBoard()
    if plain if plain is not None else not console.is_terminal:
        board.listeners.append(PlainLines(board, console.file))
        yield board
        print(board.summary(), file=console.file, flush=True)
        return
    from rich.live import Live

    class _View:
        def __rich__(self) -> Any:
            return board.table()

    with Live(_View(), console=console, refresh_per_second=2, transient=False):
        yield board
