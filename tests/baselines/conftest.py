"""The baselines' tests train tiny nets too: the learners' one-thread fixture applies here as well."""
from tests.learners.conftest import _one_torch_thread  # noqa: F401 - an autouse fixture, active in this folder
