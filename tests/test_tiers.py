"""Dataset tiers: ids, loading, building from saved policies, bad inputs, results and the board."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bmrl_bench.data import load_suite
from bmrl_bench.errors import DatasetIdError, SubmissionError
from bmrl_bench.suites import dataset_tier, get_card, parse_dataset_id
from bmrl_bench.tiers import TIERS, TierNotBuiltError, UnknownTierError

TINY = "tiny-pointgoal"


# ---------------------------------------------------------------------------- ids


def test_replay_ids_are_todays_and_every_tier_has_its_own() -> None:
    card = get_card(TINY)
    assert card.dataset_id(1) == card.dataset_id(1, "replay") == "bmrl/tiny-pointgoal/task-01-v0"
    assert card.dataset_ids() == [f"bmrl/tiny-pointgoal/task-{i:02d}-v0" for i in range(3)]
    assert card.dataset_id(2, "expert") == "bmrl/tiny-pointgoal/task-02-expert-v0"
    assert card.dataset_id(0, "medium-expert") == "bmrl/tiny-pointgoal/task-00-medium-expert-v0"
    ids = {t: card.dataset_ids(t) for t in TIERS}
    assert len({i for v in ids.values() for i in v}) == len(TIERS) * card.num_tasks  # no two tiers share an id


def test_every_tier_id_is_a_minari_id_in_the_suites_namespace() -> None:
    from minari.dataset.minari_dataset import parse_dataset_id as minari_parse

    card = get_card(TINY)
    for tier in TIERS:
        dataset_id = card.dataset_id(1, tier)
        namespace, name, version = minari_parse(dataset_id)
        assert namespace == "bmrl/tiny-pointgoal" and version == 0
        assert name == ("task-01" if tier == "replay" else f"task-01-{tier}")
        assert parse_dataset_id(dataset_id) == (TINY, 1, 0)
        assert dataset_tier(dataset_id) == tier


def test_bad_tiers_and_ids_are_one_line() -> None:
    card = get_card(TINY)
    with pytest.raises(UnknownTierError) as e:
        card.dataset_id(0, "mediocre")
    assert str(e.value) == "unknown tier 'mediocre'; known tiers: replay, random, medium, expert, medium-expert"
    with pytest.raises(DatasetIdError):
        parse_dataset_id("bmrl/tiny-pointgoal/task-00-mediocre-v0")


# ---------------------------------------------------------------------------- loading


def test_load_suite_refuses_an_unknown_tier_and_an_unbuilt_one_before_loading(tiny_suite: Path) -> None:
    assert load_suite(TINY).tier == "replay"
    with pytest.raises(UnknownTierError, match="known tiers: replay, random, medium, expert, medium-expert"):
        load_suite(TINY, tier="mediocre")
    with pytest.raises(TierNotBuiltError) as e:
        load_suite(TINY, tier="expert")
    assert str(e.value) == ("suite tiny-pointgoal has not built its expert tier here (3 of 3 datasets missing); "
                            "run `bmrl-bench datasets build tiny-pointgoal --tier expert`")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- building


def _checksums(tier: str) -> list[str]:
    from bmrl_bench.data import read_metadata

    card = get_card(TINY)
    return [read_metadata(card.dataset_id(i, tier))["bmrl_checksum"] for i in range(card.num_tasks)]


def test_random_and_expert_tiers_build_load_and_rebuild_to_the_same_bytes(tiny_suite: Path) -> None:
    import numpy as np

    from bmrl_bench.builder import build_suite
    from bmrl_bench.builder.tiers import first_seed
    from bmrl_bench.data import read_episodes, read_metadata

    card = get_card(TINY)
    replay = load_suite(TINY)
    for tier in ("random", "expert"):
        report = build_suite(TINY, tier=tier)
        assert report.built == card.dataset_ids(tier) and report.skipped == []
        suite = load_suite(TINY, tier=tier)
        assert suite.tier == tier and [t.dataset_id for t in suite.tasks] == card.dataset_ids(tier)
        for i in card.train_indices():  # the same transitions per task as replay
            assert len(suite.train.task(i)) == len(replay.train.task(i)) == card.behaviour.steps_per_task
        # one normalizer per task: the replay tier's references
        assert [(t.ref_min, t.ref_max) for t in suite.tasks] == [(t.ref_min, t.ref_max) for t in replay.tasks]
        meta = read_metadata(card.dataset_id(2, tier))
        episodes = read_episodes(card.dataset_id(2, tier))
        # one writer for every tier: the task's fields and references as replay's, the tier's own between them
        replay_meta = read_metadata(card.dataset_id(2))
        mine = [k for k in meta if k.startswith("bmrl_")]
        assert mine == [k for k in replay_meta if k.startswith("bmrl_")][:8] + [
            "bmrl_tier", "bmrl_behaviour", "bmrl_behaviour_episode_returns", "bmrl_reference_returns",
            "bmrl_ref_max_source", "bmrl_ref_max_rule", "bmrl_ref_max_learned", "bmrl_expert", "bmrl_checksum",
            "bmrl_version"]
        shared = mine[:8] + mine[-7:-2] + ["ref_min_score", "ref_max_score"]
        assert {k: meta[k] for k in shared} == {k: replay_meta[k] for k in shared}
        assert meta["bmrl_behaviour_episode_returns"] == [float(np.sum(episodes.rewards[ts]))
                                                          for _, ts in episodes.episode_slices()]
        assert meta["bmrl_tier"]["episode_seeds"] == [[first_seed(card, tier, 2), len(episodes.lengths)]]
        assert first_seed(card, tier, 2) == 70_000_000 + 10_000_000 * {"random": 0, "expert": 2}[tier] + 200_000
        assert int(episodes.lengths.sum()) == card.behaviour.steps_per_task
        assert _test_task_loads(suite)
    first = {t: _checksums(t) for t in ("random", "expert")}
    assert first["random"] != first["expert"] and first["random"] != _checksums("replay")
    assert build_suite(TINY, tier="expert").built == []  # verified: nothing to do
    for tier in ("random", "expert"):
        assert build_suite(TINY, tier=tier, force=True).built == card.dataset_ids(tier)
        assert _checksums(tier) == first[tier]  # deterministic: the same bytes again


def _test_task_loads(suite: object) -> bool:
    """A tier's test task loads as a batch of its own tier."""
    batch = suite.load_test_batch(suite.card.test_indices()[0])  # type: ignore[attr-defined]
    return len(batch) == suite.card.behaviour.steps_per_task  # type: ignore[attr-defined]


