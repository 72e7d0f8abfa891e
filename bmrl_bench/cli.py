"""`bmrl-bench`: a thin typer CLI.

Each command checks its inputs (`bmrl_bench.cli_inputs`, before any work), calls one public
function with keyword arguments and prints what it returns. Heavy modules are imported inside
the commands, so a bad input is answered in about a second.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from bmrl_bench import cli_inputs as inputs
from bmrl_bench.cli_inputs import MAX_EPISODES, MAX_SEED, MAX_THREADS, InputError
from bmrl_bench.errors import BmrlError

try:  # recent typer releases ship their own copy of click
    from typer._click import exceptions as click_errors
except ImportError:
    from click import exceptions as click_errors
# `bmrl-bench` alone shows the help; click before 8.2 shows it without raising this.
NO_ARGS_IS_HELP: Any = getattr(click_errors, "NoArgsIsHelpError", ())

if TYPE_CHECKING:
    from bmrl_bench.executor import ProgressFn

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Batch Meta RL benchmark: datasets, evaluation harness, leaderboard.")
datasets_app = typer.Typer(no_args_is_help=True, help="Build, inspect and verify the Minari datasets of a suite.")
app.add_typer(datasets_app, name="datasets")
figures_app = typer.Typer(no_args_is_help=True, help="Figures from the paper, re-made on our suites.")
app.add_typer(figures_app, name="figures")
console = Console()
err_console = Console(stderr=True)


@contextmanager
def progress_display() -> Iterator[ProgressFn]:
    """A rich progress display; yields the (phase, done, total, message) callback.

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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[msg]}"), console=err_console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int, msg: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("", total=total, phase=phase, msg=msg)
            bar.update(tasks[phase], completed=done, total=total, msg=msg[:80])

        yield update


EXECUTOR_HELP = "Where units of work run: local (this machine) or ray (a Ray cluster; pip install -e \".\\[ray]\")."
ADDRESS_HELP = ("With --executor ray: the cluster to join (auto: the one `ray start` joined this machine to); "
                "default: start a local Ray instance.")
WORKERS_HELP = ("local: worker processes (default and 0: sized to the cores, e.g. 3 seeds on 2 cores run at once "
                "rather than in two rounds; 1: in this process). ray without --address: CPUs of the local instance "
                "(default: all).")


def make_executor(executor: str, address: str | None, workers: int | None) -> Any:
    """An `Executor` (a context manager). Default: about one worker process per core (`balanced_pool_size`), one
    torch thread each; units are seeded, so the results equal those of `--workers 1 --threads 1` (and of Ray)."""
    from bmrl_bench.executor import get_executor

    return get_executor(executor, address, workers or None)


@contextmanager
def executor_display(executor: Any) -> Iterator[ProgressFn]:
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


def _set_threads(threads: int) -> None:
    import os

    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def _human_bytes(n: float, digits: int = 1) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{digits}f} {unit}"
        n /= 1024
    return f"{n:.{digits}f} TB"


SUITE_ARG = typer.Argument(..., help="Suite name, e.g. pointgoal-3 (see `bmrl-bench datasets list`).")
EXECUTOR_OPT = typer.Option("local", "--executor", help=EXECUTOR_HELP)
ADDRESS_OPT = typer.Option(None, "--address", help=ADDRESS_HELP)
WORKERS_OPT = typer.Option(None, "--workers", min=0, max=MAX_THREADS, help=WORKERS_HELP)
THREADS_HELP = "torch CPU threads (0: all cores)."
TIER_HELP = ("Data tier: replay (the paper's replay buffers, the default), random, medium, expert or medium-expert "
             "(roll-outs of the suite's saved policies; built with `datasets build SUITE --tier TIER`).")
TIER_OPT = typer.Option("replay", "--tier", help=TIER_HELP)

# ---------------------------------------------------------------------------- datasets


