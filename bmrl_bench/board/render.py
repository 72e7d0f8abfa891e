"""`render()`: re-score every entry and write the board's README.md and index.html; `submit_and_render()`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bmrl_bench.board.model import Entry, Published
from bmrl_bench.board.render_html import page
from bmrl_bench.board.render_md import readme
from bmrl_bench.board.scoring import tables
from bmrl_bench.board.store import write_public
from bmrl_bench.board.submit import load_board, submit


def _card_links(board_dir: Path, published: Published, entries: list[Entry]) -> dict[tuple[str, int], str]:
    """(suite, version) -> href of the suite's dataset card page, relative to the board, where one exists."""
    links = {}
    for suite, version in sorted({(e.suite, e.suite_version) for e in entries}):
        card = published(suite, version).card_page
        if card is not None and Path(card).is_file():
            links[(suite, version)] = Path(os.path.relpath(Path(card).resolve(), Path(board_dir).resolve())).as_posix()
    return links


def markdown(board_dir: Path, published: Published, verified_only: bool = False) -> str:
    """The board's Markdown (what README.md holds), optionally with verified entries only."""
    entries = load_board(board_dir, published)
    return readme(tables(entries, verified_only), _card_links(board_dir, published, entries), verified_only)


def render(board_dir: Path, published: Published) -> None:
    """Re-score every submission and write `board_dir/README.md` and `board_dir/index.html` (atomically).

    Deterministic given the board and `published`. Raises `SubmissionError` naming a
    submission or verification record that is invalid or does not match its name.
    """
    board_dir = Path(board_dir)
    entries = load_board(board_dir, published)
    cards = _card_links(board_dir, published, entries)
    ranked = tables(entries)
    write_public(board_dir / "README.md", readme(ranked, cards))
    write_public(board_dir / "index.html", page(ranked, cards))


def submit_and_render(path: Path, board_dir: Path, published: Published, **submit_options: Any) -> Entry:
    """What `bmrl-bench submit` does: `submit()` the file (options as there), then `render()` the board."""
    entry = submit(path, board_dir, published, **submit_options)
    render(board_dir, published)
    return entry
