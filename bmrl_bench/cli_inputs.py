"""Every command-line input, checked before any work starts.

The CLI calls these right after typer has parsed the command line, so a bad input is refused
before a dataset is loaded, built or trained on, and before anything is written. Each raises
`InputError`, a usage error: the CLI prints its one line and exits 2, as typer does for the
inputs it checks itself (types and ranges declared on the options). Failures during the work
itself stay plain `BmrlError`s (exit 1).

Imports stay light at module level; the checks that need the registry, torch or a suite card
import them when they run.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bmrl_bench.errors import BmrlError
from bmrl_bench.tiers import DEFAULT_TIER

# Seeds feed numpy's legacy seeding (below 2**32) and `protocols.episode_seed`; the board takes at most 200.
MAX_SEED = 2**31 - 1
MAX_SEEDS = 200  # as bmrl_bench.results.MAX_SEEDS (kept in step by tests/test_cli_bad_inputs.py)
MAX_EPISODES = 10_000  # as bmrl_bench.results.MAX_EPISODES: a results file holds no more per task
MAX_THREADS = 1024  # a sanity bound on --threads and --workers
MAX_REPLAY = 1_000_000  # --replay: no dataset holds more episodes (the largest card has a million steps per task)


class InputError(BmrlError):
    """A bad command-line input: the CLI exits 2 (usage error)."""


@contextmanager
def as_input_error() -> Iterator[None]:
    """Re-raise a `BmrlError` from a lookup (unknown suite, algorithm, config ...) as a usage error."""
    try:
        yield
    except InputError:
        raise
    except BmrlError as e:
        raise InputError(str(e)) from None


# ---------------------------------------------------------------------------- numbers and names


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]. Counted before any range is expanded."""
    usage = f"{option} {text!r}: write seeds (0 to {MAX_SEED}) as a range or a list, e.g. 0-4 or 0,1,2"
    bounds: list[tuple[int, int]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise InputError(usage)
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise InputError(f"{option} {text!r}: the range {lo}-{hi} is empty; write the smaller seed first")
        if hi > MAX_SEED:
            raise InputError(f"{option} {text!r}: seeds go from 0 to {MAX_SEED}")
        bounds.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in bounds)
    if count > MAX_SEEDS:
        raise InputError(f"{option} {text!r} names {count} seeds; the leaderboard takes at most {MAX_SEEDS}")
    seeds = [s for lo, hi in bounds for s in range(lo, hi + 1)]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{option} {text!r} names a seed twice; list each seed once")
    return seeds


def parse_replay_count(text: str) -> int:
    """`--replay N`: episodes replayed per dataset (more than a dataset holds replays all of them)."""
    digits = text.strip()
    # The length test first: int() refuses strings of more than 4300 digits with its own error.
    if not re.fullmatch(r"\d{1,7}", digits) or not 1 <= int(digits) <= MAX_REPLAY:
        raise InputError(f"--replay {text!r}: give the episodes to replay per dataset as a whole number "
                         f"from 1 to {MAX_REPLAY}")
    return int(digits)


def check_device(device: str) -> str:
    """cpu always; cuda[:N] and mps only where torch sees them."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return device
    if kind == "cuda" and (not index or index.isdigit()):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device}: torch sees no CUDA device on this machine; use --device cpu")
        if index and int(index) >= count:
            raise InputError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return device
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise InputError("--device mps: torch sees no Apple GPU (MPS) on this machine; use --device cpu")
        return device
    raise InputError(f"--device {device!r}: unknown device; use cpu, cuda (cuda:N) or mps where torch has them")


def check_executor(executor: str, address: str | None) -> None:
    from bmrl_bench.executor import EXECUTORS

    if executor not in EXECUTORS:
        raise InputError(f"--executor {executor!r}: unknown executor; use one of: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise InputError("--address is a Ray cluster address; use it with --executor ray")


def check_suite(name: str) -> Any:
    """The suite's card (a `SuiteCard`)."""
    from bmrl_bench.suites import get_card

    with as_input_error():
        return get_card(name)


