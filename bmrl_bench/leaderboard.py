"""The leaderboard's public names; the code lives in `bmrl_bench.board` (one module per concern)."""
from __future__ import annotations

from bmrl_bench.board import *  # noqa: F403 - this module only re-exports the board's API
from bmrl_bench.board import __all__  # noqa: F401
