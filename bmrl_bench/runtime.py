"""Process-wide settings that make CPU training faster; for callers (the CLI), never done at import.

All were measured on a 2-core Zen 4 VM with torch 2.13 (CPU, GNU OpenMP) while other processes
were busy (a dataset build, colleagues' jobs):

- `sleep_idle_omp_threads`: OpenMP's default is to spin at every barrier. When another process
  holds one of the cores, each of the ~hundreds of parallel regions of an update waits for the
  descheduled partner thread: BCQ with 2 torch threads ran at 0.9 updates/s instead of 19.8
  (1 thread: 18.4). `OMP_WAIT_POLICY=PASSIVE` lets idle threads sleep. It only takes effect if set
  before torch (and with it the OpenMP runtime) is loaded.
- `keep_freed_memory`: glibc returns big freed blocks (activations of batched networks, MBs each)
  to the OS and maps them again on the next update: about 6,300 page faults (13 ms of system time,
  ~8%) per K=16 SAC update. Raising the mmap and trim thresholds keeps them in the heap (~400
  faults). Arithmetic is untouched, so results are bit-identical.
- `torch_threads`: the torch threads of one unit of work (a seed's fit and scoring), wherever it
  runs. The learners' updates are hundreds of small parallel regions each (about 530 per tiMe
  phase-1 update on halfcheetah-vel-lite), and each costs a second thread a sleep and a wake-up:
  a 65,536-element multiply took 12 to 20 us on one thread and 24 to 260 us on two, the most when
  the other core was least busy (waking an idle VM core is slow). So a second thread in one process gains
  little at these sizes and can lose more than half (issue 15: 4.4 updates/s on 2 threads against
  10 on 1); processes, one thread each, are the default way to use more cores.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["keep_freed_memory", "sleep_idle_omp_threads", "torch_threads"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def sleep_idle_omp_threads() -> bool:
    """Set `OMP_WAIT_POLICY=PASSIVE` unless the user chose a policy; True if it can still take effect."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def keep_freed_memory(threshold_bytes: int = 256 << 20) -> bool:
    """Serve blocks up to `threshold_bytes` from the heap and keep freed memory there (glibc only).

    Returns False (and does nothing) where glibc's `mallopt` is not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and friends: no mallopt
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2 * threshold_bytes)) == 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch runs `n` CPU threads inside the block (at least 1); the previous count after it."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