def test_tier_episodes_replay_bit_exactly_from_their_own_seeds(tiny_suite: Path) -> None:
    import h5py

    from bmrl_bench.builder import build_suite
    from bmrl_bench.data import dataset_dir
    from bmrl_bench.replay import replay_suite

    build_suite(TINY, tier="medium-expert")  # builds medium and expert first
    card = get_card(TINY)
    for tier in ("medium", "expert", "medium-expert"):
        results = replay_suite(TINY, 7, tier=tier)
        assert [r.dataset_id for r in results] == card.dataset_ids(tier)
        assert all(r.ok for r in results), [r.problem for r in results]
    # Minari records every episode's seed, as its own DataCollector does
    with h5py.File(dataset_dir(card.dataset_id(0, "expert")) / "data" / "main_data.hdf5") as f:
        assert f["episode_0"].attrs["seed"] == 90_000_000 and f["episode_1"].attrs["seed"] == 90_000_001


def test_medium_expert_is_medium_then_expert(tiny_suite: Path) -> None:
    import numpy as np

    from bmrl_bench.builder import build_suite
    from bmrl_bench.data import read_episodes

    build_suite(TINY, tier="medium-expert")
    card = get_card(TINY)
    union = read_episodes(card.dataset_id(1, "medium-expert"))
    medium, expert = read_episodes(card.dataset_id(1, "medium")), read_episodes(card.dataset_id(1, "expert"))
    np.testing.assert_array_equal(union.lengths, np.concatenate([medium.lengths, expert.lengths]))
    np.testing.assert_array_equal(union.actions, np.concatenate([medium.actions, expert.actions]))
    assert len(load_suite(TINY, tier="medium-expert").train.task(0)) == 2 * card.behaviour.steps_per_task


