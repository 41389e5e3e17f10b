"""How many threads torch uses, and how that count follows a busy machine.

Measured on our 2-core machines (BENCHMARKS.md, "Threads with a competing process",
``benchmarks/threads_contention.py``): with libgomp's default waits (spin ~300 000 iterations at each barrier before
sleeping), two threads while another process keeps one core busy trained the Fashion-MNIST DDPM at 0.5–0.6× one thread
(5.7× slower on a busier machine), because the thread that still runs spins waiting for the descheduled one. No wait
policy keeps both cases: fully passive waits (``OMP_WAIT_POLICY=PASSIVE``) keep the one-thread speed under contention
but cost 14–30% idle; a short spin (``GOMP_SPINCOUNT=1000``) kept 0.84–0.88× one thread busy but cost 4–10% idle (0.90×
on an Intel Xeon). The wait policy is read once, when torch loads; the thread count can change at any time. So the
command line leaves the waits at libgomp's default (the fastest idle) and lets a :class:`ThreadTuner` choose the count
from the work itself: it times a few steps at the usable cores (:func:`available_cores`: CPU affinity and cgroup quota)
and at fewer, keeps the fastest, and measures again every two minutes or as soon as its steps slow down by half.
Measured with it: 0.96× the one-thread speed with a core busy (torch's default: 0.62×) and 0.98× torch's default idle
(medians of 4 paired rounds).

- :func:`configure_threads` sets the count; with no count asked for (no ``--threads``, no ``OMP_NUM_THREADS``) it
  also starts the process's tuner (:func:`tuner`).
- A loop hands its steps to the tuner with :func:`record` (the trainer: the optimizer step) or :func:`tuned` (an
  iterator wrapper: the samplers' step loops through :func:`genmodels.sampling.draw_in_batches`, the test NLL's
  batches in :func:`genmodels.metrics.evaluate_nll`). Without a tuner both do nothing, so a library user's threads
  stay as they set them.
- Numbers depend on the thread count (the order of floating-point sums: 5e-6 apart in a DDPM gradient at 1 vs 2
  threads), so a tuned run is reproducible to rounding, not bitwise; ``--threads N`` pins the count.

:func:`set_short_waits` (the short spin) remains for processes that run with a fixed count beside others (compare's
workers, one thread each by default).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

__all__ = ["available_cores", "set_short_waits", "configure_threads", "ThreadTuner", "tuner", "record", "tuned",
           "WAIT_POLICY", "SHORT_WAITS"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

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


def configure_threads(threads: int | None = None, *, tune: bool = True) -> int:
    """Set torch's intra-op threads for this process, and ``OMP_NUM_THREADS`` for libraries that start later.

    Args:
        threads: the count (``--threads``); None: ``OMP_NUM_THREADS`` when the user set it, else
            :func:`available_cores`, and then (with ``tune``, on more than one core) the process's
            :class:`ThreadTuner` starts from that count (:func:`tuner`). A count given or read from the environment
            stops any tuner: the user chose.
        tune: whether a count chosen here may be tuned.
    Returns:
        the count set (the tuner's starting point).
    Raises:
        ValueError: fewer than 1 thread, or an ``OMP_NUM_THREADS`` that is not a positive integer.
    """
    import torch

    global _TUNER
    _TUNER = None
    chosen_here = False
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env:
            try:
                threads = int(env.split(",")[0])
            except ValueError:
                raise ValueError(f"OMP_NUM_THREADS={env!r} is not a number of threads; set it to e.g. 1, or unset "
                                 "it") from None
        else:
            threads, chosen_here = available_cores(), True
    if threads < 1:
        raise ValueError(f"--threads must be ≥ 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    if chosen_here and tune and threads > 1:
        _TUNER = ThreadTuner(threads)
    return threads


class ThreadTuner:
    """Keeps the fastest of a few thread counts by timing the work itself, again and again (module docstring).

    The owner of a loop calls :meth:`record` with each step's wall time. The tuner skips the first step (warm-up),
    then probes: ``probe_steps`` steps at each candidate count (``cores``, ``cores − 1``, ``cores // 2``, 1, distinct),
    the current first; a candidate whose first step is ``give_up``× slower than the best so far is dropped after
    that one step, so a bad count costs one step. It then holds the fastest (switching only for a mean ≥ 3%
    faster than the count it probed from) until ``every_seconds`` have passed or the median of the last three steps
    is ``slowdown``× the held count's probe mean (another process started), and probes again, reusing the
    last steps as the held count's fresh measurement.

    Steps must be comparable (one optimizer step, one sampler step on the same batch); a step that does other work
    (a checkpoint) should not be recorded.

    Args:
        cores: the starting count, and the largest tried. probe_steps: steps timed per candidate.
        every_seconds: seconds between probes. give_up, slowdown: the ratios above.
        set_threads: sets the count (default ``torch.set_num_threads``). clock: seconds (default ``perf_counter``).
    Attributes:
        threads: the count in use. changes: (old, new, {count: mean step seconds}) for every switch, in order.
    """

    def __init__(self, cores: int, *, probe_steps: int = 2, every_seconds: float = 120.0, give_up: float = 1.3,
                 slowdown: float = 1.5, set_threads: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if cores < 1 or probe_steps < 1:
            raise ValueError(f"cores and probe_steps must be ≥ 1, got {cores} and {probe_steps}")
        self.candidates = tuple(dict.fromkeys(c for c in (cores, cores - 1, cores // 2, 1) if c >= 1))
        self.threads = cores
        self.probe_steps, self.every_seconds = probe_steps, every_seconds
        self.give_up, self.slowdown = give_up, slowdown
        self._set = set_threads
        self._clock = clock
        self.changes: list[tuple[int, int, dict[int, float]]] = []
        self._phase = "warmup"
        self._times: dict[int, list[float]] = {}  # probe: step seconds per candidate
        self._queue: list[int] = []  # probe: candidates still to try
        self._origin = cores  # probe: the count it started from
        self._recent: deque[float] = deque(maxlen=max(3, probe_steps))
        self._held_mean = math.inf
        self._held_since = 0.0

    def record(self, seconds: float) -> None:
        """One step took ``seconds``; may change the thread count before the next step."""
        if len(self.candidates) == 1:
            return
        if self._phase == "warmup":
            self._start_probe(fresh=[])
        elif self._phase == "probe":
            self._probe(seconds)
        else:
            self._recent.append(seconds)
            slowed = (len(self._recent) >= 3
                      and statistics.median(list(self._recent)[-3:]) > self.slowdown * self._held_mean)
            if slowed or self._clock() - self._held_since >= self.every_seconds:
                self._start_probe(fresh=list(self._recent)[-self.probe_steps:])

    def _start_probe(self, fresh: list[float]) -> None:
        """Probe from the current count; ``fresh``: its last steps' seconds, already measured."""
        self._phase, self._origin = "probe", self.threads
        self._times = {self.threads: fresh}
        self._queue = [c for c in self.candidates if c != self.threads]
        if len(fresh) >= self.probe_steps:
            self._next_candidate()

    def _probe(self, seconds: float) -> None:
        times = self._times.setdefault(self.threads, [])
        times.append(seconds)
        others = [statistics.fmean(v) for c, v in self._times.items() if c != self.threads and v]
        if len(times) == 1 and others and seconds > self.give_up * min(others):
            self._next_candidate()  # clearly slower: one step is enough
        elif len(times) >= self.probe_steps:
            self._next_candidate()

    def _next_candidate(self) -> None:
        if self._queue:
            self._use(self._queue.pop(0))
            return
        means = {c: statistics.fmean(v) for c, v in self._times.items() if v}
        best = min(means, key=means.__getitem__)
        if best != self._origin and means[best] > 0.97 * means.get(self._origin, math.inf):
            best = self._origin  # not clearly faster: keep the count we came from
        old = self._origin
        self._use(best)
        if best != old:
            self.changes.append((old, best, means))
            logger.info("threads %d -> %d (mean step %s)", old, best,
                        ", ".join(f"{c}: {m:.3g} s" for c, m in sorted(means.items(), reverse=True)))
        self._phase, self._held_mean, self._held_since = "hold", means[best], self._clock()
        self._recent.clear()

    def _use(self, count: int) -> None:
        if count != self.threads:
            if self._set is None:
                import torch

                torch.set_num_threads(count)
            else:
                self._set(count)
            self.threads = count


_TUNER: ThreadTuner | None = None


def tuner() -> ThreadTuner | None:
    """This process's :class:`ThreadTuner`, None when the thread count is fixed (:func:`configure_threads`)."""
    return _TUNER


def record(seconds: float) -> None:
    """Give one step's wall time to this process's tuner, if it has one (:meth:`ThreadTuner.record`)."""
    if _TUNER is not None:
        _TUNER.record(seconds)


def tuned(iterable: Iterable[T]) -> Iterator[T]:
    """``iterable``'s items, each loop body timed (from one item to the next) for this process's tuner; the items
    unchanged when it has none. A :data:`~genmodels.core.Progress` wrapper."""
    if _TUNER is None:
        yield from iterable
        return
    for item in iterable:
        t0 = time.perf_counter()
        yield item
        record(time.perf_counter() - t0)
