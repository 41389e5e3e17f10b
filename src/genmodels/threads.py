"""How many threads torch uses, and how its OpenMP threads wait: defaults that survive a busy machine.

Measured on our 2-core machine (BENCHMARKS.md, "Threads on a busy machine", ``benchmarks/threads_contention.py``):
with libgomp's default waits (spin ~300 000 iterations at each barrier before sleeping), two threads while another
process keeps one core busy trained the Fashion-MNIST DDPM at 0.5× one thread (5.7× slower on a busier machine),
because the thread that still runs spins waiting for the descheduled one. Fully passive waits
(``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps at once) keep the one-thread speed under contention but cost
14–30% when the machine is idle (every barrier pays a wake-up). A short spin, ``GOMP_SPINCOUNT=1000``, keeps both:
0.96× the default idle and 0.88× one thread with a core busy. So the command line (:mod:`genmodels.cli`) sets
``GOMP_SPINCOUNT=1000`` (libgomp: torch's Linux wheels) and ``KMP_BLOCKTIME=1`` (ms; LLVM/Intel OpenMP, torch on
macOS, its analogue, not measured here) before torch loads, unless the user has set any of ``OMP_WAIT_POLICY``,
``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME``; and :func:`configure_threads` uses the cores this process may run on
(:func:`available_cores`: its CPU affinity and its cgroup's CPU quota), not every core of the machine.

A program that imports torch itself must set these before that import (OpenMP reads them once, when the library
loads); :func:`set_short_waits` does it and says whether it was in time.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

__all__ = ["available_cores", "set_short_waits", "configure_threads", "WAIT_POLICY", "SHORT_WAITS"]

WAIT_POLICY = "OMP_WAIT_POLICY"
#: what :func:`set_short_waits` sets: a short spin at OpenMP barriers, then sleep (module docstring: measured).
SHORT_WAITS = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "1"}


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None when
    unlimited or unreadable."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (``os.sched_getaffinity``; ``os.cpu_count`` where the
    platform has none), capped by its cgroup's CPU quota rounded up (a container limited to 2.5 CPUs gets 3);
    at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def set_short_waits(env: dict[str, str] | None = None) -> bool:
    """Set :data:`SHORT_WAITS` in ``env`` (default ``os.environ``) unless the user has chosen how OpenMP waits
    (any of ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME`` set: then nothing changes).

    Returns:
        whether it takes effect in this process: False when torch was already imported (OpenMP read its
        environment then), whatever the variables now say. For a child's ``env`` it says nothing about the child.
    """
    env = os.environ if env is None else env
    if not any(k in env for k in (WAIT_POLICY, *SHORT_WAITS)):
        env.update(SHORT_WAITS)
    return "torch" not in sys.modules


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads for this process, and ``OMP_NUM_THREADS`` for libraries that start later.

    Args:
        threads: the count (``--threads``); None: ``OMP_NUM_THREADS`` when the user set it, else
            :func:`available_cores`.
    Returns:
        the count set.
    Raises:
        ValueError: fewer than 1 thread, or an ``OMP_NUM_THREADS`` that is not a positive integer.
    """
    import torch

    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env:
            try:
                threads = int(env.split(",")[0])
            except ValueError:
                raise ValueError(f"OMP_NUM_THREADS={env!r} is not a number of threads; set it to e.g. 1, or unset "
                                 "it") from None
        else:
            threads = available_cores()
    if threads < 1:
        raise ValueError(f"--threads must be ≥ 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return threads
