"""Where units of work run: in this process, in local worker processes, or on Ray.

Dataset building (one unit per behaviour shard, one for the family-wide expert, one
per task's reference scores) and evaluation (one unit per seed: fit + score) hand
their units to an `Executor`. Every executor runs the same unit function on the same
inputs, so results do not depend on where they ran.

- `LocalExecutor(1)` (the default) runs units inline, one after another, exactly
  as before executors existed: exceptions propagate at once.
- `LocalExecutor(n)` runs them in `n` spawned worker processes; a worker that dies
  is replaced and its unit retried; one unit's failure does not stop the others.
- `RayExecutor` submits Ray tasks with declared CPU/GPU/memory needs; the inputs
  shared by all units are put in the object store once and passed by reference.

Units report their own progress with `report(done, total, message, phase=...)`;
the executor turns it, and the queued/running/done/failed transitions it sees, into
`UnitEvent`s for one progress callback (see `bmrl_bench.unit_progress`).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from bmrl_bench.errors import BmrlError

T = TypeVar("T")
R = TypeVar("R")
UnitState = Literal["queued", "running", "done", "failed"]
UnitFn = Callable[[Any, Any], Any]  # (item, shared) -> result; a module-level function (picklable)
ResultFn = Callable[[int, Any], Any]  # (index, result) -> what map returns for it; runs in this process

MAX_RETRIES = 3  # a unit whose worker died is run again at most this often
# Variables a unit may read (suite cards, phase-1 cache, Minari root): workers see the caller's values.
FORWARDED_ENV = ("BMRL_BENCH_CARDS", "BMRL_BENCH_CACHE", "MINARI_DATASETS_PATH")
RAY_INSTALL_HINT = '--executor ray needs Ray: pip install -e ".[ray]"'


class ExecutorError(BmrlError):
    pass


class UnitFailedError(ExecutorError):
    pass


@dataclass(frozen=True)
class Resources:
    """What one unit needs; Ray schedules by it, local workers get `num_cpus` torch threads."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None


@dataclass(frozen=True)
class UnitEvent:
    job: str  # what the map is doing, e.g. "build halfcheetah-vel-lite"
    index: int
    label: str  # e.g. "shard 0 (tasks 0-3)", "seed 2"
    state: UnitState
    phase: str = ""  # inside a running unit: what it is doing now
    done: int = 0
    total: int = 0
    message: str = ""
    time: float = 0.0  # time.time() where the event was made
    error: str = ""  # failed: one line


UnitProgressFn = Callable[[UnitEvent], None]
# A plain progress display, (phase, done, total, message): what builds and evaluations take.
# `bmrl_bench.unit_progress.phase_progress` turns one into a `UnitProgressFn`.
ProgressFn = Callable[[str, int, int, str], None]


