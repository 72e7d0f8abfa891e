#!/usr/bin/env bash
# Every number in README.md's Results section and in leaderboard/ comes from these commands.
# Run from the repository root; each eval writes results/<algo>-<suite>-<protocol>-<stamp>.json,
# which `bmrl-bench submit` validates, recomputes and adds to leaderboard/submissions/.
set -euo pipefail
SUITES=${SUITES:-"pointgoal-3 pointgoal-semicircle halfcheetah-vel-lite hopper-vel-lite"}
SEEDS=${SEEDS:-0-4}

for suite in $SUITES; do
  bmrl-bench datasets build "$suite"
  for algo in random oracle batch-sac pearl bcq time; do
    bmrl-bench eval --algo "$algo" --suite "$suite" --seeds "$SEEDS" --out results/
  done
done
for f in results/*.json; do bmrl-bench submit "$f"; done
bmrl-bench leaderboard
bmrl-bench figures misidentification --suite pointgoal-3 --out figures/
bmrl-bench figures time --suite pointgoal-3 --out figures/
bmrl-bench figures time --suite halfcheetah-vel-lite --out figures/

# tiMe against its targets (README): the ablations behind the two missed targets. Not submitted.
bmrl-bench eval --algo time --suite pointgoal-semicircle --seeds 0-4 --checkpoints ckpt/ --out results/ablations/
python benchmarks/time_context.py --suite pointgoal-semicircle --checkpoints ckpt/ --contexts 1,4,0
python benchmarks/time_context.py --suite pointgoal-semicircle --checkpoints ckpt/ --contexts 1,0 --protocol offline-context
bmrl-bench eval --algo time --suite pointgoal-semicircle --seeds 0-2 --set context_size=4 --set test_context=0 --checkpoints ckpt-context4/ --out results/ablations/
python benchmarks/time_context.py --suite pointgoal-semicircle --checkpoints ckpt-context4/ --contexts 0 --protocol offline-context
for seed in 0 1 2; do
  python benchmarks/time_teachers.py --suite halfcheetah-vel-lite --config halfcheetah-vel-lite-official-bcq --steps 3000,6000,10000 --episodes 5 --seed "$seed" --out "results/ablations/teachers-s$seed.json"
done
for p1 in 3000 10000; do
  for p2 in 3000 30000; do
    bmrl-bench eval --algo time --suite halfcheetah-vel-lite --config halfcheetah-vel-lite-official-bcq --seeds 0-2 --set phase1_steps=$p1 --set phase2_steps=$p2 --out results/ablations/
  done
done

# Issue 17: phase 1 that learns (docs/time-analysis.md). Each variant's teachers, scored on their own tasks.
P1="--set phase1_lr=0.001 --set phase1_tau=0.02 --set phase1_phi=0.5"
for v in "" "--set phase1_lr=0.001" "--set phase1_tau=0.02" "--set phase1_phi=0.25" "--set phase1_phi=1.0" \
         "--set phase1_latent_clip=2.0" "--set phase1_lr=0.001 --set phase1_tau=0.02 --set phase1_phi=0.25" \
         "--set phase1_lr=0.001 --set phase1_phi=1.0" "--set phase1_tau=0.02 --set phase1_phi=0.5 --set phase1_latent_clip=1.0" \
         "--set phase1_lr=0.001 --set phase1_tau=0.05 --set phase1_phi=0.25" "--set phase1_lr=0.001 --set phase1_tau=0.02 --set phase1_phi=0.1" \
         "$P1"; do
  # shellcheck disable=SC2086
  python benchmarks/time_teachers.py --suite halfcheetah-vel-lite --config halfcheetah-vel-lite-official-bcq $v \
      --steps 5000,10000,15000,20000 --episodes 2 --out "results/ablations/p1-$(echo "$v" | tr -d ' -' | tr '=' '_').json"
done

# Issue 17: phase 2 on seed 0's fixed teachers (docs/time-analysis.md), on the config before episode contexts
# (halfcheetah-vel-lite-task-context), then the training contexts (session 10), then the config's entry (verified).
for v in "--set phase2_steps=3000 --set batch_size=64 --set lr=0.0003" "--set phase2_steps=3000 --set batch_size=64 --set lr=0.0003 --set q_at_candidates=true" \
         "--set phase2_steps=3000 --set batch_size=64 --set lr=0.0003 --set shared_context=true --set context_size=64" \
         "--set phase2_steps=3000 --set batch_size=64 --set lr=0.0003 --set normalize_context=true" \
         "--set phase2_steps=3000 --set lr=0.0003" "--set phase2_steps=3000 --set batch_size=64" "--set batch_size=64 --set lr=0.0003" \
         "--set phase2_steps=30000 --set batch_size=64 --set lr=0.0003" "--set batch_size=64" "" \
         "--set phase2_steps=3000 --set batch_size=64 --set lr=0.0003 --set distill_actions=true" \
         "--set batch_size=64 --set lr=0.0003 --set distill_actions=true" "--set phase2_steps=30000 --set distill_actions=true"; do
  # shellcheck disable=SC2086
  bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0 --config halfcheetah-vel-lite-task-context $v \
      --out results/ablations/
done
for v in "--set shared_context=true --set context_size=64" \
         "--set shared_context=true --set context_size=64 --set context_from=episode" \
         "--set context_size=4 --set context_from=episode"; do  # the last: halfcheetah-vel-lite until session 11
  # shellcheck disable=SC2086
  bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0 --config halfcheetah-vel-lite-task-context $v \
      --out results/ablations/
done
bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0 --config halfcheetah-vel-lite-task-context \
    --checkpoints ckpt-hc-task-context/ --out results/ablations/
bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0-4 --checkpoints ckpt-hc/ --out results/
python benchmarks/time_fidelity.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc/ --seed 0 --episodes 3 --out docs/figures/
python benchmarks/time_identification.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc/ --seed 0 \
    --out docs/figures/time-identification-halfcheetah-vel-lite.json
python benchmarks/time_identification.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc-task-context/ --seed 0 \
    --out docs/figures/time-identification-halfcheetah-vel-lite-task-context.json
python benchmarks/time_candidates.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc/ --seed 0 \
    --out docs/figures/time-candidates-halfcheetah-vel-lite.json
bmrl-bench figures time --suite halfcheetah-vel-lite --checkpoint ckpt-hc/time-halfcheetah-vel-lite-seed0 --out docs/figures/
python benchmarks/time_test_context.py --suite halfcheetah-vel-lite --entry time-dc34aa82507f1896 --contexts 0,1,5,20,50 \
    --out docs/figures/time-test-context-halfcheetah-vel-lite.json
python benchmarks/time_test_context.py --suite halfcheetah-vel-lite --entry time-dc34aa82507f1896 \
    --knob bcq_candidates --contexts 10,30,100 --out docs/figures/time-candidates-count-halfcheetah-vel-lite.json

# Session 11 (docs/time-analysis.md, "The distilled candidates, over all 5 seeds"): every seed's fidelity
# report against issue 17's targets and its candidates' errors; then on seeds 3 and 4, with session 10's
# proposal widths (G_S 3x256, xi_S 2x256), the candidate swap and the phase-2 variants.
for s in 0 1 2 3 4; do
  python benchmarks/time_fidelity.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc/ --seed $s --episodes 3 \
      --out results/fidelity/s$s
  python benchmarks/time_candidates.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc/ --seed $s --episodes 0 \
      --out results/fidelity/s$s/errors.json
done
python benchmarks/time_targets.py results/fidelity/s*/time-fidelity-halfcheetah-vel-lite.json \
    --json docs/figures/time-targets-halfcheetah-vel-lite.json
