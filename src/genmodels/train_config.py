"""How to train: :class:`TrainConfig`, the trainer's settings, saved in a run's ``config.json``.

Its own module, below both :mod:`genmodels.train` (the loop that reads it) and :mod:`genmodels.checkpoint` (whose
``RunConfig`` stores it), so that neither imports the other for it. ``from genmodels.train import TrainConfig``
keeps working (re-exported there).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train (saved in ``config.json``). Defaults suit small images on a laptop CPU.

    Raises:
        ValueError: on an out-of-range field (the message names it).
    """

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        # upper bounds a hostile config.json cannot pass (checkpoint.config_from_dict applies them before anything
        # is allocated): a billion steps, 64k-example batches, 1024-image grids, a thread per core of a large machine
        "steps": (1, 10**9), "batch_size": (1, 65536), "n_sample": (1, 1024), "warmup_steps": (0, 10**9),
        "checkpoint_every": (0, 10**9), "sample_every": (0, 10**9), "log_every": (1, 10**9), "num_threads": (1, 1024),
        "skip_nonfinite": (0, 10**6)}

    steps: int = 10_000  # optimizer steps in total (a resumed run continues up to this many)
    batch_size: int = 64  # global batch: examples per step summed over all processes
    lr: float = 2e-4  # peak AdamW learning rate, reached after warmup_steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (β1, β2)
    warmup_steps: int = 100  # linear LR warm-up: lr·min(1, (step+1)/warmup_steps); 0 disables
    grad_clip: float | None = 1.0  # max global L2 norm of the gradients; None disables clipping
    ema_halflife_kimg: float = 50.0  # EMA half-life in thousands of training images (EDM)
    ema_rampup: float | None = 0.05  # half-life ≤ ema_rampup × images seen so far; None disables
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end); 0: end only
    sample_every: int = 0  # steps between EMA sample grids (needs a sample_fn); 0 disables
    n_sample: int = 64  # images per sample grid (used by the sample_fn, e.g. model_sample_fn)
    log_every: int = 100  # steps between metrics.jsonl lines (and log messages)
    seed: int = 0  # seeds the data order, the loss noise, torch's global RNG and the sample grids
    time_limit_minutes: float | None = None  # stop cleanly (with a checkpoint) after this much
    #                                          training wall time, summed over resumes; None: no limit
    num_threads: int | None = None  # torch.set_num_threads for this process; None leaves it alone
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # accelerate autocast mode
    progress: bool = True  # show a tqdm bar on the main process
    data_workers: int | None = None  # DataLoader worker processes reading a streamed dataset (folder:DIR?stream=true);
    #                                  None: one per core beyond the first, at most 4; 0: read in the main process

    skip_nonfinite: int = 0  # consecutive steps with a non-finite loss or gradient norm to skip (no optimizer step,
    #                          no EMA update; counted in metrics.jsonl as skipped_steps) before stopping with
    #                          NonFiniteError; 0: stop at the first one. A skipped step still counts toward `steps`.
    curve_every_minutes: float | None = None  # a learning-curve point (held-out bits/dim of the EMA weights on a
    #                                           fixed subset, Trainer's curve_fn) every this many training minutes,
    #                                           logged as {"event": "curve"} in metrics.jsonl; None: no curve
    history: tuple[str, ...] = ()  # what each resume changed, e.g. "step 20: lr 0.0002 -> 0.01" (the trainer
    #                                appends; config.json keeps the run's history)

    def __post_init__(self) -> None:
        bad = [f"TrainConfig.{name}={getattr(self, name)!r}: must be {rule}"
               for name, rule in _RULES.items() if not _valid(name, getattr(self, name))]
        if bad:
            raise ValueError("; ".join(bad))


def _int(v: object) -> bool:
    """An integer (not a bool)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v: object) -> bool:
    """A real number, an integer or a float (not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _num(v: object) -> bool:
    """A finite real number."""
    return _real(v) and math.isfinite(v)


_RULES: dict[str, str] = {
    "steps": "an integer ≥ 1",
    "batch_size": "an integer ≥ 1",
    "lr": "a finite number > 0",
    "weight_decay": "a finite number ≥ 0",
    "betas": "two numbers in [0, 1)",
    "warmup_steps": "an integer ≥ 0 (0: no warm-up)",
    "grad_clip": "a number > 0 (inf: the norm is measured, not clipped), or None (no clipping)",
    "ema_halflife_kimg": "a finite number ≥ 0",
    "ema_rampup": "a finite number > 0, or None (no ramp-up)",
    "checkpoint_every": "an integer ≥ 0 (0: at the end only)",
    "sample_every": "an integer ≥ 0 (0: no sample grids)",
    "n_sample": "an integer ≥ 1",
    "log_every": "an integer ≥ 1",
    "seed": "an integer in [0, 2**63)",
    "time_limit_minutes": "a finite number > 0, or None (no limit)",
    "num_threads": "an integer ≥ 1, or None (leave torch's)",
    "mixed_precision": "one of 'no', 'fp16', 'bf16'",
    "progress": "true or false",
    "data_workers": "an integer ≥ 0, or None (one per core beyond the first, at most 4)",
    "skip_nonfinite": "an integer ≥ 0 (0: stop at the first non-finite step)",
    "curve_every_minutes": "a finite number > 0, or None (no learning curve)",
    "history": "a tuple of strings",
}
"""Each field's allowed values, as the error message states them."""


def _valid(name: str, v: object) -> bool:
    """Whether ``v`` is an allowed value of field ``name`` (:data:`_RULES`)."""
    if name in ("steps", "batch_size", "n_sample", "log_every"):
        return _int(v) and v >= 1
    if name in ("warmup_steps", "checkpoint_every", "sample_every", "skip_nonfinite"):
        return _int(v) and v >= 0
    if name == "lr":
        return _num(v) and v > 0
    if name in ("weight_decay", "ema_halflife_kimg"):
        return _num(v) and v >= 0
    if name == "grad_clip":
        return v is None or (_real(v) and v > 0)
    if name in ("ema_rampup", "time_limit_minutes", "curve_every_minutes"):
        return v is None or (_num(v) and v > 0)
    if name == "betas":
        return isinstance(v, (tuple, list)) and len(v) == 2 and all(_num(b) and 0 <= b < 1 for b in v)
    if name == "seed":
        return _int(v) and 0 <= v < 2**63
    if name == "num_threads":
        return v is None or (_int(v) and v >= 1)
    if name == "mixed_precision":
        return v in ("no", "fp16", "bf16")
    if name == "progress":
        return isinstance(v, bool)
    if name == "data_workers":
        return v is None or (_int(v) and v >= 0)
    if name == "history":
        return isinstance(v, tuple) and all(isinstance(h, str) for h in v)
    raise AssertionError(f"no rule for TrainConfig.{name}")
