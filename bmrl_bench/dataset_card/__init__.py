"""`bmrl-bench datasets card SUITE`: a static page per built suite, like the pages Minari publishes per dataset.

The folder it writes holds `index.html`, its PNGs (one returns plot per tier built here) and
`card.json` (every number the page shows, in full). It is staged beside the target and moved into place as a whole, so a
reader sees the old card or the new one, never half of either.

- `model.py`: the numbers (`card_data`), from the datasets' metadata and episodes and the published file;
- `plots.py`: the PNGs, drawn from those numbers alone;
- `page.py`: the HTML, every text escaped.

The board links to `docs/cards/<suite>/index.html` of a source tree where one exists
(`published.card_page`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from bmrl_bench.data import datasets_root
from bmrl_bench.dataset_card.model import BUILT, CARD_FORMAT, card_data, missing_datasets, require_built
from bmrl_bench.dataset_card.page import page
from bmrl_bench.errors import BmrlError
from bmrl_bench.fsutil import replace_dir, temp_dir
from bmrl_bench.suites import get_card

__all__ = ["CARD_FILE", "CARD_FORMAT", "CardOutError", "card_data", "check_out_folder", "missing_datasets",
           "require_built", "write_card"]

CARD_FILE = "card.json"


class CardOutError(BmrlError):
    """The output folder cannot take a card."""


def check_out_folder(out: Path) -> None:
    """The card replaces `out` as a whole: it must be new, empty, or a card written before."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / CARD_FILE).is_file():
        raise CardOutError(f"--out {out} holds other files and the card replaces the whole folder; "
                           "give a new or empty folder, or the folder of an earlier card")


def write_card(*, suite: str, out: Path) -> list[Path]:
    """Write the dataset card of the built suite `suite` into folder `out`; the files written."""
    card = get_card(suite)
    out = Path(out)
    check_out_folder(out)
    data = card_data(card, datasets_root())  # first a presence check: one line naming the build command
    from bmrl_bench.dataset_card import plots

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        figures: dict[str, str | None] = {
            "tasks": plots.tasks_plot(data, staging / "tasks.png"),
            "expert": plots.expert_plot(data, staging / "expert.png"),
        }
        for tier in (t["tier"] for t in data["tiers"] if t["status"] == BUILT):  # one returns plot per tier built
            name = plots.returns_name(tier)
            figures[name] = plots.returns_plot(data, staging / f"{name}.png", tier)
        figures["behaviour"] = plots.behaviour_plot(data, staging / "behaviour.png")
        data["figures"] = figures
        (staging / CARD_FILE).write_text(json.dumps(data, indent=1) + "\n")
        (staging / "index.html").write_text(page(data, figures), encoding="utf-8")
        names = sorted(p.name for p in staging.iterdir())
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful move
    return [out / n for n in names]
