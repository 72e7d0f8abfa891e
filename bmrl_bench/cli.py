"""`bmrl-bench`: a thin typer CLI; each command calls one public function."""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bmrl_bench.errors import BmrlError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Batch Meta RL benchmark: datasets, evaluation harness, leaderboard.")
datasets_app = typer.Typer(no_args_is_help=True, help="Build, inspect and verify the Minari datasets of a suite.")
app.add_typer(datasets_app, name="datasets")
figures_app = typer.Typer(no_args_is_help=True, help="Figures from the paper, re-made on our suites.")
app.add_typer(figures_app, name="figures")
console = Console()
err_console = Console(stderr=True)


@contextmanager
def progress_display() -> Iterator:
    """A rich progress display; returns the (phase, done, total, message) callback.

    Off a terminal (CI logs, `nohup`) rich draws nothing until the end, so there we print
    one plain line per phase at every 10% and at most every 30 s instead."""
    if not err_console.is_terminal:
        last: dict[str, tuple[int, float]] = {}

        def log_line(phase: str, done: int, total: int, msg: str) -> None:
            tenth, now = done * 10 // max(total, 1), time.monotonic()
            prev = last.get(phase)
            if prev is None or tenth > prev[0] or now - prev[1] >= 30 or done == total:
                last[phase] = (tenth, now)
                print(f"{phase}: {done}/{total} {msg}", file=sys.stderr, flush=True)

        yield log_line
        return
    with Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[msg]}"), console=err_console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(phase: str, done: int, total: int, msg: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("", total=total, phase=phase, msg=msg)
            bar.update(tasks[phase], completed=done, total=total, msg=msg[:80])

        yield update


EXECUTOR_HELP = "Where units of work run: local (this machine) or ray (a Ray cluster; pip install -e \".\\[ray]\")."
ADDRESS_HELP = "With --executor ray: the cluster to join (auto: the one `ray start` joined this machine to); default: start a local Ray instance."
WORKERS_HELP = "local: worker processes (default and 0: sized to the cores, e.g. 3 seeds on 2 cores run at once rather than in two rounds; 1: in this process). ray without --address: CPUs of the local instance (default: all)."


def make_executor(executor: str, address: Optional[str], workers: Optional[int]):  # noqa: ANN201 - an Executor
    from bmrl_bench.executor import get_executor

    if workers is not None and workers < 0:
        raise BmrlError(f"--workers {workers}: give a positive number, or 0 to size the pool to the cores")
    # Default: about one worker process per core (`balanced_pool_size`), one torch thread each; units are seeded, so the
    # results equal those of `--workers 1 --threads 1` (and of Ray).
    return get_executor(executor, address, workers or None)


