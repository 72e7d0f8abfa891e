"""What the leaderboard trusts about a suite: its published build and the local one.

A suite's published build is recorded beside its card as `<suite>.published.json`
(dataset checksums and reference scores of the build the board's numbers refer to).
`bmrl-bench datasets publish SUITE` writes it from the local build. A submission
whose checksums match only a local build is accepted and shown as such.
"""
from __future__ import annotations

import json
from pathlib import Path

from bmrl_bench.data import datasets_root, read_metadata
from bmrl_bench.errors import BmrlError, DatasetCorruptError, DatasetMissingError, SubmissionError
from bmrl_bench.fsutil import atomic_write_text
from bmrl_bench.leaderboard import ReferenceTask, SuiteReference
from bmrl_bench.protocols import PROTOCOLS
from bmrl_bench.suites import SuiteCard, _card_files, get_card


def published_path(card: SuiteCard) -> Path:
    return _card_files()[card.name].with_suffix(".published.json")


def card_page(card: SuiteCard) -> Path:
    """Where the suite's dataset card sits in a source tree (`bmrl-bench datasets card`'s default --out)."""
    return _card_files()[card.name].parent.parent / "docs" / "cards" / card.name / "index.html"


def read_published(card: SuiteCard) -> dict[str, dict]:
    """dataset_id -> {checksum, ref_min, ref_max, param, split} of the published build (may be empty)."""
    path = published_path(card)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("version") != card.version:
        return {}
    return data["datasets"]


def _local(card: SuiteCard) -> dict[str, dict]:
    out = {}
    for i in range(card.num_tasks):
        dataset_id = card.dataset_id(i)
        try:
            meta = read_metadata(dataset_id, datasets_root())
        except (DatasetMissingError, DatasetCorruptError):
            continue
        out[dataset_id] = {"checksum": meta["bmrl_checksum"], "ref_min": float(meta["ref_min_score"]),
                           "ref_max": float(meta["ref_max_score"]), "param": float(meta["bmrl_task_param"]),
                           "split": meta["bmrl_split"]}
    return out


def suite_reference(name: str, version: int) -> SuiteReference:
    card = get_card(name)
    if version != card.version:
        raise SubmissionError(f"suite {name} v{version} is not on this board (current: v{card.version}); "
                              f"re-run eval on v{card.version}")
    published, local = read_published(card), _local(card)
    refs = published or local
    test_ids = [card.dataset_id(i) for i in card.test_indices()]
    if not all(d in refs for d in test_ids):
        raise SubmissionError(
            f"suite {name} has no published build and is not fully built here; run `bmrl-bench datasets build {name}`"
        )
    return SuiteReference(
        name=name,
        version=card.version,
        test_tasks=[ReferenceTask(i, card.dataset_id(i), refs[card.dataset_id(i)]["param"],
                                  refs[card.dataset_id(i)]["ref_min"], refs[card.dataset_id(i)]["ref_max"])
                    for i in card.test_indices()],
        published_checksums={d: {v["checksum"]} for d, v in published.items()},
        local_checksums={d: v["checksum"] for d, v in local.items()},
        protocol_constants={p.name: (p.version, dict(p.constants)) for p in PROTOCOLS.values()},
        family=card.family,
        episode_length=card.episode_length,
        card_page=card_page(card),  # linked from the board where the file exists
    )


def publish_local_build(name: str) -> Path:
    """Record the local build of `name` as its published build (maintainers only)."""
    card = get_card(name)
    local = _local(card)
    if len(local) != card.num_tasks:
        raise BmrlError(f"suite {name} is not fully built; run `bmrl-bench datasets build {name}` first")
    path = published_path(card)
    atomic_write_text(path, json.dumps({"suite": name, "version": card.version, "datasets": local}, indent=2) + "\n")
    return path