NARROW="--set g_hidden=256,256,256 --set xi_hidden=256,256"
# shellcheck disable=SC2086
bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0-4 $NARROW --checkpoints ckpt-hc-narrow/ --out results/ablations/
for s in 3 4; do
  python benchmarks/time_candidates.py --suite halfcheetah-vel-lite --checkpoints ckpt-hc-narrow/ --seed $s --tasks 1,2,3,4 \
      --out docs/figures/time-candidates-halfcheetah-vel-lite-seed$s-session10.json
done
bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 0-4 --set phase2_steps=20000 --out results/ablations/
for v in "--set xi_input=own" "--set xi_input=joint" "--set lr_schedule=cosine" \
         "--set g_hidden=1024,1024,1024 --set xi_hidden=1024,1024"; do
  # shellcheck disable=SC2086
  bmrl-bench eval --algo time --suite halfcheetah-vel-lite --seeds 3-4 $NARROW $v --out results/ablations/  # a later --set wins
done

# Issue 17 on hopper-vel-lite (docs/time-analysis.md, "hopper-vel-lite"): the teachers of the official
# knobs, of official BCQ's rate, and of the halfcheetah-vel-lite knobs (their Q diverges here); then the
# 5-seed entry with its checkpoints (verified), its fidelity report and its figure.
python benchmarks/time_teachers.py --suite hopper-vel-lite --config hopper-vel-lite-official-bcq --steps 3000,15000 \
    --out results/ablations/hopper-p1-official.json
python benchmarks/time_teachers.py --suite hopper-vel-lite --config hopper-vel-lite-official-bcq --set phase1_lr=1e-3 \
    --steps 3000,15000 --out results/ablations/hopper-p1-lr1e-3.json
python benchmarks/time_teachers.py --suite hopper-vel-lite --config hopper-vel-lite-official-bcq $P1 --steps 15000 \
    --out results/ablations/hopper-p1-hc-knobs.json
bmrl-bench eval --algo time --suite hopper-vel-lite --seeds 0-4 --checkpoints ckpt-hop/ --out results/
python benchmarks/time_fidelity.py --suite hopper-vel-lite --checkpoints ckpt-hop/ --seed 0 --episodes 3 --out docs/figures/
bmrl-bench figures time --suite hopper-vel-lite --checkpoint ckpt-hop/time-hopper-vel-lite-seed0 --out docs/figures/

# Issue 15: a cheaper pointgoal-3 default (docs/time-analysis.md, "A cheaper default"). Seeds 0-4, zero-shot.
# The predictor path E/P is ~60% of a phase-2 step's FLOPs; phase 1's SAC is a third of the job.
SMALL_EP="--set e_hidden=64 --set e_out=32 --set p_hidden=32"
for v in "$SMALL_EP" "$SMALL_EP --set phase2_steps=20000 --set phase1_hidden=128,128" \
         "$SMALL_EP --set phase2_steps=20000 --set phase1_hidden=128,128 --set lr=0.001"; do
  # shellcheck disable=SC2086
  bmrl-bench eval --algo time --suite pointgoal-3 --seeds 0-4 --workers 2 --threads 1 $v --out results/ablations/
done
python benchmarks/phase2_variants.py --suite pointgoal-3 --compile   # step rates of those sizes, and torch.compile
