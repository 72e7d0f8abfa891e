"""Benchmarks only: `python -m pytest tests/benchmarks --benchmark-only` (the default run ignores this folder)."""
from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (as `bmrl-bench bench` sets it): with spinning, two
# torch threads crawl whenever another process holds a core. Effective only before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