@datasets_app.command("list")
def datasets_list(tier: str = TIER_OPT) -> None:
    """Suites, their tasks and splits, and which datasets (of a data tier) are built."""
    inputs.check_tier(tier)
    from rich import box
    from rich.table import Table

    from bmrl_bench.data import datasets_status

    status = datasets_status(tier=tier)
    # Fits 80 columns: no rules between columns, one space of padding, the size inside `built`.
    # Only the task lists may wrap, on narrower terminals.
    shown = "" if tier == "replay" else f" ({tier} tier)"
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0),
                  caption=f"datasets in {status.root}{shown}", caption_justify="left")
    table.add_column("suite", no_wrap=True)  # the name users type: never cut
    table.add_column("train tasks")
    table.add_column("test tasks")
    table.add_column("steps", justify="right", no_wrap=True)  # per episode
    table.add_column("built", no_wrap=True)
    for suite in status.suites:
        size = f", {_human_bytes(suite.bytes, digits=0)}" if suite.built else ""
        table.add_row(suite.name, _task_list(suite.train_tasks), _task_list(suite.test_tasks),
                      str(suite.episode_length), f"{suite.built}/{suite.num_tasks}{size}")
    console.print(table)


def _task_list(params: Sequence[float], most: int = 3) -> str:
    """`0, 90, 180`; a longer list as its count and range, so the table fits a terminal."""
    if len(params) <= most:
        return ", ".join(f"{p:g}" for p in params)
    return f"{len(params)} in [{min(params):g}, {max(params):g}]"


@datasets_app.command("build")
def datasets_build(
    suite: str = SUITE_ARG,
    force: bool = typer.Option(False, "--force", help="Rebuild every dataset, even those that verify."),
    executor: str = EXECUTOR_OPT,
    address: str | None = ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    tier: str = TIER_OPT,
) -> None:
    """Collect the behaviour data of a suite and write it as Minari datasets (one torch thread: reproducible bytes).

    Another --tier than replay also builds what replay misses, then rolls out the saved policies."""
    inputs.check_suite(suite)
    inputs.check_tier(tier)
    inputs.check_executor(executor, address)
    from bmrl_bench.builder import build_suite

    t0 = time.perf_counter()
    with make_executor(executor, address, workers) as ex, executor_display(ex) as update:
        report = build_suite(suite, force=force, progress=update, executor=ex, tier=tier)
    took = time.perf_counter() - t0
    size = _human_bytes(report.bytes_on_disk)
    what = "datasets" if tier == "replay" else f"{tier} datasets"
    if not report.built:
        console.print(f"{suite}: all {len(report.skipped)} {what} already built and verified ({size}).")
        return
    phases = ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
    console.print(f"{suite}: built {len(report.built)} {what} in {took:.0f}s ({phases}); {size} on disk.")
    if tier == "replay" and "expert" not in report.units_run:  # references from an expert it did not train
        from bmrl_bench.published import saved_expert_note

        console.print(saved_expert_note(suite))