def test_pick_medium_takes_the_check_closest_to_40_percent() -> None:
    from bmrl_bench.builder.tiers import pick_medium

    curve = [(100, -90.0), (200, -70.0), (300, -58.0), (400, -40.0), (500, -20.0)]
    # random -100, final -20: the target is -100 + 0.4 * 80 = -68
    assert pick_medium(curve, -100.0) == (200, -70.0, pytest.approx(-68.0))
    assert pick_medium([(1, -69.0), (2, -67.0), (3, -20.0)], -100.0)[0] == 1  # a tie: the earlier check


def test_medium_without_snapshots_says_to_retrain_and_force_retrains_to_the_same_expert(tiny_suite: Path) -> None:
    import shutil

    from bmrl_bench.builder import build_suite, expert_dir
    from bmrl_bench.builder.snapshots import load_snapshots, snapshots_dir
    from bmrl_bench.builder.tiers import MediumNeedsExpertError

    card = get_card(TINY)
    saved = load_snapshots(card, tiny_suite)
    assert saved is not None and sorted(saved.weights) == [s for s, _ in saved.curve] == [250, 500, 750, 1000]
    weights = (expert_dir(card, tiny_suite) / "weights.safetensors").read_bytes()
    shutil.rmtree(snapshots_dir(card, tiny_suite))  # as a build from before snapshots were kept
    with pytest.raises(MediumNeedsExpertError) as e:
        build_suite(TINY, tier="medium")
    assert str(e.value) == (
        "the expert of tiny-pointgoal was saved without its check snapshots (built before they were kept), so the "
        "medium tier has no policy; re-train it with `bmrl-bench datasets build tiny-pointgoal --tier medium "
        "--force` (the same weights, bit for bit, plus its snapshots)")
    report = build_suite(TINY, tier="medium", force=True)
    assert report.built == card.dataset_ids("medium") and "expert" in report.units_run
    again = load_snapshots(card, tiny_suite)
    assert again is not None and again.curve == saved.curve
    assert all((again.weights[s][k] == saved.weights[s][k]).all() for s in saved.weights for k in saved.weights[s])
    assert (expert_dir(card, tiny_suite) / "weights.safetensors").read_bytes() == weights  # the expert is untouched


# ---------------------------------------------------------------------------- results and the board


def _tier_results(tier: str | None) -> dict:
    """tests/test_leaderboard.py's results file, on data tier `tier` (None: a file from before tiers)."""
    from tests.board_helpers import sha
    from tests.test_leaderboard import make_results

    data = make_results("algo-t" if tier else "algo-r")
    if tier is not None:
        data["suite"]["tier"] = tier
        for d in data["suite"]["datasets"]:
            d["dataset_id"] = d["dataset_id"].replace("-v1", f"-{tier}-v1")
            d["checksum"] = sha(f"{tier}-{d['task_index']}")
    return data


def _published(name: str, version: int, tier: str = "replay") -> object:
    """tests/test_leaderboard.py's reference; another tier has its own ids and checksums, the same references."""
    from bmrl_bench.leaderboard import SuiteReference
    from tests.board_helpers import sha
    from tests.test_leaderboard import published

    ref = published(name, version)
    if tier == "replay":
        return ref
    ids = {i: f"bmrl/{name}/task-{i:02d}-{tier}-v{version}" for i in range(4)}
    return SuiteReference(ref.name, ref.version, [t._replace(dataset_id=ids[t.task_index]) for t in ref.test_tasks],
                          {ids[i]: {sha(f"{tier}-{i}")} for i in range(4)}, {}, ref.protocol_constants)


