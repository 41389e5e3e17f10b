"""How to train: :class:`TrainConfig`, the trainer's settings, saved in a run's ``config.json``.

Its own module, below both :mod:`genmodels.train` (the loop that reads it) and :mod:`genmodels.checkpoint` (whose
``RunConfig`` stores it), so that neither imports the other for it. ``from genmodels.train import TrainConfig``
keeps working (re-exported there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train (saved in ``config.json``). Defaults suit small images on a laptop CPU.

    Raises:
        ValueError: on an out-of-range field (the message names it).
    """

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

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "betas": len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "warmup_steps": self.warmup_steps >= 0,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "ema_halflife_kimg": self.ema_halflife_kimg >= 0,
            "ema_rampup": self.ema_rampup is None or self.ema_rampup > 0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "sample_every": self.sample_every >= 0,
            "n_sample": self.n_sample >= 1,
            "log_every": self.log_every >= 1,
            "seed": 0 <= self.seed < 2**63,
            "time_limit_minutes": self.time_limit_minutes is None or self.time_limit_minutes > 0,
            "num_threads": self.num_threads is None or self.num_threads >= 1,
            "mixed_precision": self.mixed_precision in ("no", "fp16", "bf16"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError("TrainConfig: invalid " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

