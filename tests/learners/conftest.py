"""Fixtures of the learner tests (the baselines' tests use them too, through tests/baselines/conftest.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """These nets are tiny: a second intra-op thread only adds contention (minutes on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