def test_an_old_results_file_reads_as_replay_and_a_tier_round_trips(tmp_path: Path) -> None:
    from bmrl_bench.results import canonical_json, data_tier, load_results, parse_results
    from tests.test_leaderboard import write_json

    old = load_results(write_json(tmp_path / "old.json", _tier_results(None)))
    assert old.suite.tier is None and data_tier(old) == "replay"
    tiered = load_results(write_json(tmp_path / "t.json", _tier_results("medium-expert")))
    assert data_tier(tiered) == "medium-expert"
    assert tiered.suite.datasets[0].dataset_id == "bmrl/tiny-lb/task-00-medium-expert-v1"
    assert data_tier(parse_results(json.loads(canonical_json(tiered)), "again")) == "medium-expert"
    bad = _tier_results("expert")
    bad["suite"]["tier"] = "mediocre"
    with pytest.raises(SubmissionError, match="unknown tier 'mediocre'; known tiers: replay, random, medium"):
        parse_results(bad, "bad.json")


def test_the_board_keys_tables_by_tier_and_checks_a_tier_against_its_own_published_build(tmp_path: Path) -> None:
    from bmrl_bench.leaderboard import load_board, markdown, submit
    from tests.test_leaderboard import write_json

    board = tmp_path / "board"
    replay = submit(write_json(tmp_path / "r.json", _tier_results(None)), board, _published)
    expert = submit(write_json(tmp_path / "e.json", _tier_results("expert")), board, _published)
    assert (replay.tier, expert.tier) == ("replay", "expert")
    assert replay.data == expert.data == "reference"  # each matched its own tier's published checksums
    assert sorted(e.tier for e in load_board(board, _published)) == ["expert", "replay"]
    readme = markdown(board, _published)
    assert "## tiny-lb v1 · replay tier · zero-shot v1 · reference data" in readme
    assert "## tiny-lb v1 · expert tier · zero-shot v1 · reference data" in readme
    # an expert-tier file whose checksums are the replay tier's is refused, naming the tier's build command
    wrong = _tier_results("expert")
    for d, r in zip(wrong["suite"]["datasets"], _tier_results(None)["suite"]["datasets"]):
        d["checksum"] = r["checksum"]
    with pytest.raises(SubmissionError, match=r"datasets build tiny-lb --tier expert`"):
        submit(write_json(tmp_path / "w.json", wrong), board, _published)


# ---------------------------------------------------------------------------- the CLI


def _cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from bmrl_bench.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_cli_tier_bad_inputs_are_one_line_before_any_work(tiny_suite: Path) -> None:
    for args in (["datasets", "list", "--tier", "mediocre"], ["datasets", "build", TINY, "--tier", "mediocre"],
                 ["datasets", "verify", TINY, "--tier", "mediocre"], ["eval", "--algo", "random", "--suite", TINY,
                                                                      "--tier", "mediocre"]):
        code, out = _run_main(args)
        assert code == 2 and out == ("error: unknown tier 'mediocre'; known tiers: replay, random, medium, expert, "
                                     "medium-expert\n"), (args, out)
    for args in (["datasets", "verify", TINY, "--tier", "expert"],
                 ["eval", "--algo", "random", "--suite", TINY, "--tier", "expert", "--out", str(tiny_suite / "r")]):
        code, out = _run_main(args)
        assert code == 2 and out == ("error: suite tiny-pointgoal has not built its expert tier here (3 of 3 datasets "
                                     "missing); run `bmrl-bench datasets build tiny-pointgoal --tier expert`\n"), out


def _run_main(args: list[str]) -> tuple[int, str]:
    """`bmrl-bench ARGS` through cli.main (exit code, stderr)."""
    import contextlib
    import io
    import sys

    from bmrl_bench.cli import main

    err = io.StringIO()
    old = sys.argv
    sys.argv = ["bmrl-bench", *args]
    try:
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
            main()
    finally:
        sys.argv = old
    return int(e.value.code or 0), err.getvalue()