@datasets_app.command("info")
def datasets_info(
    dataset_id: str = typer.Argument(..., help="e.g. bmrl/pointgoal-3/task-00-v0 (or task-00-expert-v0)"),
    tier: str | None = typer.Option(None, "--tier", help="Show this data tier's dataset of the id's task instead."),
) -> None:
    """Metadata of one dataset: task, split, behaviour recipe, reference scores, checksum."""
    inputs.check_dataset_id(dataset_id)
    if tier is not None:
        dataset_id = inputs.tier_dataset_id(dataset_id, inputs.check_tier(tier))
    import json

    from rich.table import Table

    from bmrl_bench.data import dataset_info

    info = dataset_info(dataset_id)
    meta = info.metadata
    env_spec = meta.get("env_spec")
    rows = [
        ("suite", f"{meta['bmrl_suite']} v{meta['bmrl_suite_version']} ({meta['bmrl_family']})"),
        ("split", meta["bmrl_split"]),
        ("task parameter", f"{meta['bmrl_param_name']} = {meta['bmrl_task_param']}"),
        ("episodes / steps", f"{meta['total_episodes']} / {meta['total_steps']}"),
        ("episode returns", f"min {info.returns_min:.1f}, mean {info.returns_mean:.1f}, max {info.returns_max:.1f}"),
        *([("tier", json.dumps(meta["bmrl_tier"]))] if "bmrl_tier" in meta else []),
        ("behaviour", json.dumps(meta["bmrl_behaviour"])),
        ("ref_min_score", f"{meta['ref_min_score']:.2f} (uniform random policy)"),
        ("ref_max_score", f"{meta['ref_max_score']:.2f} ({meta['bmrl_ref_max_source']} policy)"),
        ("expert", _expert_summary(meta.get("bmrl_expert"))),
        ("checksum", meta["bmrl_checksum"]),
        ("env", json.loads(env_spec)["id"] if isinstance(env_spec, str) else str(env_spec)),
    ]
    table = Table(title=dataset_id, show_header=False)
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
def datasets_verify(
    suite: str = SUITE_ARG,
    replay: str | None = typer.Option(None, "--replay", metavar="N", help=(
        "Also replay N episodes of each dataset (spread over it) in its recovered env; name the first mismatch.")),
    tier: str = TIER_OPT,
) -> None:
    """Recompute every dataset's checksum; name each missing or damaged file. --replay N also re-runs episodes."""
    card = inputs.check_suite(suite)
    inputs.check_tier(tier)
    count = None if replay is None else inputs.parse_replay_count(replay)
    inputs.check_tier_built(card, tier)
    from bmrl_bench.data import verify_suite
    from bmrl_bench.tiers import build_command

    rows = verify_suite(suite, tier)
    for r in rows:
        console.print("ok   " + r.dataset_id if r.status == "ok" else f"FAIL {r.dataset_id}: {r.status}")
    bad = [r.dataset_id for r in rows if r.status != "ok"]
    if count is not None:
        bad += _replay_lines(suite, count, [i for i, r in enumerate(rows) if r.status != "missing"], tier)
    if bad:
        raise BmrlError(f"{len(set(bad))} of {len(rows)} datasets of {suite} failed verification; "
                        f"rebuild with {build_command(suite, tier)}")
    console.print(f"{suite}: all {len(rows)} datasets verified" + ("." if count is None else ", replays bit-exact."))


def _replay_lines(suite: str, count: int, indices: list[int], tier: str = "replay") -> list[str]:
    """Replay the datasets that exist (a tampered one shows where it differs); one line each; the ids that failed."""
    from bmrl_bench.replay import replay_suite

    failed = []
    for r in replay_suite(suite, count, indices=indices, tier=tier):
        if r.ok:
            console.print(f"replay ok   {r.dataset_id}: {len(r.episodes)} episodes, {r.steps} steps bit-exact "
                          f"({r.seconds:.1f}s)", soft_wrap=True)
        else:
            console.print(f"replay FAIL {escape(r.problem or '')}", soft_wrap=True)
            failed.append(r.dataset_id)
    return failed


@datasets_app.command("publish")
def datasets_publish(suite: str = SUITE_ARG, tier: str = TIER_OPT) -> None:
    """Record the local build's checksums and reference scores as the suite's published build (of a data tier)."""
    inputs.check_suite(suite)
    inputs.check_tier(tier)
    from bmrl_bench.published import publish_local_build

    console.print(f"wrote {publish_local_build(suite, tier)}")