@contextmanager
def executor_display(executor) -> Iterator:  # noqa: ANN001 - an Executor
    """Inline runs keep `progress_display`; other executors get one table of units (state, throughput).

    Yields the (phase, done, total, message) callback for work done in this process."""
    if executor.inline:
        with progress_display() as update:
            yield update
        return
    from bmrl_bench.unit_progress import unit_display

    with unit_display(err_console) as board:
        executor.progress = board.update
        yield board.phase


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '0,3,7' -> [0, 3, 7]."""
    try:
        seeds: list[int] = []
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                seeds.extend(range(int(a), int(b) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise BmrlError(f"--seeds '{text}' is not a seed list; write e.g. 0-4 or 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BmrlError(f"--seeds '{text}' must name distinct non-negative seeds, e.g. 0-4")
    return seeds


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise BmrlError(f"--set '{item}' must look like field=value, e.g. --set phase2_steps=2000")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# ---------------------------------------------------------------------------- datasets


@datasets_app.command("list")
def datasets_list() -> None:
    """Suites, their tasks and splits, and which datasets are built."""
    from bmrl_bench.build import missing_tasks, suite_bytes
    from bmrl_bench.data import datasets_root
    from bmrl_bench.suites import get_card, list_suites

    root = datasets_root()
    table = Table(title=f"bmrl-bench suites (datasets in {root})")
    table.add_column("suite", no_wrap=True)  # the name users type: never cut
    for col in ("train tasks", "test tasks", "episode", "per task", "built", "size"):
        table.add_column(col)
    for name in list_suites():
        card = get_card(name)
        missing = missing_tasks(card, root)
        built = card.num_tasks - len(missing)
        table.add_row(name, _task_list(card.train_tasks), _task_list(card.test_tasks),
                      str(card.episode_length), f"{card.behaviour.steps_per_task:,}", f"{built}/{card.num_tasks}",
                      _human_bytes(suite_bytes(card, root)) if built else "-")
    console.print(table)


def _task_list(params: list[float], most: int = 4) -> str:
    """`0, 90, 180`; a long list as its count and range, so the table fits a terminal."""
    if len(params) <= most:
        return ", ".join(f"{p:g}" for p in params)
    return f"{len(params)} over [{min(params):g}, {max(params):g}]"


@datasets_app.command("build")
def datasets_build(
    suite: str = typer.Argument(..., help="Suite name, e.g. pointgoal-3 (see `bmrl-bench datasets list`)."),
    force: bool = typer.Option(False, "--force", help="Rebuild every dataset, even those that verify."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    workers: Optional[int] = typer.Option(None, "--workers", help=WORKERS_HELP),
) -> None:
    """Collect the behaviour data of a suite and write it as Minari datasets (one torch thread: reproducible bytes)."""
    from bmrl_bench.build import build_suite

    t0 = time.perf_counter()
    with make_executor(executor, address, workers) as ex, executor_display(ex) as update:
        report = build_suite(suite, force=force, progress=update, executor=ex)
    took = time.perf_counter() - t0
    if not report.built:
        console.print(f"{suite}: all {len(report.skipped)} datasets already built and verified ({_human_bytes(report.bytes_on_disk)}).")
        return
    phases = ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
    console.print(f"{suite}: built {len(report.built)} datasets in {took:.0f}s ({phases}); {_human_bytes(report.bytes_on_disk)} on disk.")


@datasets_app.command("info")
def datasets_info(dataset_id: str = typer.Argument(..., help="e.g. bmrl/pointgoal-3/task-00-v0")) -> None:
    """Metadata of one dataset: task, split, behaviour recipe, reference scores, checksum."""
    from bmrl_bench.data import read_episodes, read_metadata
    from bmrl_bench.suites import parse_dataset_id

    parse_dataset_id(dataset_id)
    meta = read_metadata(dataset_id)
    ep = read_episodes(dataset_id)
    table = Table(title=dataset_id, show_header=False)
    rows = [
        ("suite", f"{meta['bmrl_suite']} v{meta['bmrl_suite_version']} ({meta['bmrl_family']})"),
        ("split", meta["bmrl_split"]),
        ("task parameter", f"{meta['bmrl_param_name']} = {meta['bmrl_task_param']}"),
        ("episodes / steps", f"{meta['total_episodes']} / {meta['total_steps']}"),
        ("episode returns", f"min {ep.episode_returns().min():.1f}, mean {ep.episode_returns().mean():.1f}, max {ep.episode_returns().max():.1f}"),
        ("behaviour", json.dumps(meta["bmrl_behaviour"])),
        ("ref_min_score", f"{meta['ref_min_score']:.2f} (uniform random policy)"),
        ("ref_max_score", f"{meta['ref_max_score']:.2f} ({meta['bmrl_ref_max_source']} policy)"),
        ("expert", _expert_summary(meta.get("bmrl_expert"))),
        ("checksum", meta["bmrl_checksum"]),
        ("env", json.loads(meta["env_spec"])["id"] if isinstance(meta.get("env_spec"), str) else str(meta.get("env_spec"))),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    console.print(table)


def _expert_summary(expert: dict | None) -> str:
    if not expert:
        return "not recorded (built before expert records; rebuild to refresh the references)"
    last = f", last check {expert['curve'][-1][1]:.1f}" if expert.get("curve") else ""
    state = "converged" if expert["converged"] else "stopped at max_steps before converging"
    return f"family-wide SAC, {expert['steps']} env steps, {state}{last}"


@datasets_app.command("verify")
def datasets_verify(suite: str = typer.Argument(..., help="Suite name.")) -> None:
    """Recompute every dataset's checksum; name each missing or damaged file."""
    from bmrl_bench.build import verify_suite

    rows = verify_suite(suite)
    bad = [r for r in rows if r.status != "ok"]
    for r in rows:
        console.print(f"{'ok  ' if r.status == 'ok' else 'FAIL'} {r.dataset_id}" + ("" if r.status == "ok" else f": {r.status}"))
    if bad:
        raise BmrlError(f"{len(bad)} of {len(rows)} datasets of {suite} failed verification; rebuild with `bmrl-bench datasets build {suite}`")
    console.print(f"{suite}: all {len(rows)} datasets verified.")