class Executor(ABC):
    """Where units run. `map` is the one interface; `LocalExecutor` and `RayExecutor` implement `_map` and `close`.
    A context manager: leaving it `close`s the executor."""

    name: str
    inline: bool  # True: units run in this process, one at a time
    progress: UnitProgressFn | None

    def map(
        self,
        fn: UnitFn,
        items: Sequence[Any],
        *,
        name: str,
        labels: Sequence[str] | None = None,
        resources: Resources = Resources(),
        shared: Any = None,
        on_result: ResultFn | None = None,
        progress: UnitProgressFn | None = None,
        hint: str = "",
    ) -> list[Any]:
        """`[fn(item, shared) for item in items]`, run where this executor runs things.

        `on_result(i, result)` runs here as soon as unit i finishes (in completion
        order), so callers can persist finished work before the rest is done; what it
        returns takes the result's place in the list (None frees the memory). If a unit
        fails, the others still finish (except inline) and then the failure is raised:
        a `BmrlError` from a unit as itself, anything else as `UnitFailedError`
        (one line, ending with `hint`).
        """
        emit = _Emitter(name, _labels(items, labels), progress or self.progress)
        return self._map(fn, items, emit, resources, shared, on_result, hint)

    @abstractmethod
    def _map(self, fn: UnitFn, items: Sequence[Any], emit: _Emitter, resources: Resources, shared: Any,
             on_result: ResultFn | None, hint: str) -> list[Any]:
        """`map`, its events going to `emit` (the job's name, the units' labels, the progress callback)."""

    @abstractmethod
    def close(self) -> None:
        """Free what the executor holds past a `map` (a Ray instance it started)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- in-unit progress


@dataclass
class _UnitContext:
    job: str
    index: int
    label: str
    sink: Callable[[UnitEvent], None]
    min_interval: float  # seconds between progress events (remote sinks are throttled)
    last: float = 0.0


_context: _UnitContext | None = None


def report(done: int, total: int, message: str = "", phase: str = "") -> None:
    """Progress of the unit running in this process; does nothing outside a unit."""
    ctx = _context
    if ctx is None:
        return
    now = time.time()
    if done < total and now - ctx.last < ctx.min_interval:
        return
    ctx.last = now
    ctx.sink(UnitEvent(ctx.job, ctx.index, ctx.label, "running", phase, done, total, message, now))


def _call_unit(
    fn: UnitFn,
    item: Any,
    shared: Any,
    ctx: _UnitContext,
    env: dict[str, str] | None,
    threads: int | None,
) -> Any:
    global _context
    if env is not None:
        os.environ.update(env)
    if threads is not None:  # workers only: the inline caller keeps its own thread count
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        else:  # torch takes its thread count from here when a unit imports it
            os.environ["OMP_NUM_THREADS"] = str(threads)
    ctx.sink(UnitEvent(ctx.job, ctx.index, ctx.label, "running", time=time.time()))
    old, _context = _context, ctx
    try:
        return fn(item, shared)
    finally:
        _context = old


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def _threads(resources: Resources) -> int:
    return max(1, int(resources.num_cpus))


def _raise_first(failures: list[tuple[int, str, BaseException]], name: str, n: int, hint: str) -> None:
    if not failures:
        return
    failures.sort(key=lambda f: f[0])
    index, label, exc = failures[0]
    if isinstance(exc, BmrlError):
        raise exc
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    raise UnitFailedError(
        f"{name}: {label} failed ({_one_line(exc)}){more}; {n - len(failures)} of {n} units finished"
        + (f"; {hint}" if hint else "")
    ) from exc


class _Emitter:
    """Driver-side event helper: job name, labels and one progress callback."""

    def __init__(self, name: str, labels: Sequence[str], progress: UnitProgressFn | None) -> None:
        self.name, self.labels, self.progress = name, list(labels), progress

    def __call__(self, index: int, state: UnitState, error: str = "") -> None:
        if self.progress is not None:
            self.progress(UnitEvent(self.name, index, self.labels[index], state, time=time.time(), error=error))

    def forward(self, event: UnitEvent) -> None:
        if self.progress is not None:
            self.progress(event)


def _labels(items: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [f"unit {i}" for i in range(len(items))]
    if len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} items")
    return list(labels)


# ---------------------------------------------------------------------------- local


def balanced_pool_size(n: int, slots: int) -> int:
    """Processes for `n` equal units on `slots` cores: the fewest that finish soonest.

    Rounds of `slots` leave cores idle in a last, partial round (3 seeds on 2 cores:
    two rounds, the second on one core); a few more processes than cores share them
    instead (3 at once: 1.5 unit-times, not 2). A round of j > slots units takes j / slots.
    """
    if n <= slots:
        return max(n, 1)

    def makespan(p: int) -> float:
        full, last = divmod(n, p)
        return full * max(1.0, p / slots) + (max(1.0, last / slots) if last else 0.0)

    return min(range(slots, n + 1), key=lambda p: (makespan(p), p))


class LocalExecutor(Executor):
    """Units in this process (`workers=1`) or in spawned worker processes (`None`: sized to the cores,
    `balanced_pool_size`)."""

    name = "local"

    def __init__(self, workers: int | None = 1, progress: UnitProgressFn | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers must be at least 1, not {workers}")
        self.workers = workers
        self.progress = progress
        self.max_retries = max_retries

    @property
    def inline(self) -> bool:
        return self.workers == 1

    def _pool_size(self, resources: Resources, n: int) -> int:
        if self.workers is not None:
            return max(1, min(self.workers, n))
        slots = max(1, int((os.cpu_count() or 1) // max(resources.num_cpus, 1.0)))
        return balanced_pool_size(n, slots)

    def _map(self, fn: UnitFn, items: Sequence[Any], emit: _Emitter, resources: Resources, shared: Any,
             on_result: ResultFn | None, hint: str) -> list[Any]:
        for i in range(len(items)):
            emit(i, "queued")
        if self.inline:
            return self._map_inline(fn, items, emit, shared, on_result)
        return self._map_pool(fn, items, emit, resources, shared, on_result, hint)

    def _map_inline(self, fn: UnitFn, items: Sequence[Any], emit: _Emitter, shared: Any,
                    on_result: ResultFn | None) -> list[Any]:
        results: list[Any] = []
        for i, item in enumerate(items):
            ctx = _UnitContext(emit.name, i, emit.labels[i], emit.forward, 0.0)
            try:
                result = _call_unit(fn, item, shared, ctx, None, None)
            except BaseException as e:
                emit(i, "failed", _one_line(e))
                raise  # inline: exactly as a plain loop would
            if on_result is not None:
                result = on_result(i, result)
            emit(i, "done")
            results.append(result)
        return results

    def _map_pool(
        self,
        fn: UnitFn,
        items: Sequence[Any],
        emit: _Emitter,
        resources: Resources,
        shared: Any,
        on_result: ResultFn | None,
        hint: str,
    ) -> list[Any]:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        # spawn: no inherited torch/OpenMP state, same start on Linux and macOS.
        ctx = mp.get_context("spawn")
        # SimpleQueue: a put is written before the unit returns (mp.Queue's feeder thread may lose
        # it when a worker dies); a new queue per pool, since a killed worker may hold the old one's lock.
        events: Any = None
        size = self._pool_size(resources, len(items))
        env, threads = _forwarded_env(), _threads(resources)
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        pending = list(range(len(items)))
        failures: list[tuple[int, str, BaseException]] = []

        def drain() -> None:
            while events is not None and not events.empty():
                emit.forward(events.get())

        pool: ProcessPoolExecutor | None = None
        running: dict[Future, int] = {}
        try:
            while pending or running:
                if pool is None:
                    events = ctx.SimpleQueue()
                    pool = ProcessPoolExecutor(size, mp_context=ctx, initializer=_pool_init,
                                               initargs=(events, shared, env, threads, os.getpid()))
                while pending and len(running) < size:  # only as many in flight as workers: 'running' means running
                    i = pending.pop(0)
                    attempts[i] += 1
                    running[pool.submit(_pool_unit, fn, i, emit.labels[i], emit.name, items[i])] = i
                finished, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                drain()
                broken = False
                for fut in finished:
                    i = running.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True  # a worker died (killed, out of memory): retried below
                        running[fut] = i
                        continue
                    except Exception as e:  # noqa: BLE001 - reported, raised after the others finish
                        failures.append((i, emit.labels[i], e))
                        emit(i, "failed", _one_line(e))
                        continue
                    results[i] = result if on_result is None else on_result(i, result)
                    emit(i, "done")
                if broken:
                    # Every unit in flight on a broken pool fails with it: run them again on a new pool.
                    drain()
                    for i in sorted(running.values(), reverse=True):
                        if attempts[i] <= self.max_retries:
                            pending.insert(0, i)
                            emit(i, "queued")
                        else:
                            failures.append((i, emit.labels[i], ExecutorError(f"its worker died {attempts[i]} times")))
                            emit(i, "failed", f"worker died {attempts[i]} times")
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = None
            drain()
        except BaseException:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        _raise_first(failures, emit.name, len(items), hint)
        return results

    def close(self) -> None:
        pass  # a pool lives only during its `map`


_pool_state: dict[str, Any] = {}


def _pool_init(events: Any, shared: Any, env: dict[str, str], threads: int, parent: int) -> None:
    # Runs once per worker process: the shared input is unpickled once per worker, not per unit.
    _pool_state.update(events=events, shared=shared, env=env, threads=threads)
    # `parent` is the pid the parent passed, not os.getppid() here: a parent killed while this
    # worker was still starting has already handed it to init, and would never be seen to die.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, every_s: float = 2.0) -> None:
    # A parent killed by SIGTERM/SIGKILL cannot shut its pool down; without this its workers
    # would train on, orphaned, until their unit ends.
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def _pool_unit(fn: UnitFn, index: int, label: str, job: str, item: Any) -> Any:
    events = _pool_state["events"]
    ctx = _UnitContext(job, index, label, events.put, 0.5)
    return _call_unit(fn, item, _pool_state["shared"], ctx, _pool_state["env"], _pool_state["threads"])


# ---------------------------------------------------------------------------- Ray


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(RAY_INSTALL_HINT) from None
    return ray


class _BoardImpl:
    """A Ray actor holding progress events until the driver collects them."""

    def __init__(self) -> None:
        self.events: list[UnitEvent] = []

    def post(self, event: UnitEvent) -> None:
        self.events.append(event)

    def drain(self) -> list[UnitEvent]:
        out, self.events = self.events, []
        return out


def _ray_unit(fn: UnitFn, index: int, label: str, job: str, item: Any, shared: Any, board: Any,
              env: dict[str, str], threads: int) -> Any:
    import ray

    def sink(event: UnitEvent) -> None:
        ref = board.post.remote(event)
        if event.phase == "" and event.total == 0:
            ray.get(ref)  # the 'running' event is in the board before the unit's result can be

    return _call_unit(fn, item, shared, _UnitContext(job, index, label, sink, 0.5), env, threads)


class RayExecutor(Executor):
    """Ray tasks: `address=None` starts a local Ray instance (`num_cpus` cores), "auto" joins a cluster.

    If Ray is already initialised in this process (a test, a notebook), that instance
    is used and left running on `close()`.
    """

    name = "ray"
    inline = False

    def __init__(self, address: str | None = None, num_cpus: int | None = None, progress: UnitProgressFn | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        self.ray = import_ray()
        self.address, self.num_cpus = address, num_cpus
        self.progress = progress
        self.max_retries = max_retries
        self._started = False

    def _ensure_init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        try:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                include_dashboard=False if self.address is None else None,
                log_to_driver=False,  # worker output (simulator warnings) would tear the progress display
                logging_level=logging.WARNING,
            )
        except ConnectionError as e:
            raise ExecutorError(
                f"cannot reach the Ray cluster at --address {self.address} ({_one_line(e)}); "
                "start one with `ray start --head` or leave --address out for a local instance"
            ) from None
        self._started = True

    def _map(self, fn: UnitFn, items: Sequence[Any], emit: _Emitter, resources: Resources, shared: Any,
             on_result: ResultFn | None, hint: str) -> list[Any]:
        ray = self.ray
        if not items:
            return []
        self._ensure_init()
        from ray.exceptions import RayTaskError

        options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                                   "max_retries": self.max_retries, "retry_exceptions": False}
        if resources.memory_mb is not None:
            options["memory"] = resources.memory_mb * 2**20
        remote = ray.remote(_ray_unit)
        board = ray.remote(num_cpus=0)(_BoardImpl).remote()
        shared_ref = ray.put(shared)  # once; every task gets a reference (zero-copy numpy on each node)
        env, threads = _forwarded_env(), _threads(resources)
        refs: dict[Any, int] = {}
        for i, item in enumerate(items):
            refs[remote.options(**options, name=f"{emit.name}: {emit.labels[i]}"[:100]).remote(
                fn, i, emit.labels[i], emit.name, item, shared_ref, board, env, threads)] = i
            emit(i, "queued")
        results: list[Any] = [None] * len(items)
        failures: list[tuple[int, str, BaseException]] = []

        def drain() -> None:
            for event in ray.get(board.drain.remote()):
                emit.forward(event)

        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                drain()
                for ref in ready:
                    i = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayTaskError as e:  # the unit raised: not retried (retry_exceptions=False)
                        cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
                        failures.append((i, emit.labels[i], cause))
                        emit(i, "failed", _one_line(cause))
                        continue
                    except ray.exceptions.RayError as e:  # the worker died more than max_retries times
                        failures.append((i, emit.labels[i], e))
                        emit(i, "failed", _one_line(e))
                        continue
                    results[i] = result if on_result is None else on_result(i, result)
                    emit(i, "done")
            drain()
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            ray.kill(board)
            del shared_ref
        _raise_first(failures, emit.name, len(items), hint)
        return results

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


# ---------------------------------------------------------------------------- choosing one

EXECUTORS = ("local", "ray")


def get_executor(name: str = "local", address: str | None = None, workers: int | None = 1,
                 progress: UnitProgressFn | None = None) -> Executor:
    """`local` with `workers` processes (1: inline, None: sized to the cores) or `ray` (`workers` caps a local
    Ray instance)."""
    if name == "local":
        if address is not None:
            raise ExecutorError("--address is a Ray cluster address; use it with --executor ray")
        return LocalExecutor(workers, progress)
    if name == "ray":
        return RayExecutor(address, workers if address is None else None, progress)
    raise ExecutorError(f"unknown executor '{name}'; use one of: {', '.join(EXECUTORS)}")


__all__ = [
    "Executor", "ExecutorError", "LocalExecutor", "ProgressFn", "RayExecutor", "Resources", "UnitEvent",
    "UnitFailedError", "UnitProgressFn", "get_executor", "import_ray", "report",
]
