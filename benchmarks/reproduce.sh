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