@datasets_app.command("card")
def datasets_card(
    suite: str = SUITE_ARG,
    out: Path | None = typer.Option(None, "--out", help=(
        "Folder for index.html, its PNGs and card.json; replaced as a whole (default: docs/cards/SUITE; "
        "run from the repository root, that is where the leaderboard page links to)")),
) -> None:
    """A static page of a built suite: tasks and splits, reference scores and their sources, the expert, returns."""
    card = inputs.check_suite(suite)
    out = inputs.check_card_folder(out if out is not None else Path("docs") / "cards" / suite)
    inputs.check_suite_built(card)
    from bmrl_bench.dataset_card import write_card

    paths = write_card(suite=suite, out=out)
    console.print(f"wrote {out / 'index.html'} ({len(paths)} files in {out})")


# ---------------------------------------------------------------------------- eval


@app.command("eval")
def eval_cmd(
    algo: str = typer.Option(..., "--algo", help="Registered algorithm: time, batch-sac, pearl, bcq, random, oracle."),
    suite: str = typer.Option("pointgoal-3", "--suite",
                              help="Suite to train on (meta-train split) and score on (meta-test split)."),
    seeds: str = typer.Option("0-2", "--seeds", help="Runs, e.g. 0-4 or 0,1,2; at least 3 for the leaderboard."),
    protocol: str = typer.Option("zero-shot", "--protocol", help="zero-shot | offline-context | few-shot."),
    episodes: int | None = typer.Option(None, "--episodes", min=1, max=MAX_EPISODES,
                                           help="Scored episodes per test task (default: the suite card's)."),
    config: str | None = typer.Option(None, "--config",
                                         help="Named config of the algorithm (default: the suite's or family's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: --set field=value (repeatable)."),
    out: Path = typer.Option(Path("results"), "--out", help="Folder for the results JSON."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda[:N] or mps."),
    threads: int = typer.Option(0, "--threads", min=0, max=MAX_THREADS, help=THREADS_HELP),
    checkpoints: Path | None = typer.Option(None, "--checkpoints", help="Save each run's trained algorithm here."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP + " One unit per seed."),
    address: str | None = ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    tier: str = TIER_OPT,
) -> None:
    """Fit an algorithm on a suite's meta-train datasets and score it zero-shot on the test tasks."""
    request = inputs.eval_request(algo=algo, suite=suite, seeds=seeds, protocol=protocol, episodes=episodes,
                                  config=config, set_=set_, out=out, device=device, checkpoints=checkpoints,
                                  executor=executor, address=address, tier=tier)
    from bmrl_bench.harness import evaluate

    _set_threads(threads)
    with make_executor(executor, address, workers) as ex, executor_display(ex) as update:
        run = evaluate(
            request.algorithm, request.suite_name, protocol_name=request.protocol_name, seeds=request.seeds,
            episodes=request.episodes, config_name=request.config_name, overrides=request.overrides,
            out_dir=request.out_dir, device=request.device, progress=update, checkpoint_dir=request.checkpoint_dir,
            executor=ex, unit_cpus=max(1, threads),  # a seed's unit in a worker reserves --threads CPUs
            tier=request.tier,
        )
    _print_eval(run, title=f"{algo} on {request.suite_name} ({request.protocol_name}), seeds {seeds}")


def _print_eval(run: Any, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "param", "mean return", "normalized"):
        table.add_column(col, justify="right")
    for row in run.per_task:
        table.add_row(f"{row['task']:02d}", f"{row['param']:g}", f"{row['return']:.1f}", f"{row['normalized']:.3f}")
    console.print(table)
    console.print("  ".join(f"{k} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for k, v in run.aggregates.items()))
    console.print("wall time: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.wall_time_s.items()))
    console.print(f"results: {run.path}")


# ---------------------------------------------------------------------------- bench


@app.command("bench")
def bench_cmd(
    quick: bool = typer.Option(False, "--quick",
                               help="Time each case briefly: a smoke test (seconds), not a measurement."),
    device: str = typer.Option("cpu", "--device", help="torch device of the learners: cpu, cuda[:N] or mps."),
    threads: int = typer.Option(0, "--threads", min=0, max=MAX_THREADS,
                                help="torch CPU threads of every learner row (0: all cores)."),
    json_path: Path | None = typer.Option(None, "--json",
                                          help="Also write the rows and the machine description here."),
    only: str | None = typer.Option(None, "--only", help=(
        "Comma-separated row groups (default: all): learners (BCQ and SAC against d3rlpy, sampling, the recipe), "
        "time, pearl, batch-sac, expert, collection (each training loop on pointgoal-3 and halfcheetah-vel-lite)."
    )),
) -> None:
    """Training speed: our BCQ and SAC against d3rlpy's, and every training loop, with counted FLOPs and bounds."""
    if json_path is not None:
        inputs.check_file_to_write(json_path, "--json")
    from bmrl_bench.bench import GROUPS, bench  # loads no torch: the settings below still take effect

    groups = [g.strip() for g in only.split(",") if g.strip()] if only else None
    bad = [g for g in groups or [] if g not in GROUPS]
    if bad or groups == []:
        raise InputError(f"--only: unknown row group '{bad[0] if bad else only}'; groups: {', '.join(GROUPS)}")
    from bmrl_bench.runtime import keep_freed_memory, sleep_idle_omp_threads

    # main() applies them for every command; again here, before `check_device` may load torch, for the JSON's record
    runtime = {"omp_passive": sleep_idle_omp_threads(), "keep_freed_memory": keep_freed_memory()}
    inputs.check_device(device)
    report = bench(quick=quick, device=device, threads=threads or None, only=groups, runtime=runtime,
                   json_path=json_path, progress=lambda m: err_console.print(f"bench: {m}"))
    out = console if console.is_terminal else Console(width=120)  # a pipe or a file gets the whole table
    out.print(report.table())
    for line in report.notes():
        out.print(f"  {line}")
    if json_path is not None:
        console.print(f"wrote {json_path}")


# ---------------------------------------------------------------------------- leaderboard

BOARD_WHAT = "the leaderboard folder (it holds submissions/)"


@app.command("submit")
def submit_cmd(
    results_file: Path = typer.Argument(..., help="A results JSON written by `bmrl-bench eval`."),
    board: Path = typer.Option(Path("leaderboard"), "--board", help="The leaderboard folder."),
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints", help="The folder `eval --checkpoints DIR` wrote for these results: the board re-runs"
        " every seed from it and files the entry as verified if every episode agrees (else: self-reported)."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP + " One unit per seed of the re-run."),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    workers: int = typer.Option(1, "--workers", min=0, max=MAX_THREADS,
                                help="local: worker processes of the re-run (1: in this process; 0: sized to the "
                                     "cores)."),
    threads: int = typer.Option(1, "--threads", min=0, max=MAX_THREADS,
                                help="torch CPU threads of the re-run (0: all cores; 1, the default, is fastest for"
                                     " agents acting one step at a time)."),
) -> None:
    """Validate a results file, recompute its scores, add it to the leaderboard, re-render."""
    inputs.check_existing_file(results_file, "RESULTS_FILE", "a results JSON written by `bmrl-bench eval`")
    inputs.check_folder_to_write(board, "--board")
    if checkpoints is not None:
        inputs.check_existing_folder(checkpoints, "--checkpoints",
                                     "the folder `bmrl-bench eval --checkpoints DIR` wrote")
        inputs.check_executor(executor, address)
    from bmrl_bench.leaderboard import submit_and_render
    from bmrl_bench.published import suite_reference

    if checkpoints is None:
        entry = submit_and_render(results_file, board, suite_reference)
    else:
        _set_threads(threads)
        with make_executor(executor, address, workers) as ex, executor_display(ex) as update:
            entry = submit_and_render(results_file, board, suite_reference, checkpoints=checkpoints, executor=ex,
                                      progress=update, unit_cpus=max(1, threads))
        check = entry.verification
        console.print(f"re-evaluated {len(entry.seeds)} seeds from {checkpoints} in {check.wall_time_s:.1f} s:"
                      f" every episode agrees (max |difference| {check.max_abs_diff:.3g})")
    console.print(f"accepted: {escape(str(entry))}")


@app.command("leaderboard")
def leaderboard_cmd(
    board: Path = typer.Option(Path("leaderboard"), "--board", help="The leaderboard folder."),
    verified_only: bool = typer.Option(False, "--verified-only",
                                       help="Print the tables of verified entries only (Markdown); write nothing."),
) -> None:
    """Re-render leaderboard/README.md and leaderboard/index.html from the submissions."""
    inputs.check_existing_folder(board, "--board", BOARD_WHAT)
    from bmrl_bench.leaderboard import markdown, render
    from bmrl_bench.published import suite_reference

    if verified_only:
        # typer.echo, not rich: Markdown [links](...) stay as written.
        typer.echo(markdown(board, suite_reference, verified_only=True), nl=False)
        return
    render(board, suite_reference)
    console.print(f"rendered {board / 'README.md'} and {board / 'index.html'}")


# ---------------------------------------------------------------------------- figures

FIGURES_OUT = typer.Option(Path("figures"), "--out", help="Folder for the PNG files.")


@figures_app.command("misidentification")
def figures_misidentification(
    suite: str = typer.Option("pointgoal-3", "--suite", help="Suite whose meta-train data Batch SAC pools."),
    out: Path = FIGURES_OUT,
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Training seed."),
) -> None:
    """The paper's Figure 2 (left, middle): Batch SAC's Q estimates against its returns, and its trajectories."""
    inputs.check_suite(suite)
    inputs.check_folder_to_write(out, "--out")
    from bmrl_bench.figures import misidentification

    _set_threads(0)
    for path in misidentification(suite, out, seed):
        console.print(f"wrote {path}")


@figures_app.command("time")
def figures_time(
    suite: str = typer.Option("pointgoal-3", "--suite", help="Suite to train tiMe on."),
    out: Path = FIGURES_OUT,
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Training seed (and episode seeds)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint",
        help="A tiMe saved by `eval --algo time --checkpoints DIR` (DIR/<run>); default: train one now."),
) -> None:
    """The paper's Figure 2 (right) on PointGoal; Figure 3's comparison on MuJoCo suites."""
    inputs.check_suite(suite)
    inputs.check_folder_to_write(out, "--out")
    if checkpoint is not None:
        inputs.check_existing_folder(checkpoint, "--checkpoint", "a checkpoint folder saved by `eval --checkpoints`")
    from bmrl_bench.figures import time_figure

    _set_threads(0)
    for path in time_figure(suite, out, seed, checkpoint=checkpoint):
        console.print(f"wrote {path}")


# ---------------------------------------------------------------------------- entry point


def _say_error(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def main() -> None:
    """The console script: typer's parsing, and every error as one line (exit 2: usage, 1: failure)."""
    from bmrl_bench.runtime import keep_freed_memory, sleep_idle_omp_threads

    # Before torch loads (measured in bmrl_bench/runtime.py: up to 20x on a busy machine, bit-identical).
    sleep_idle_omp_threads()
    keep_freed_memory()
    try:
        code = app(standalone_mode=False)  # click's errors come back here instead of as a multi-line box
    except NO_ARGS_IS_HELP as e:
        print(e.ctx.get_help())
        sys.exit(0)
    except click_errors.UsageError as e:
        where = f"; see `{e.ctx.command_path} --help`" if e.ctx is not None else ""
        _say_error(e.format_message().rstrip(".") + where)
        sys.exit(2)
    except InputError as e:
        _say_error(str(e))
        sys.exit(2)
    except BmrlError as e:
        _say_error(str(e))
        sys.exit(1)
    except click_errors.ClickException as e:
        _say_error(e.format_message())
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted; nothing half-written was published (re-run to finish)")
        sys.exit(130)
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        err_console.print("interrupted; nothing half-written was published (re-run to finish)")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