@datasets_app.command("publish")
def datasets_publish(suite: str = typer.Argument(..., help="Suite name.")) -> None:
    """Record the local build's checksums and reference scores as the suite's published build."""
    from bmrl_bench.published import publish_local_build

    path = publish_local_build(suite)
    console.print(f"wrote {path}")


# ---------------------------------------------------------------------------- eval


@app.command("eval")
def eval_cmd(
    algo: str = typer.Option(..., "--algo", help="Registered algorithm: time, batch-sac, pearl, bcq, random, oracle, ..."),
    suite: str = typer.Option("pointgoal-3", "--suite", help="Suite to train on (meta-train split) and score on (meta-test split)."),
    seeds: str = typer.Option("0-2", "--seeds", help="Runs, e.g. 0-4 or 0,1,2; at least 3 for the leaderboard."),
    protocol: str = typer.Option("zero-shot", "--protocol", help="zero-shot | offline-context | few-shot."),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="Scored episodes per test task (default: the suite card's)."),
    config: Optional[str] = typer.Option(None, "--config", help="Named config of the algorithm (default: the suite's or family's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: --set field=value (repeatable)."),
    out: Path = typer.Option(Path("results"), "--out", help="Folder for the results JSON."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu or cuda."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: all cores)."),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", help="Save each run's trained algorithm here."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP + " One unit per seed."),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    workers: Optional[int] = typer.Option(None, "--workers", help=WORKERS_HELP),
) -> None:
    """Fit an algorithm on a suite's meta-train datasets and score it zero-shot on the test tasks."""
    from bmrl_bench.data import load_suite
    from bmrl_bench.harness import evaluate, per_task_table
    from bmrl_bench.metrics import aggregate
    from bmrl_bench.results import load_results, normalized_scores

    _set_threads(threads)
    with make_executor(executor, address, workers) as ex, executor_display(ex) as update:
        # A seed's unit in a worker reserves --threads CPUs (at least 1) and uses that many torch threads.
        run = evaluate(algo, suite, protocol, parse_seeds(seeds), episodes, config, parse_overrides(set_), out, device, update,
                       checkpoints, executor=ex, unit_cpus=max(1, threads))
    loaded = load_suite(suite)
    table = Table(title=f"{algo} on {suite} ({protocol}), seeds {seeds}")
    for col in ("task", "param", "mean return", "normalized"):
        table.add_column(col, justify="right")
    for row in per_task_table(run.results, loaded):
        table.add_row(f"{row['task']:02d}", f"{row['param']:g}", f"{row['return']:.1f}", f"{row['normalized']:.3f}")
    console.print(table)
    scores = normalized_scores(load_results(run.path), {t.index: (t.ref_min, t.ref_max) for t in loaded.test_tasks})
    agg = aggregate(scores)
    console.print("  ".join(f"{k} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for k, v in agg.items()))
    console.print("wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.wall_time_s.items()))
    console.print(f"results: {run.path}")


def _set_threads(threads: int) -> None:
    import os

    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


# ---------------------------------------------------------------------------- bench


@app.command("bench")
def bench_cmd(
    quick: bool = typer.Option(False, "--quick", help="Time each case briefly: a smoke test (seconds), not a measurement."),
    device: str = typer.Option("cpu", "--device", help="torch device of the learners: cpu or cuda."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads of every learner row (0: all cores)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the rows and the machine description here."),
) -> None:
    """Training speed: our BCQ and SAC against d3rlpy's on identical configs and data, with FLOP bounds."""
    from bmrl_bench.runtime import keep_freed_memory, sleep_idle_omp_threads

    runtime = {"omp_passive": sleep_idle_omp_threads(), "keep_freed_memory": keep_freed_memory()}  # before torch loads
    from bmrl_bench.bench import bench_info, row_notes, rows_table, run_bench, write_json

    rows = run_bench(quick=quick, device=device, threads=threads or None, progress=lambda m: err_console.print(f"bench: {m}"))
    info = bench_info(threads or None, device) | {"runtime": runtime}
    out = console if console.is_terminal else Console(width=120)  # a pipe or a file gets the whole table
    out.print(rows_table(rows, info))
    for line in row_notes(rows):
        out.print(f"  {line}")
    if json_path is not None:
        write_json(json_path, rows, info)
        console.print(f"wrote {json_path}")


# ---------------------------------------------------------------------------- leaderboard


@app.command("submit")
def submit_cmd(
    results_file: Path = typer.Argument(..., help="A results JSON written by `bmrl-bench eval`."),
    board: Path = typer.Option(Path("leaderboard"), "--board", help="The leaderboard folder."),
) -> None:
    """Validate a results file, recompute its scores, add it to the leaderboard, re-render."""
    from bmrl_bench.leaderboard import render, submit
    from bmrl_bench.published import suite_reference

    entry = submit(results_file, board, suite_reference)
    render(board, suite_reference)
    console.print(f"accepted: {entry}")


@app.command("leaderboard")
def leaderboard_cmd(board: Path = typer.Option(Path("leaderboard"), "--board", help="The leaderboard folder.")) -> None:
    """Re-render leaderboard/README.md and leaderboard/index.html from the submissions."""
    from bmrl_bench.leaderboard import render
    from bmrl_bench.published import suite_reference

    render(board, suite_reference)
    console.print(f"rendered {board / 'README.md'} and {board / 'index.html'}")


@figures_app.command("misidentification")
def figures_misidentification(
    suite: str = typer.Option("pointgoal-3", "--suite", help="Suite whose meta-train data Batch SAC pools."),
    out: Path = typer.Option(Path("figures"), "--out", help="Folder for the PNG files."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
) -> None:
    """The paper's Figure 2 (left, middle): Batch SAC's Q estimates against its returns, and its trajectories."""
    from bmrl_bench.figures import misidentification

    _set_threads(0)
    for path in misidentification(suite, out, seed):
        console.print(f"wrote {path}")


@figures_app.command("time")
def figures_time(
    suite: str = typer.Option("pointgoal-3", "--suite", help="Suite to train tiMe on."),
    out: Path = typer.Option(Path("figures"), "--out", help="Folder for the PNG files."),
    seed: int = typer.Option(0, "--seed", help="Training seed (and episode seeds)."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="A tiMe saved by `eval --algo time --checkpoints DIR` (DIR/<run>); default: train one now."),
) -> None:
    """The paper's Figure 2 (right) on PointGoal; Figure 3's comparison on MuJoCo suites."""
    from bmrl_bench.figures import time_figure

    _set_threads(0)
    for path in time_figure(suite, out, seed, checkpoint=checkpoint):
        console.print(f"wrote {path}")


def main() -> None:
    from bmrl_bench.runtime import keep_freed_memory, sleep_idle_omp_threads

    # Before torch loads (measured in bmrl_bench/runtime.py: up to 20x on a busy machine, bit-identical).
    sleep_idle_omp_threads()
    keep_freed_memory()
    try:
        app()
    except BmrlError as e:
        from rich.markup import escape  # messages may hold brackets, e.g. pip extras ".[ray]"

        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing half-written was published (re-run to finish)")
        sys.exit(130)


if __name__ == "__main__":
    main()