def test_cli_builds_lists_verifies_and_evaluates_a_tier(tiny_suite: Path, tmp_path: Path) -> None:
    from bmrl_bench.results import data_tier, load_results

    code, out = _cli("datasets", "build", TINY, "--tier", "random")
    assert code == 0 and "built 3 random datasets" in out, out
    code, out = _cli("datasets", "list", "--tier", "random")
    assert code == 0 and "3/3" in out and "(random tier)" in out
    code, out = _cli("datasets", "verify", TINY, "--tier", "random", "--replay", "3")
    assert code == 0 and "bmrl/tiny-pointgoal/task-02-random-v0" in out and "replays bit-exact" in out, out
    code, out = _cli("datasets", "info", "bmrl/tiny-pointgoal/task-01-v0", "--tier", "random")
    assert code == 0 and "task-01-random-v0" in out and "episode_seeds" in out, out
    code, out = _cli("eval", "--algo", "random", "--suite", TINY, "--tier", "random", "--out", str(tmp_path / "res"),
                     "--workers", "1")
    assert code == 0, out
    (path,) = (tmp_path / "res").glob("random-tiny-pointgoal-random-zero-shot-*.json")
    results = load_results(path)
    assert data_tier(results) == "random"
    assert [d.dataset_id for d in results.suite.datasets] == get_card(TINY).dataset_ids("random")


