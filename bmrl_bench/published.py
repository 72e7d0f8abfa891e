"""What the leaderboard trusts about a suite: its published build and the local one.

A suite's published build is recorded beside its card as `<suite>.published.json`
(dataset checksums and reference scores of the build the board's numbers refer to).
`bmrl-bench datasets publish SUITE` writes it from the local build. A submission
whose checksums match only a local build is accepted and shown as such. Every other data
tier has its own file, `<suite>.<tier>.published.json` (`datasets publish SUITE --tier TIER`),
so the replay tier's file stays as it was.
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
from bmrl_bench.tiers import DEFAULT_TIER, build_command, check_tier


def published_path(card: SuiteCard, tier: str = DEFAULT_TIER) -> Path:
    suffix = ".published.json" if check_tier(tier) == DEFAULT_TIER else f".{tier}.published.json"
    return _card_files()[card.name].with_suffix(suffix)


def card_page(card: SuiteCard) -> Path:
    """Where the suite's dataset card sits in a source tree (`bmrl-bench datasets card`'s default --out)."""
    return _card_files()[card.name].parent.parent / "docs" / "cards" / card.name / "index.html"


def published_expert(card: SuiteCard) -> dict | None:
    """{steps, weights_sha256} of the expert behind the published references (None if not recorded)."""
    path = published_path(card)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data.get("expert") if data.get("version") == card.version else None


def saved_expert_note(name: str) -> str:
    """One line on the saved expert a build used instead of training one: is it the published one?"""
    from bmrl_bench.builder.policies import expert_dir, expert_record  # the builder pulls in torch and MuJoCo

    card = get_card(name)
    saved, published = expert_record(card, datasets_root()), published_expert(card)
    if saved is None:
        return ""
    head = f"expert: reused the one saved at {expert_dir(card, datasets_root())} ({saved['steps']} env steps)"
    if published is None:
        return f"{head}; no published expert is on record for {name}"
    if saved["weights_sha256"] == published["weights_sha256"]:
        return f"{head}: the published expert (its weights' sha256 matches {published_path(card).name})"
    return (f"{head}: NOT the published expert (weights sha256 {saved['weights_sha256'][:12]}, published "
            f"{published['weights_sha256'][:12]}), so its references differ from the published ones; "
            f"`bmrl-bench datasets build {name} --force` trains it again from the card")


def read_published(card: SuiteCard, tier: str = DEFAULT_TIER) -> dict[str, dict]:
    """dataset_id -> {checksum, ref_min, ref_max, param, split} of the published build of `tier` (may be empty)."""
    path = published_path(card, tier)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("version") != card.version:
        return {}
    return data["datasets"]


def _local(card: SuiteCard, tier: str = DEFAULT_TIER) -> dict[str, dict]:
    out = {}
    for i in range(card.num_tasks):
        dataset_id = card.dataset_id(i, tier)
        try:
            meta = read_metadata(dataset_id, datasets_root())
        except (DatasetMissingError, DatasetCorruptError):
            continue
        out[dataset_id] = {"checksum": meta["bmrl_checksum"], "ref_min": float(meta["ref_min_score"]),
                           "ref_max": float(meta["ref_max_score"]), "param": float(meta["bmrl_task_param"]),
                           "split": meta["bmrl_split"]}
    return out


def suite_reference(name: str, version: int, tier: str = DEFAULT_TIER) -> SuiteReference:
    """What the board trusts about `name` v`version` in data tier `tier` (the board asks with a tier only
    for entries of another tier than replay)."""
    card = get_card(name)
    if version != card.version:
        raise SubmissionError(f"suite {name} v{version} is not on this board (current: v{card.version}); "
                              f"re-run eval on v{card.version}")
    published, local = read_published(card, tier), _local(card, tier)
    refs = published or local
    test_ids = [card.dataset_id(i, tier) for i in card.test_indices()]
    # One normalizer per task, whatever the tier: the replay tier's references, so that a tier's
    # entries move with them when they are published again.
    norm = refs if tier == DEFAULT_TIER else (read_published(card) or _local(card))
    replay_ids = [card.dataset_id(i) for i in card.test_indices()]
    for needed, where, t in ((refs, test_ids, tier), (norm, replay_ids, DEFAULT_TIER)):
        if not all(d in needed for d in where):
            what = "" if t == DEFAULT_TIER else f" of its {t} tier"
            raise SubmissionError(
                f"suite {name} has no published build{what} and is not fully built here; run {build_command(name, t)}"
            )
    return SuiteReference(
        name=name,
        version=card.version,
        test_tasks=[ReferenceTask(i, d, refs[d]["param"], norm[r]["ref_min"], norm[r]["ref_max"])
                    for i, d, r in zip(card.test_indices(), test_ids, replay_ids)],
        published_checksums={d: {v["checksum"]} for d, v in published.items()},
        local_checksums={d: v["checksum"] for d, v in local.items()},
        protocol_constants={p.name: (p.version, dict(p.constants)) for p in PROTOCOLS.values()},
        family=card.family,
        episode_length=card.episode_length,
        card_page=card_page(card),  # linked from the board where the file exists
    )


def publish_local_build(name: str, tier: str = DEFAULT_TIER) -> Path:
    """Record the local build of `name` (data tier `tier`) as its published build (maintainers only)."""
    card = get_card(name)
    local = _local(card, tier)
    if len(local) != card.num_tasks:
        what = "" if tier == DEFAULT_TIER else f" in its {tier} tier"
        raise BmrlError(f"suite {name} is not fully built{what}; run {build_command(name, tier)} first")
    path = published_path(card, tier)
    # The replay tier's file keeps its keys (and bytes); another tier's names itself.
    head = {"suite": name, "version": card.version} | ({} if tier == DEFAULT_TIER else {"tier": tier})
    from bmrl_bench.builder.policies import expert_record  # the builder pulls in torch and MuJoCo

    # The expert behind the references, so a build that finds one saved can say whether it is this one.
    expert = expert_record(card, datasets_root()) if tier == DEFAULT_TIER else None
    tail = {} if expert is None else {"expert": expert}
    atomic_write_text(path, json.dumps(head | {"datasets": local} | tail, indent=2) + "\n")
    return path