def check_tier(tier: str) -> str:
    """`--tier`: one of the known data tiers (`bmrl_bench.tiers`)."""
    from bmrl_bench.tiers import check_tier as known_tier

    with as_input_error():
        return known_tier(tier)


def check_tier_built(card: Any, tier: str) -> None:
    """Every dataset of `tier` is on disk (a presence check; the replay tier is built on demand instead)."""
    from bmrl_bench.data import datasets_root, require_tier_built

    with as_input_error():
        require_tier_built(card, datasets_root(), tier)


def tier_dataset_id(dataset_id: str, tier: str) -> str:
    """`datasets info ID --tier TIER`: the id of the same task's dataset in `tier`."""
    from bmrl_bench.suites import get_card, parse_dataset_id

    with as_input_error():
        suite, task, _ = parse_dataset_id(dataset_id)
        return get_card(suite).dataset_id(task, tier)


def check_protocol(name: str) -> None:
    from bmrl_bench.protocols import get_protocol

    with as_input_error():
        get_protocol(name)


def check_dataset_id(dataset_id: str) -> None:
    from bmrl_bench.suites import parse_dataset_id

    with as_input_error():
        parse_dataset_id(dataset_id)


# ---------------------------------------------------------------------------- paths


def _first_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder_to_write(path: Path, option: str) -> Path:
    """A folder that is created if missing: neither an existing file nor below one, and writable."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; give a folder (it is created if missing)")
    base = _first_existing(path)
    if not base.is_dir():
        raise InputError(f"{option} {path}: {base} is a file, so {path} cannot be a folder; give another folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: no permission to write in {base}; give a folder you can write to")
    return path


def check_card_folder(path: Path) -> Path:
    """`datasets card --out`: a folder the card replaces as a whole (new, empty, or an earlier card's)."""
    from bmrl_bench.dataset_card import check_out_folder

    check_folder_to_write(path, "--out")
    with as_input_error():
        check_out_folder(path)
    return path


def check_suite_built(card: Any) -> None:
    """Every dataset of the suite is on disk (a presence check; the content is checked as it is read)."""
    from bmrl_bench.data import datasets_root
    from bmrl_bench.dataset_card import require_built

    with as_input_error():
        require_built(card, datasets_root())


def check_file_to_write(path: Path, option: str) -> Path:
    """A file that is created or replaced: not an existing folder, and its folder can be made."""
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name, e.g. {path / 'out.json'}")
    check_folder_to_write(path.parent, option)
    return path


def check_existing_folder(path: Path, option: str, what: str) -> Path:
    return _check_existing(path, option, what, "folder")


def check_existing_file(path: Path, option: str, what: str) -> Path:
    return _check_existing(path, option, what, "file")


_IS_KIND = {"file": Path.is_file, "folder": Path.is_dir}


def _check_existing(path: Path, option: str, what: str, kind: Literal["file", "folder"]) -> Path:
    """`path` must be an existing `kind`: one message if it is the other kind, one if nothing is there."""
    other = "folder" if kind == "file" else "file"
    if _IS_KIND[other](path):
        raise InputError(f"{option} {path} is a {other}; give {what}")
    if not _IS_KIND[kind](path):
        raise InputError(f"{option} {path}: no such {kind}; give {what}")
    return path


# ---------------------------------------------------------------------------- algorithm configs


def _describe(tp: Any) -> str:
    """How a field type reads in a message: 'an integer', 'a list of integers (e.g. 256,256)' ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a finite number"
    if tp is str:
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return f"a comma-separated list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if type(None) in args:
        others = [a for a in args if a is not type(None)]
        return f"{_describe(others[0])} or none" if len(others) == 1 else "a value"
    return f"a {getattr(tp, '__name__', tp)}"


def parse_value(tp: Any, text: str) -> Any:
    """`text` as a value of field type `tp`; ValueError if it is not one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if text.strip().lower() not in ("true", "false"):
            raise ValueError(text)
        return text.strip().lower() == "true"
    if tp is int:
        if not re.fullmatch(r"\s*[+-]?\d[\d_]*\s*", text):
            raise ValueError(text)
        return int(text)
    if tp is float:
        value = float(text)  # ValueError for words; 'nan' and 'inf' parse, so:
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if tp is str:
        return text
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError(text)
    if origin is tuple and (len(args) == 2 and args[1] is Ellipsis):
        items = text.strip().strip("[]()").strip()
        return tuple(parse_value(args[0], item) for item in items.split(",")) if items else ()
    if type(None) in args:
        if text.strip().lower() in ("none", "null"):
            return None
        others = [a for a in args if a is not type(None)]
        for other in others:
            try:
                return parse_value(other, text)
            except ValueError:
                continue
        raise ValueError(text)
    raise ValueError(f"no parser for fields of type {tp}")


def split_overrides(items: list[str]) -> list[tuple[str, str]]:
    """`--set field=value` items as (field, text) pairs; checked before the algorithm is even imported."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r} must look like field=value, e.g. --set steps=1000")
        pairs.append((key.strip(), text))
    return pairs


def parse_overrides(config_cls: type, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """(field, text) pairs as typed values of `config_cls`'s fields (types from its annotations)."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out: dict[str, Any] = {}
    for key, text in pairs:
        if key not in fields:
            known = ", ".join(fields)
            raise InputError(f"--set {key}: {config_cls.__name__} has no field {key!r}; its fields: {known}")
        try:
            out[key] = parse_value(hints[key], text)
        except ValueError:
            takes = _describe(hints[key]) + _example(fields[key])
            raise InputError(f"--set {key}={text}: {key} takes {takes}") from None
    return out


def _example(f: dataclasses.Field) -> str:
    default = f.default
    if default is dataclasses.MISSING:
        return ""
    if isinstance(default, tuple):
        default = ",".join(str(v) for v in default)
    elif isinstance(default, bool):
        default = str(default).lower()
    return f", e.g. --set {f.name}={default}"


def check_config(algorithm: str, card: Any, config_name: str | None, items: list[str]) -> tuple[str, dict[str, Any]]:
    """(config name, typed overrides); builds the config now, so its own range checks run before any work."""
    from bmrl_bench.algorithms import get_algorithm, resolve_config

    pairs = split_overrides(items)
    with as_input_error():
        cls = get_algorithm(algorithm)
    overrides = parse_overrides(cls.config_cls, pairs)
    try:  # an unknown --config, or the config's own range checks (its __post_init__)
        name, _ = resolve_config(cls, card.name, card.family, config_name, overrides)
    except BmrlError as e:
        raise InputError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise InputError(f"{cls.config_cls.__name__}: {e}; see the fields' docs in {cls.__module__}") from None
    return name, overrides


# ---------------------------------------------------------------------------- one request per command


@dataclass(frozen=True)
class EvalRequest:
    """`bmrl-bench eval`, checked: what `harness.evaluate` is called with."""

    algorithm: str
    suite_name: str
    protocol_name: str
    seeds: list[int]
    episodes: int | None
    config_name: str
    overrides: dict[str, Any]
    out_dir: Path
    device: str
    checkpoint_dir: Path | None
    tier: str = DEFAULT_TIER


def eval_request(*, algo: str, suite: str, seeds: str, protocol: str, episodes: int | None, config: str | None,
                 set_: list[str], out: Path, device: str, checkpoints: Path | None, executor: str,
                 address: str | None, tier: str = DEFAULT_TIER) -> EvalRequest:
    """Every input of `bmrl-bench eval`, cheapest check first."""
    seed_list = parse_seeds(seeds)
    check_tier(tier)
    device = check_device(device)
    check_executor(executor, address)
    check_folder_to_write(out, "--out")
    if checkpoints is not None:
        check_folder_to_write(checkpoints, "--checkpoints")
    card = check_suite(suite)
    check_protocol(protocol)
    config_name, overrides = check_config(algo, card, config, set_)
    check_tier_built(card, tier)
    return EvalRequest(algorithm=algo, suite_name=card.name, protocol_name=protocol, seeds=seed_list, episodes=episodes,
                       config_name=config_name, overrides=overrides, out_dir=out, device=device,
                       checkpoint_dir=checkpoints, tier=tier)