def test_a_tiers_published_file_sits_beside_the_replay_one_and_the_board_reads_it(
        tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bmrl_bench.builder import build_suite
    from bmrl_bench.published import publish_local_build, suite_reference

    cards = tmp_path / "cards"  # a private copy of the card: publishing writes beside it
    cards.mkdir()
    shutil.copy(Path(__file__).parent / "cards" / f"{TINY}.toml", cards)
    monkeypatch.setenv("BMRL_BENCH_CARDS", str(cards))
    card = get_card(TINY)
    with pytest.raises(Exception, match=r"not fully built in its random tier; run `bmrl-bench datasets build "
                                        r"tiny-pointgoal --tier random` first"):
        publish_local_build(TINY, "random")
    build_suite(TINY, tier="random")
    path = publish_local_build(TINY, "random")
    assert path == cards / "tiny-pointgoal.random.published.json"
    assert sorted(p.name for p in cards.iterdir()) == ["tiny-pointgoal.random.published.json", "tiny-pointgoal.toml"]
    written = json.loads(path.read_text())
    assert (written["suite"], written["version"], written["tier"]) == (TINY, 0, "random")
    assert list(written["datasets"]) == card.dataset_ids("random")
    ref = suite_reference(TINY, 0, "random")
    assert [t.dataset_id for t in ref.test_tasks] == [card.dataset_id(2, "random")]
    assert ref.published_checksums == {d: {v["checksum"]} for d, v in written["datasets"].items()}
    replay = suite_reference(TINY, 0)  # the replay tier has no published file here: its local build
    assert replay.published_checksums == {} and [t.dataset_id for t in replay.test_tasks] == [card.dataset_id(2)]
    assert (ref.test_tasks[0].ref_min, ref.test_tasks[0].ref_max) == (replay.test_tasks[0].ref_min,
                                                                       replay.test_tasks[0].ref_max)


# ---------------------------------------------------------------------------- the expert's snapshots


def test_snapshots_change_nothing_of_the_expert_and_survive_a_kill(tmp_path: Path) -> None:
    import numpy as np

    from bmrl_bench.builder.expert import ExpertCheckpoint, train_expert
    from bmrl_bench.families import get_family
    from bmrl_bench.runtime import torch_threads
    from bmrl_bench.suites import ExpertRecipe
    from tests.test_expert_resume import Crash, assert_same, crash_at, learner_state

    family = get_family("pointgoal")
    recipe = ExpertRecipe(min_steps=200, max_steps=500, eval_every=100, num_envs=2, hidden=[16, 16], batch_size=16)

    def train(snapshots: list | None, checkpoint: ExpertCheckpoint | None = None) -> tuple:
        with torch_threads(1):
            return train_expert(family, 0.0, 180.0, 20, recipe, checkpoint=checkpoint, snapshots=snapshots)

    plain, record = train(None)
    snaps: list = []
    with_snaps, record2 = train(snaps)
    assert_same(learner_state(plain), learner_state(with_snaps))  # bit-identical: copying weights draws nothing
    assert record2 == record
    assert [s for s, _ in snaps] == [s for s, _ in record.curve]  # one snapshot per check
    last = {k: v.numpy() for k, v in with_snaps.actor_state(0).items()}
    if record.curve[-1][0] == record.steps:  # the last check is the end of the training: the final actor
        assert all(np.array_equal(snaps[-1][1][k], last[k]) for k in last)
    path = tmp_path / "expert.npz"
    with pytest.raises(Crash):
        train([], ExpertCheckpoint(path, saved=crash_at(2)))
    resumed_snaps: list = []
    resumed, _ = train(resumed_snaps, ExpertCheckpoint(path))
    assert_same(learner_state(plain), learner_state(resumed))
    assert [s for s, _ in resumed_snaps] == [s for s, _ in snaps]  # the two before the kill came from the checkpoint
    for (_, a), (_, b) in zip(snaps, resumed_snaps):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_mujoco_rollouts_end_episodes_where_the_env_does_and_replay_from_their_seeds() -> None:
    """Hopper falls (true terminations): a random tier's episodes restart from their own seeds, the last one is
    cut where the transitions run out, and each replays alone from its seed."""
    import numpy as np

    from bmrl_bench.builder.tiers import TierPolicy, first_seed, rollout_task
    from bmrl_bench.families import get_family
    from bmrl_bench.suites import SuiteCard

    card = SuiteCard.model_validate({
        "name": "tiny-hopper", "version": 0, "family": "hopper-vel", "description": "test", "episode_length": 100,
        "train_tasks": [1.0], "test_tasks": [2.0],
        "behaviour": {"steps_per_task": 150, "learning_starts": 10, "hidden": [8], "batch_size": 8},
        "expert": {"min_steps": 10, "max_steps": 10, "hidden": [8], "batch_size": 8}})
    family = get_family("hopper-vel")
    episodes, seed0 = rollout_task(card, family, 1, "random", TierPolicy(act_dim=3))
    assert seed0 == first_seed(card, "random", 1) == 70_100_000
    assert int(episodes.lengths.sum()) == 150 and len(episodes.lengths) > 2  # random hoppers fall early
    ends = np.cumsum(episodes.lengths) - 1
    assert episodes.terminations[ends[:-1]].all()  # every episode but the last ended by a fall
    assert episodes.truncations[ends[-1]] or episodes.terminations[ends[-1]]  # the last is closed
    env = family.make(card.task_param(1), max_episode_steps=card.episode_length)
    for e, (os_, ts) in enumerate(episodes.episode_slices()):
        obs, _ = env.reset(seed=seed0 + e)
        replayed = [np.asarray(obs, dtype=np.float32)]
        for a in episodes.actions[ts]:
            obs, *_ = env.step(a)
            replayed.append(np.asarray(obs, dtype=np.float32))
        np.testing.assert_array_equal(np.stack(replayed), episodes.observations[os_])
    env.close()


def test_a_tier_goes_stale_when_its_replay_references_move_and_a_build_refreshes_it(tiny_suite: Path) -> None:
    from bmrl_bench.builder import build_suite
    from bmrl_bench.data import STALE_TIER_REFERENCES, dataset_dir, dataset_status, read_metadata

    card = get_card(TINY)
    build_suite(TINY, tier="random")
    before = _checksums("random")
    path = dataset_dir(card.dataset_id(0)) / "data" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["ref_max_score"] += 1.0  # as a re-published reference (say an analytic optimum) moves it
    path.write_text(json.dumps(meta))
    assert dataset_status(card, 0, tiny_suite) == "ok"  # the replay data is intact
    assert dataset_status(card, 0, tiny_suite, "random") == STALE_TIER_REFERENCES
    assert dataset_status(card, 1, tiny_suite, "random") == "ok"
    assert build_suite(TINY, tier="random").built == [card.dataset_id(0, "random")]
    assert read_metadata(card.dataset_id(0, "random"))["ref_max_score"] == meta["ref_max_score"]
    assert _checksums("random") == before  # the same roll-outs: only the references moved
