"""Trainer: one loop for every model family, on one CPU, one GPU or many processes.

The loop only combines pieces (DESIGN.md): it draws batches from an in-memory tensor, calls
``model.loss(x, generator) -> [B]``, steps AdamW with a linear warm-up, keeps an EMA of the weights
whose half-life is measured in images (EDM), and writes a run folder (:mod:`genmodels.checkpoint`)::

    config.json  model.safetensors  ema.safetensors   (save_pretrained: loadable with from_pretrained)
    train_state.pt                                    (everything a bitwise-exact resume needs)
    metrics.jsonl                                     (one JSON line per ``log_every`` steps)
    samples/step_0001000.png                          (EMA sample grids, when a sample_fn is given)

Scaling out. ``accelerate`` (DDP underneath) runs the same code under ``accelerate launch`` or
``torchrun``: each step draws one *global* batch of ``batch_size`` indices from a permutation every
process computes identically, each process takes its shard ``idx[rank::world_size]``, and DDP
averages the gradients, so a step is the same whatever the number of processes.

Reproducibility. Every source of randomness has its own generator seeded from ``config.seed``:
the data order (one CPU generator), the loss noise (one generator per process, on its device) and
torch's global RNG (seeded per process at a fresh start). A checkpoint stores all their states, the
position in the current epoch's permutation, the optimizer, scheduler and EMA, so ``fit(resume=True)``
continues exactly where the checkpoint was taken: on CPU, a run stopped at step N and resumed
reproduces an uninterrupted run's losses and weights bitwise (same number of processes and threads).

Resuming with other settings. A resumed run takes the settings of the config it is given: a new ``lr`` (and its
warm-up), ``steps``, ``time_limit_minutes``, log/checkpoint/sample intervals, clipping, EMA half-life, AdamW
``betas``/``weight_decay`` or ``skip_nonfinite`` are applied from the checkpoint's step on, recorded in the first
``metrics.jsonl`` line after the resume (``"resume": {"step": S, "changed": {"lr": [old, new]}}``) and appended to
``TrainConfig.history`` (so ``config.json`` keeps them). ``batch_size`` and ``seed`` cannot change (they fix the
data order, and the EMA counts its images in batches): such a resume is refused before anything is written.

Non-finite steps. A step whose loss or gradient norm is NaN or infinite (the decision is agreed across processes)
applies no update: by default the run stops there with :class:`NonFiniteError`, writing no checkpoint after it,
so the run folder keeps its last finite checkpoint and resumes from it; with ``skip_nonfinite = N`` up to N
consecutive such steps are skipped (no optimizer step, no EMA update; counted as ``skipped_steps``). A checkpoint
is never written from non-finite weights.
"""

from __future__ import annotations

import io
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from . import threads
from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    RunConfig,
    config_to_dict,
    load_train_state,
    save_pretrained,
)
from .core import DataSpec, GenerativeModel
from .data.examples import Examples
from .fileio import atomic_write_bytes, atomic_write_text, json_dumps
from .train_config import TrainConfig  # re-exported: `from genmodels.train import TrainConfig`

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "TrainConfig",
    "NonFiniteError",
    "TrainResult",
    "Trainer",
    "ema_halflife_images",
    "ema_beta",
    "edm_ema_multi_avg_fn",
    "model_sample_fn",
    "Progress",
    "ProgressFactory",
    "STATE_NAME",
    "METRICS_NAME",
]

STATE_NAME = "train_state.pt"
METRICS_NAME = "metrics.jsonl"
SAMPLES_DIR = "samples"
_STATE_VERSION = 1
_STATE_KEYS = ("step", "images_seen", "seconds", "epoch", "position", "permutation", "world_size", "batch_size",
               "seed", "model", "ema", "optimizer", "scheduler", "data_generator", "rng")
"""What every train_state.pt holds (later keys, e.g. skipped_steps, are optional)."""

logger = logging.getLogger("genmodels.train")


class NonFiniteError(ValueError):
    """Training produced a non-finite loss, gradient norm or weights; the run folder keeps its last finite
    checkpoint (nothing is written after the non-finite step).

    Attributes:
        step: the step (1-based) at which it happened.
        what: what went non-finite: ``"loss"``, ``"gradient norm"``, ``"loss and gradient norm"`` or ``"weights"``.
        checkpoint_step: the step of the checkpoint in the run folder, or None if none was written.
    """

    def __init__(self, message: str, step: int, what: str, checkpoint_step: int | None):
        super().__init__(message)
        self.step, self.what, self.checkpoint_step = step, what, checkpoint_step


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        steps: optimizer steps done in total (including those before a resume).
        images_seen: training examples consumed in total (``steps × batch_size``).
        seconds: training wall time in seconds, summed over resumes.
        final_loss: mean loss of the last logged window with a finite step (across processes); NaN if no step
            ran (the CLI prints it as null).
        run_dir: the run folder.
        stop_reason: ``"steps"`` (reached ``config.steps``) or ``"time_limit"``.
    """

    steps: int
    images_seen: int
    seconds: float
    final_loss: float
    run_dir: Path
    stop_reason: Literal["steps", "time_limit"] = "steps"


# ----------------------------------------------------------------------------------------------
# EMA with a half-life in images (Karras et al. 2022, EDM, training/training_loop.py)


def ema_halflife_images(images_seen: int, halflife_kimg: float, rampup: float | None) -> float:
    """Effective EMA half-life in images: ``min(halflife_kimg·1000, rampup·images_seen)``.

    The ramp-up keeps the EMA from carrying the random initial weights (BENCHMARKING.md,
    "Early EMA"): the average never spans more than ``rampup`` of the training so far.
    Source: EDM ``training_loop.py`` (``ema_halflife_nimg``, ``ema_rampup_ratio``).

    Args:
        images_seen: training images consumed *before* the step being averaged.
    """
    halflife = halflife_kimg * 1000.0
    if rampup is not None:
        halflife = min(halflife, rampup * images_seen)
    return halflife


def ema_beta(images_seen: int, batch_size: int, halflife_kimg: float, rampup: float | None) -> float:
    """EMA decay for one step of ``batch_size`` images: ``β = 0.5 ** (batch / max(halflife, 1e-8))``.

    ``ema ← β·ema + (1−β)·θ``; β = 0 at the first step with ramp-up (the EMA starts at θ).
    Source: EDM ``training_loop.py`` (``ema_beta``).

    Args:
        images_seen: images consumed before this step; batch_size: the global batch.
    Returns:
        β in [0, 1).
    """
    return 0.5 ** (batch_size / max(ema_halflife_images(images_seen, halflife_kimg, rampup), 1e-8))


def edm_ema_multi_avg_fn(batch_size: int, halflife_kimg: float, rampup: float | None) -> Callable:
    """A ``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel` with EDM's decay.

    AveragedModel counts its updates in ``n_averaged``; with one update per step of ``batch_size``
    images, the images seen before the current update are ``n_averaged × batch_size``, so the decay
    needs no other state and resumes exactly from the saved ``n_averaged``. (AveragedModel copies
    the weights on its first update, which is EDM's β = 0 at ``cur_nimg = 0`` under ramp-up.)
    Non-floating buffers (e.g. counters) are copied from the model, and so is any tensor of the model that is not
    finite everywhere (a schedule's ``logsnr_prev`` starts at +inf): a lerp would turn inf − inf into NaN.
    """

    def multi_avg_fn(ema_tensors: list[Tensor], model_tensors: list[Tensor], n_averaged: Tensor) -> None:
        """ema ← β·ema + (1−β)·θ in place, β from the images seen so far (``n_averaged`` × batch)."""
        if not ema_tensors:
            return
        if not ema_tensors[0].is_floating_point():  # tensors are grouped by dtype
            torch._foreach_copy_(ema_tensors, model_tensors)
            return
        beta = ema_beta(int(n_averaged) * batch_size, batch_size, halflife_kimg, rampup)
        torch._foreach_lerp_(ema_tensors, model_tensors, 1.0 - beta)  # ema + (1−β)(θ − ema)
        finite = torch.stack([torch.isfinite(m).all() for m in model_tensors])  # one device sync, not one per tensor
        if not bool(finite.all()):  # constant buffers holding ±inf: copy, never average
            for e, m, ok in zip(ema_tensors, model_tensors, finite.tolist(), strict=True):
                if not ok:
                    e.copy_(m)

    return multi_avg_fn


# ----------------------------------------------------------------------------------------------
# Progress (injectable) and sampling


class Progress(Protocol):
    """What the trainer needs from a progress bar (tqdm's interface)."""

    def update(self, n: int = 1) -> object:
        """Advance by ``n`` steps."""

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw) -> object:
        """Show the latest metrics."""

    def close(self) -> object:
        """Finish the bar."""


ProgressFactory = Callable[[int, int], Progress]
"""``factory(total_steps, initial_step) -> Progress``."""


class _NoProgress:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        """Nothing."""

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


def _tqdm_progress(total: int, initial: int) -> Progress:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


SampleFn = Callable[[nn.Module, torch.Generator], Tensor]
"""``sample_fn(ema_model, generator) -> [n, *event_shape]`` images on the data scale."""


def model_sample_fn(n: int, **kw) -> SampleFn:
    """A sample_fn that calls ``model.draw(n, generator, **kw)`` (e.g. ``n = config.n_sample`` and
    ``kw = model.preview()``, the family's cheap preview run)."""

    def sample_fn(model: nn.Module, generator: torch.Generator) -> Tensor:
        """``[n, *event_shape]`` samples of ``model``."""
        return model.draw(n, generator, **kw).x0

    return sample_fn


# ----------------------------------------------------------------------------------------------
# Trainer


class _LossModule(nn.Module):
    """Routes ``forward`` to ``model.loss``, because what accelerate wraps is ``forward``: DDP
    prepares its gradient all-reduce there, and mixed precision puts autocast around it.

    Only the trainer calls it; models keep ``loss`` and ``forward`` apart.
    """

    def __init__(self, model: GenerativeModel):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, generator: torch.Generator, y: Tensor | None = None) -> Tensor:  # -> [B]
        """The model's per-example loss, ``[B]`` (``y``: ``[B]`` labels of a conditional model)."""
        if y is None:  # an unconditional model's call is the one it always was
            return self.model.loss(x, generator=generator)
        return self.model.loss(x, generator=generator, y=y)


def _derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (numpy SeedSequence), one stream per purpose."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# stream keys for _derive_seed(seed, STREAM, ...)
_DATA, _NOISE, _GLOBAL, _SAMPLE, _FLIP = 0, 1, 2, 3, 4
# stop codes agreed across processes (the largest wins)
_TIME, _INTERRUPT = 1, 2


@dataclass
class _Cursor:
    """Where the loop is: counters and the position in the current epoch's permutation."""

    step: int = 0
    images_seen: int = 0
    seconds: float = 0.0  # training wall time before this fit call
    epoch: int = 0  # permutations drawn so far
    position: int = 0  # next index into `permutation`
    permutation: Tensor | None = None  # [N] int64, the current epoch's order


def _accelerator(mixed_precision: str) -> Accelerator:
    """A new ``Accelerator`` (CPU when no GPU is visible) with ``mixed_precision``.

    accelerate keeps one process-wide state and refuses a second precision in the same process; a single process
    (not launched distributed) that trains first in fp32, then in bf16 (a notebook, a test, a benchmark) gets a
    fresh state instead. Under ``accelerate launch``/``torchrun`` the launched state is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != mixed_precision and not PartialState().use_distributed:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())


class Trainer:
    """Trains a :class:`~genmodels.core.GenerativeModel` and writes its run folder.

    Args:
        model: the model (built by the caller; under DDP, rank 0's initial weights are used).
        train_data: ``[N, *spec.event_shape]`` on the model's data scale: a float tensor or in-memory
            :class:`~genmodels.data.examples.Examples` (uint8 levels, scaled per batch), moved once to the
            accelerator's device; or streamed examples (image files), read by ``config.data_workers`` DataLoader
            worker processes a few batches ahead, in the order of the seeded permutation (each process reads only
            its shard of each global batch).
        spec: the data spec; ``train_data.shape[1:]`` must equal ``spec.event_shape``.
        config: the :class:`TrainConfig`.
        run_dir: the run folder (created if needed).
        run_config: saved as ``config.json`` at each checkpoint; its ``train`` field is replaced by
            ``config``.
        sample_fn: ``sample_fn(ema_model, generator) -> [n, *event_shape]``; when given and
            ``config.sample_every > 0``, a grid is saved every ``sample_every`` steps as
            ``run_dir/samples/step_{step:07d}.png`` (main process; ``genmodels.viz.save_grid``).
        progress: progress-bar factory ``(total, initial) -> Progress``; default: tqdm on the main
            process when ``config.progress``, else nothing.
        accelerator: an ``accelerate.Accelerator`` to use; default: a new one with
            ``mixed_precision=config.mixed_precision`` (CPU when no GPU is visible).
        train_labels: ``[N]`` int64 class labels of ``train_data``; required by a class-conditional model
            (``model.num_classes`` set), which gets each batch's labels (label dropout is the model's own,
            :meth:`~genmodels.core.GenerativeModel.drop_labels`); ignored by an unconditional one.
        curve_fn: ``curve_fn(ema_model) -> dict`` (e.g. ``{"bpd": …}`` of a fixed held-out subset), called on the
            main process at training time 0 and every ``config.curve_every_minutes`` of training wall time; each
            result is logged to metrics.jsonl as ``{"step", "event": "curve", "minutes", **result}``. Its own time
            is not training time (the time limit and ``seconds`` exclude it), and it must not draw from torch's
            global RNG (it is forked anyway, so the training randomness is unchanged).
        hflip: mirror each training image left-right with probability ½ (``folder:DIR?flip=true``), drawn for the
            global batch from a generator of its own (seeded, saved in checkpoints: a resume flips the same images).
    Raises:
        ValueError: ``train_data`` of the wrong shape/dtype, fewer examples than ``batch_size``, or
            ``batch_size`` not divisible by the number of processes; a conditional model without labels, or labels
            that do not match the data or the model's classes.
    """

    def __init__(self, model: GenerativeModel, train_data: Tensor, spec: DataSpec,
                 config: TrainConfig, run_dir: str | Path, run_config: RunConfig,
                 sample_fn: SampleFn | None = None, *, progress: ProgressFactory | None = None,
                 accelerator: Accelerator | None = None, train_labels: Tensor | None = None,
                 curve_fn: Callable[[nn.Module], dict] | None = None, hflip: bool = False):
        if not (isinstance(train_data, Tensor) and train_data.is_floating_point()) and not isinstance(
                train_data, Examples):
            raise ValueError(f"train_data must be a floating-point tensor [N, *event_shape] or Examples, got "
                             f"{type(train_data).__name__} {getattr(train_data, 'dtype', '')}")
        if hflip and len(spec.event_shape) != 3:
            raise ValueError(f"horizontal flips need images (C, H, W), but {spec.name!r} has examples of shape "
                             f"{tuple(spec.event_shape)}; drop ?flip=true")
        if tuple(train_data.shape[1:]) != tuple(spec.event_shape):
            raise ValueError(f"train_data has examples of shape {tuple(train_data.shape[1:])}, but "
                             f"the spec of {spec.name!r} says {tuple(spec.event_shape)}")
        if run_config.spec != spec:
            raise ValueError(f"run_config.spec {run_config.spec} differs from the spec of the training "
                             f"data {spec}; config.json must describe the data the model is trained on")
        if len(train_data) < config.batch_size:
            raise ValueError(f"train_data has {len(train_data)} examples, fewer than one batch "
                             f"(batch_size={config.batch_size}); lower --batch-size")
        self.accelerator = accelerator or _accelerator(config.mixed_precision)
        world = self.accelerator.num_processes
        if config.mixed_precision == "fp16" and self.accelerator.device.type == "cpu":
            raise ValueError("--precision fp16 needs a GPU (on a CPU, accelerate runs mixed precision in bf16 only); "
                             "use --precision bf16 or fp32")
        if config.batch_size % world:
            raise ValueError(f"batch_size={config.batch_size} is the global batch and must be "
                             f"divisible by the number of processes ({world})")
        if model.num_classes is None:
            train_labels = None
        elif train_labels is None:
            raise ValueError(f"this {type(model).__name__} is class-conditional ({model.num_classes} classes) "
                             f"but the data {spec.name!r} has no labels; train it unconditionally (drop "
                             f"--conditional) or give labelled data")
        else:
            model.check_label(train_labels, len(train_data))
            if int(train_labels.max()) >= model.num_classes:
                raise ValueError(f"the data has label {int(train_labels.max())} but the model has "
                                 f"{model.num_classes} classes")
        self.model = model
        self.train_data = train_data
        self.train_labels = train_labels
        self.spec = spec
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_config = replace(run_config, train=config)  # keeps the data's source and fingerprint
        self.sample_fn = sample_fn
        self.curve_fn = curve_fn if config.curve_every_minutes else None
        self.hflip = hflip
        self._progress_factory = progress
        self.ema: AveragedModel | None = None  # set by fit

    # -- public -------------------------------------------------------------------------------

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA copy of the model (eval mode), after :meth:`fit` has started."""
        return None if self.ema is None else self.ema.module

    def fit(self, resume: bool = False, *, refuse_finished: bool = False) -> TrainResult:
        """Train up to ``config.steps`` steps, checkpointing along the way.

        Checkpoints (``save_pretrained`` files + ``train_state.pt``) are written every
        ``checkpoint_every`` steps, at the end, when ``time_limit_minutes`` is reached, and on the
        first Ctrl-C (SIGINT), which finishes the current step, saves, then raises
        KeyboardInterrupt (a second Ctrl-C aborts at once, keeping the last checkpoint), and on the first
        SIGTERM (``kill``, a scheduler's preemption), which does the same, then raises ``SystemExit(143)``.

        Args:
            resume: continue from ``run_dir/train_state.pt``; the weights, optimizer, scheduler,
                EMA, data position and every RNG state are restored, and ``metrics.jsonl`` lines
                past the checkpoint's step are dropped before appending. Settings of ``config`` that differ
                from the checkpoint's are applied and recorded (module docstring).
            refuse_finished: with ``resume``, raise ValueError (before writing anything) when the run has
                already reached ``config.steps`` or ``config.time_limit_minutes``, instead of returning at once.
        Returns:
            a :class:`TrainResult`.
        Raises:
            FileExistsError: ``resume=False`` on a folder that already holds a run.
            FileNotFoundError: ``resume=True`` on a folder without ``train_state.pt``.
            ValueError: resuming with a different ``batch_size`` or ``seed`` than the checkpoint; with
                ``refuse_finished``, a resumed run with nothing left to train.
            NonFiniteError: a non-finite loss or gradient norm (beyond ``skip_nonfinite`` consecutive skips)
                or non-finite weights at a checkpoint; the folder keeps its last finite checkpoint.
            KeyboardInterrupt: after the checkpoint that a Ctrl-C asked for.
        """
        cfg, acc = self.config, self.accelerator
        self._check_run_dir(resume)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        device, rank, world = acc.device, acc.process_index, acc.num_processes
        data = self.train_data
        self._data = data.to(device).contiguous() if isinstance(data, Tensor) else data if data.streams else \
            data.to(device)
        self._batches: Iterator[tuple[Tensor, Tensor]] | None = None  # streamed: (shard, levels) from the workers
        self._labels = None if self.train_labels is None else self.train_labels.to(device)

        # Model, optimizer (accelerate moves them to the device and wraps the model in DDP).
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      weight_decay=cfg.weight_decay)
        warmup = cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(  # not prepared: it steps once per step
            optimizer, lambda s: 1.0 if warmup == 0 else min(1.0, (s + 1) / warmup))
        self._loss_module, self.optimizer = acc.prepare(_LossModule(self.model), optimizer)
        # The EMA is built after prepare, so it starts from the (broadcast) rank-0 weights.
        self.ema = AveragedModel(self.model, multi_avg_fn=edm_ema_multi_avg_fn(
            cfg.batch_size, cfg.ema_halflife_kimg, cfg.ema_rampup), use_buffers=True)
        self.ema.module.eval()
        self.ema.requires_grad_(False)

        # Generators: data order (CPU, identical on every process), loss noise (per process).
        self._data_gen = torch.Generator().manual_seed(_derive_seed(cfg.seed, _DATA))
        self._flip_gen = torch.Generator().manual_seed(_derive_seed(cfg.seed, _FLIP))
        self._noise_gen = torch.Generator(device).manual_seed(_derive_seed(cfg.seed, _NOISE, rank))
        cursor = _Cursor()
        self._skipped = self._streak = 0  # non-finite steps skipped in total / in a row
        self._checkpoint_step: int | None = None  # the step of the checkpoint on disk
        self._resume_note: dict | None = None  # added to the first metrics line after a resume
        if resume:
            cursor = self._load_state(refuse_finished)
        else:
            torch.manual_seed(_derive_seed(cfg.seed, _GLOBAL, rank))
            if acc.is_main_process:
                (self.run_dir / METRICS_NAME).unlink(missing_ok=True)  # from a run with no checkpoint
        acc.wait_for_everyone()
        try:
            return self._loop(cursor, world)
        finally:
            self._batches = None  # stops the DataLoader workers of a streamed dataset

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, cur: _Cursor, world: int) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        B = cfg.batch_size
        t_start = time.perf_counter()
        seconds = lambda: cur.seconds + (time.perf_counter() - t_start)  # noqa: E731
        saved_step = cur.step
        window_loss = torch.zeros((), device=acc.device)  # sum of per-step local losses
        window_steps, window_t0 = 0, time.perf_counter()
        final_loss, stop_reason = math.nan, "steps"
        grad_norm = torch.full((), math.nan)
        window_iters = 0  # steps in the window, skipped ones included (window_steps: the finite ones)
        factory = self._progress_factory or (
            _tqdm_progress if cfg.progress and acc.is_main_process else lambda total, initial: _NoProgress())
        bar = factory(cfg.steps, cur.step)
        interrupt = _InterruptFlag()
        if cur.step < cfg.steps:
            logger.info("training %s on %s: steps %d→%d, global batch %d on %d process(es), run %s",
                        self.run_config.model, self.run_config.data, cur.step, cfg.steps, B, world,
                        self.run_dir)
        lr = halflife = math.nan
        every = (cfg.curve_every_minutes or 0) * 60
        # the next learning-curve point: at 0 on a fresh run, else the first multiple after the checkpoint's time
        next_curve = math.inf if self.curve_fn is None else (0.0 if cur.step == 0 else
                                                             (math.floor(cur.seconds / every) + 1) * every)

        def flush() -> float | None:
            """Log the window (every process: the loss is reduced) and start a new one."""
            nonlocal window_steps, window_iters, window_t0
            logged = self._log(cur, window_loss / window_steps if window_steps else None, lr, grad_norm,
                               B * window_iters / (time.perf_counter() - window_t0), seconds(), halflife, bar)
            window_loss.zero_()
            window_steps, window_iters, window_t0 = 0, 0, time.perf_counter()
            return logged

        try:
            with interrupt:
                while cur.step < cfg.steps:
                    timed_out = (cfg.time_limit_minutes is not None
                                 and seconds() >= cfg.time_limit_minutes * 60)
                    stop = self._agree(_INTERRUPT if interrupt.requested else _TIME if timed_out else 0)
                    if stop:
                        stop_reason = "interrupt" if stop == _INTERRUPT else "time_limit"
                        break
                    if seconds() >= next_curve:
                        spent = self._curve_point(cur, seconds())
                        t_start += spent  # the curve's time is not training time
                        window_t0 += spent
                        next_curve = (math.floor(seconds() / every) + 1) * every
                    log_now = (cur.step + 1) % cfg.log_every == 0 or cur.step + 1 == cfg.steps
                    t_step = time.perf_counter()
                    loss, lr, grad_norm, halflife, skipped = self._train_step(cur)
                    self._tune_threads(cur.step, time.perf_counter() - t_step)
                    if not skipped:
                        window_loss += loss
                        window_steps += 1
                    window_iters += 1
                    bar.update(1)

                    if log_now:
                        logged = flush()
                        final_loss = final_loss if logged is None else logged
                    # Samples before the checkpoint, so a resumed run follows the same sequence.
                    if self.sample_fn is not None and cfg.sample_every and cur.step % cfg.sample_every == 0:
                        self._save_samples(cur.step)
                    if cfg.checkpoint_every and cur.step % cfg.checkpoint_every == 0:
                        self._save_checkpoint(cur, seconds())
                        saved_step = cur.step
            if window_iters:  # stopped early: flush the partial log window
                logged = flush()
                final_loss = final_loss if logged is None else logged
            if cur.step > saved_step or not (self.run_dir / STATE_NAME).exists():
                self._save_checkpoint(cur, seconds())
        except NonFiniteError as e:  # every process raises at the same step: log why, write no checkpoint
            if window_iters:
                flush()
            self._log_event({"step": e.step, "event": "nonfinite", "nonfinite": e.what,
                             "skipped_steps": self._skipped, "checkpoint_step": e.checkpoint_step})
            raise
        finally:
            bar.close()
        if stop_reason == "interrupt":
            logger.warning("interrupted at step %d; checkpoint saved in %s (resume with --resume)",
                           cur.step, self.run_dir)
            if interrupt.signum == signal.SIGTERM:
                raise SystemExit(128 + signal.SIGTERM)  # what SIGTERM would have done, after the checkpoint
            raise KeyboardInterrupt
        if stop_reason == "time_limit":
            logger.info("time limit of %.1f minutes reached at step %d", cfg.time_limit_minutes, cur.step)
        return TrainResult(steps=cur.step, images_seen=cur.images_seen, seconds=seconds(),
                           final_loss=final_loss, run_dir=self.run_dir, stop_reason=stop_reason)

    def _train_step(self, cur: _Cursor) -> tuple[Tensor, float, Tensor, float, bool]:
        """One optimizer step on the next global batch, then the EMA update; advances ``cur``.

        A step whose loss or gradient norm is not finite (on any process) updates nothing: it is skipped
        (the optimizer, the EMA and the gradient scaler untouched, the lr schedule and the data position
        advance) if fewer than ``skip_nonfinite`` steps in a row were, else :class:`NonFiniteError` is
        raised before ``cur`` advances.

        Returns:
            (this process's mean loss (detached, float32 scalar), the lr used, the gradient norm before
            clipping, the EMA half-life in images used, whether the step was skipped).
        Raises:
            NonFiniteError: a non-finite step beyond ``skip_nonfinite`` in a row.
        """
        cfg, acc = self.config, self.accelerator
        if self._data_streams and self._batches is None:
            self._batches = self._stream(cur)  # workers read ahead from here, in the order the loop will take
        idx = self._next_indices(cur)  # [B] int64, the global batch
        shard = idx[acc.process_index::acc.num_processes]  # [B / world], this process's examples
        x = self._read(idx, shard)  # [B / world, *event_shape]
        y = None if self._labels is None else self._labels[shard.to(self._labels.device)]  # [B / world]
        loss = self._loss_module(x, generator=self._noise_gen, y=y).mean()  # DDP averages the gradients
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        # the norm at every step, to check it (an infinite max_norm scales the gradients by exactly 1)
        norm = acc.clip_grad_norm_(self._loss_module.parameters(),
                                   math.inf if cfg.grad_clip is None else cfg.grad_clip)
        lr = self.scheduler.get_last_lr()[0]
        halflife = ema_halflife_images(int(self.ema.n_averaged) * cfg.batch_size,
                                       cfg.ema_halflife_kimg, cfg.ema_rampup)
        loss = loss.detach().float()
        bad = self._nonfinite(loss, norm)
        if bad:
            self._streak += 1
            if self._streak > cfg.skip_nonfinite:
                raise self._nonfinite_error(cur.step + 1, bad, loss, norm)
            logger.warning("step %d: non-finite %s; skipped (%d in a row, at most %d)", cur.step + 1, bad,
                           self._streak, cfg.skip_nonfinite)
            self.optimizer.zero_grad(set_to_none=True)
            scaler = getattr(acc, "scaler", None)
            if scaler is not None:  # fp16: clip_grad_norm_ unscaled the gradients; close the scaler's step
                scaler.update()
            self._skipped += 1
        else:
            self._streak = 0
            self.optimizer.step()
            # fp16: the gradient scaler skips a step with overflowing gradients; so does the EMA
            if not getattr(self.optimizer, "step_was_skipped", False):
                self.ema.update_parameters(self.model)  # EDM decay, see edm_ema_multi_avg_fn
        self.scheduler.step()
        cur.step += 1
        cur.images_seen += cfg.batch_size
        return loss, lr, norm, halflife, bool(bad)

    @property
    def _data_streams(self) -> bool:
        return isinstance(self._data, Examples) and self._data.streams

    def _read(self, idx: Tensor, shard: Tensor) -> Tensor:
        """This process's examples ``[B / world, *event_shape]`` of the global batch ``idx`` on the device (from
        memory, or the next batch the DataLoader workers read), mirrored where this step's flips say."""
        if self._batches is None:
            x = self._data[shard.to(self._data.device)]
        else:
            got, levels = next(self._batches)
            if not torch.equal(got, shard):  # the workers follow a copy of the same seeded order
                raise RuntimeError(f"the data workers read examples {got[:4].tolist()}… but this step takes "
                                   f"{shard[:4].tolist()}…; a bug in the trainer's read-ahead")
            x = self._data.scale(levels.to(self.accelerator.device, non_blocking=True))
        if self.hflip:  # drawn for the global batch, so a step flips the same images on any number of processes
            flip = (torch.rand(len(idx), generator=self._flip_gen) < 0.5)[self.accelerator.process_index::
                                                                           self.accelerator.num_processes]
            flip = flip.to(x.device).reshape(-1, *([1] * (x.ndim - 1)))
            x = torch.where(flip, x.flip(-1), x)
        return x

    def _stream(self, cur: _Cursor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(shard, uint8 levels)`` of every coming step, read by ``config.data_workers`` DataLoader workers (None:
        one per core beyond the first, at most 4, at least 1) from a copy of the data order's state at ``cur``."""
        from torch.utils.data import DataLoader

        from .threads import available_cores

        acc, cfg = self.accelerator, self.config
        workers = cfg.data_workers if cfg.data_workers is not None else min(4, max(1, available_cores() - 1))
        plan = _ReadAhead(cur, self._data_gen.get_state(), len(self._data), cfg.batch_size, acc.process_index,
                          acc.num_processes)
        loader = DataLoader(_ByIndex(self._data), batch_sampler=plan, num_workers=workers, collate_fn=_as_is,
                            prefetch_factor=4 if workers else None, pin_memory=acc.device.type == "cuda",
                            worker_init_fn=_quiet_worker if workers else None)
        return iter(loader)

    def _nonfinite(self, loss: Tensor, norm: Tensor | None) -> str:
        """What is not finite at this step on any process (every process gets the same answer): ``""``,
        ``"loss"``, ``"gradient norm"`` or ``"loss and gradient norm"``. Under fp16 the gradient scaler owns
        overflowing gradients (it skips those steps and lowers its scale), so only the loss is checked."""
        acc = self.accelerator
        flags = [~torch.isfinite(loss)]
        check_norm = norm is not None and getattr(acc, "scaler", None) is None
        flags.append(~torch.isfinite(norm.detach().float().to(loss.device)) if check_norm
                     else torch.zeros((), dtype=torch.bool, device=loss.device))
        t = torch.stack(flags).to(torch.int32)  # [2]: loss, gradient norm
        if acc.num_processes > 1:  # the gradients are all-reduced, the losses are not: agree on both
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        loss_bad, norm_bad = t.tolist()
        return " and ".join(name for name, b in (("loss", loss_bad), ("gradient norm", norm_bad)) if b)

    def _nonfinite_error(self, step: int, what: str, loss: Tensor | None = None,
                         norm: Tensor | None = None) -> NonFiniteError:
        """The error that stops a run at a non-finite ``step``: what went non-finite, where the run folder stands,
        and the usual causes and fixes."""
        values = [f"{name} {float(v):g}" for name, v in (("loss", loss), ("gradient norm", norm)) if v is not None]
        if what == "weights":
            desc = "the weights are not finite after the update of this step (the loss and gradient norm were)"
        else:
            desc = (f"the {what} {'are' if ' and ' in what else 'is'} not finite"
                    + (f" ({', '.join(values)})" if values else ""))
            if self.config.skip_nonfinite:
                desc += (f", {self._streak} steps in a row (more than skip_nonfinite="
                         f"{self.config.skip_nonfinite})")
        where = (f"nothing was saved after it: {self.run_dir} keeps its checkpoint of step {self._checkpoint_step} "
                 "(continue it with --resume, e.g. with a lower --lr)" if self._checkpoint_step is not None else
                 f"no checkpoint had been written yet, so {self.run_dir} holds no weights: start it again")
        msg = (f"training stopped at step {step}: {desc}; {where}. Usual causes: a learning rate too high "
               f"(lower --lr, now {self.config.lr:g}), data far outside the model's scale (check the dataset's "
               "range), or a --set option that removes a safeguard (e.g. --set clip_x0=false); --skip-nonfinite N "
               "skips up to N such steps in a row instead of stopping")
        return NonFiniteError(msg, step, what, self._checkpoint_step)

    def _tune_threads(self, step: int, seconds: float) -> None:
        """Give a CPU step's time to the process's thread tuner (:mod:`genmodels.threads`; none unless the command
        line chose the count); a switch is logged as ``{"event": "threads"}`` in metrics.jsonl."""
        tuner = threads.tuner()
        if tuner is None or self.config.num_threads is not None or self.accelerator.device.type != "cpu":
            return  # no tuner, a count the config fixes, or a GPU's step (its CPU threads barely matter)
        n = len(tuner.changes)
        tuner.record(seconds)
        for old, new, means in tuner.changes[n:]:
            self._log_event({"step": step, "event": "threads", "threads": new, "previous": old,
                             "step_seconds": {str(c): m for c, m in means.items()}})

    def _agree(self, code: int) -> int:
        """The largest stop code over all processes (0: go on), so all stop at the same step."""
        if self.accelerator.num_processes == 1:
            return code
        t = torch.tensor([code], device=self.accelerator.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())

    def _next_indices(self, cur: _Cursor) -> Tensor:
        """The next global batch ``[batch_size]`` of example indices; a new permutation each epoch
        (the remainder of an epoch smaller than a batch is skipped, like ``drop_last``)."""
        B, N = self.config.batch_size, len(self._data)
        if cur.permutation is None or cur.position + B > N:
            cur.permutation = torch.randperm(N, generator=self._data_gen)  # [N]
            cur.position = 0
            cur.epoch += 1
        idx = cur.permutation[cur.position:cur.position + B]
        cur.position += B
        return idx

    def _log(self, cur: _Cursor, local_loss: Tensor | None, lr: float, grad_norm: Tensor,
             images_per_sec: float, seconds: float, halflife_images: float, bar: Progress) -> float | None:
        """Append one metrics.jsonl line (main process) and return the window's mean loss, None when every step
        of the window was skipped (the same on every process). Non-finite numbers are written as null."""
        loss = None if local_loss is None else float(self.accelerator.reduce(local_loss.reshape(1), "mean").item())
        if not self.accelerator.is_main_process:
            return loss
        record = {
            "step": cur.step,
            "loss": loss,  # mean over the window's finite steps and over processes
            "lr": lr,
            "grad_norm": float(grad_norm),  # global L2 norm before clipping, at the window's last step
            "images_per_sec": images_per_sec,
            "seconds": seconds,  # training wall time since the run started (summed over resumes)
            "ema_halflife_kimg": halflife_images / 1000.0,  # effective (ramped-up) half-life
            "images_seen": cur.images_seen,
            "epoch": cur.epoch,
            "skipped_steps": self._skipped,  # non-finite steps skipped so far (skip_nonfinite), over resumes
            **self.model.train_metrics(),  # the model's own parts, at the window's last step (this process)
        }
        if self._resume_note is not None:  # the first line after a resume says what it changed
            record["resume"], self._resume_note = self._resume_note, None
        self._log_event(record)
        bar.set_postfix(loss="skipped" if loss is None else f"{loss:.4f}", lr=f"{lr:.2e}")
        logger.info("step %d loss %s lr %.2e grad_norm %.3f %.1f img/s", cur.step,
                    "(all skipped)" if loss is None else f"{loss:.5f}", lr, record["grad_norm"], images_per_sec)
        return loss

    def _curve_point(self, cur: _Cursor, seconds: float) -> float:
        """Log one learning-curve point (``curve_fn`` of the EMA weights, main process); returns its wall time."""
        t0 = time.perf_counter()
        if self.accelerator.is_main_process:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                result = self.curve_fn(self.ema.module)
            self._log_event({"step": cur.step, "event": "curve", "minutes": seconds / 60, **result})
        return time.perf_counter() - t0

    def _log_event(self, record: dict) -> None:
        """Append ``record`` to metrics.jsonl as one line of valid JSON (non-finite numbers as null), on the main
        process."""
        if not self.accelerator.is_main_process:
            return
        with open(self.run_dir / METRICS_NAME, "a", encoding="utf-8") as f:
            f.write(json_dumps(record) + "\n")

    def _save_samples(self, step: int) -> None:
        """EMA sample grid on the main process, with its own generator; torch's global RNG is
        forked so sampling never changes the training randomness."""
        if not self.accelerator.is_main_process:
            return
        from .viz import save_grid  # written separately; imported only when grids are asked for

        device = self.accelerator.device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            g = torch.Generator(device).manual_seed(_derive_seed(self.config.seed, _SAMPLE))
            images = self.sample_fn(self.ema.module, g)
        (self.run_dir / SAMPLES_DIR).mkdir(exist_ok=True)
        path = save_grid(images.detach().float().cpu(), self.run_dir / SAMPLES_DIR / f"step_{step:07d}.png")
        logger.info("saved samples %s", path)

    # -- checkpoints -------------------------------------------------------------------------

    def _check_run_dir(self, resume: bool) -> None:
        state = self.run_dir / STATE_NAME
        if resume and not state.is_file():
            raise FileNotFoundError(f"cannot resume: {state} does not exist (no checkpoint was "
                                    "written in this folder); drop --resume to start a new run")
        if not resume:
            existing = [n for n in (STATE_NAME, WEIGHTS_NAME, CONFIG_NAME) if (self.run_dir / n).exists()]
            if existing:
                raise FileExistsError(f"{self.run_dir} already holds a run ({', '.join(existing)}); "
                                      "pass --resume to continue it, or pick a new --out folder")
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _save_checkpoint(self, cur: _Cursor, seconds: float) -> None:
        """Write save_pretrained files, then train_state.pt (the commit point), on the main process.

        ``train_state.pt`` is self-contained (it also holds the weights and EMA), so a run killed
        between two files still resumes from one consistent step.

        Raises:
            NonFiniteError: the weights or the EMA hold a non-finite value (an update that overflowed);
                nothing is written, so the folder keeps its last finite checkpoint.
        """
        acc = self.accelerator
        acc.wait_for_everyone()
        if self._agree(int(not self._weights_finite())):
            raise self._nonfinite_error(cur.step, "weights")
        rng = {"noise": self._noise_gen.get_state(), "torch": torch.get_rng_state()}
        if acc.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(acc.device)
        per_rank = _gather_objects(rng)  # collective: every process takes part
        if acc.is_main_process:
            save_pretrained(self.run_dir, self.model, self.run_config, self.ema.module,
                            metadata={"step": str(cur.step)})
            state = {
                "version": _STATE_VERSION,
                "step": cur.step,
                "images_seen": cur.images_seen,
                "seconds": seconds,
                "epoch": cur.epoch,
                "position": cur.position,
                "permutation": cur.permutation,
                "world_size": acc.num_processes,
                "batch_size": self.config.batch_size,
                "seed": self.config.seed,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),  # module.* weights and n_averaged
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "data_generator": self._data_gen.get_state(),
                "flip_generator": self._flip_gen.get_state(),
                "rng": per_rank,  # [world_size] dicts of ByteTensors
                "train_config": config_to_dict(self.config),
                "skipped_steps": self._skipped,
                "nonfinite_streak": self._streak,
            }
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write_bytes(self.run_dir / STATE_NAME, buf.getvalue())
            logger.info("checkpoint at step %d in %s", cur.step, self.run_dir)
        acc.wait_for_everyone()
        self._checkpoint_step = cur.step

    def _weights_finite(self) -> bool:
        """Whether every floating-point tensor of the model and of the EMA is finite."""
        tensors = [t for m in (self.model, self.ema.module) for t in m.state_dict().values() if t.is_floating_point()]
        return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def _load_state(self, refuse_finished: bool = False) -> _Cursor:
        """Restore everything :meth:`_save_checkpoint` wrote (every process reads the file), then apply the
        settings of ``self.config`` that differ from the checkpoint's and record them (module docstring).

        Everything that can refuse the resume is checked before anything is restored or written.
        """
        cfg, acc = self.config, self.accelerator
        path = self.run_dir / STATE_NAME
        state = load_train_state(path, required=_STATE_KEYS)  # a damaged file: one line naming it
        saved = {**config_to_dict(TrainConfig()), **state.get("train_config", {})}  # older files: defaults
        for key in ("batch_size", "seed"):
            saved[key] = state[key]
        changed = _config_changes(saved, config_to_dict(cfg))
        for key, why in (("seed", "it fixes the data order and the noise"),
                         ("batch_size", "the data position and the EMA's decay count in batches of that size")):
            if key in changed:
                flag = "--" + key.replace("_", "-")
                raise ValueError(f"cannot resume {self.run_dir} with {key}={changed[key][1]}: it was trained with "
                                 f"{key}={changed[key][0]} and a resumed run keeps it ({why}); omit {flag} (or "
                                 f"give {flag} {changed[key][0]}), or start a new run in another --out")
        if refuse_finished:
            _refuse_finished(state["step"], state["seconds"], cfg)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_optimizer_settings(changed)
        self._data_gen.set_state(state["data_generator"])
        if "flip_generator" in state:  # written since flips exist (issue 18)
            self._flip_gen.set_state(state["flip_generator"])
        rank = acc.process_index
        if state["world_size"] == acc.num_processes:
            rng = state["rng"][rank]
            self._noise_gen.set_state(rng["noise"])
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and acc.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], acc.device)
        else:
            logger.warning("resuming %s with %d processes instead of %d: the data order is kept, "
                           "but the noise is reseeded (not bitwise identical to an uninterrupted run)",
                           path, acc.num_processes, state["world_size"])
            self._noise_gen.manual_seed(_derive_seed(cfg.seed, _NOISE, rank, state["step"]))
            torch.manual_seed(_derive_seed(cfg.seed, _GLOBAL, rank, state["step"]))
        self._skipped = state.get("skipped_steps", 0)
        self._streak = state.get("nonfinite_streak", 0)
        self._checkpoint_step = state["step"]
        history = tuple(saved.get("history") or ())
        if changed:
            history += (f"step {state['step']}: " + ", ".join(f"{k} {json_dumps(old)} -> {json_dumps(new)}"
                                                              for k, (old, new) in changed.items()),)
            logger.info("resuming %s at step %d with %s", self.run_dir, state["step"], history[-1].split(": ", 1)[1])
        self.config = replace(cfg, history=history)
        self.run_config = replace(self.run_config, train=self.config)
        self._resume_note = {"step": state["step"], "changed": changed}
        if acc.is_main_process:
            _truncate_metrics(self.run_dir / METRICS_NAME, state["step"])
        logger.info("resumed %s at step %d", self.run_dir, state["step"])
        return _Cursor(step=state["step"], images_seen=state["images_seen"], seconds=state["seconds"],
                       epoch=state["epoch"], position=state["position"], permutation=state["permutation"])

    def _apply_optimizer_settings(self, changed: dict) -> None:
        """After loading the optimizer and scheduler states (which carry the checkpoint's lr, betas and weight
        decay), put in the new values of the changed ones; the lr of the next step is ``lr`` times the warm-up
        factor at the scheduler's step, as if the run had had the new ``lr``/``warmup_steps`` all along."""
        cfg = self.config
        groups = self.optimizer.param_groups
        if "lr" in changed or "warmup_steps" in changed:
            sched = self.scheduler
            sched.base_lrs = [cfg.lr for _ in groups]
            lrs = [base * fn(sched.last_epoch) for fn, base in zip(sched.lr_lambdas, sched.base_lrs, strict=True)]
            for group, lr in zip(groups, lrs, strict=True):
                group["initial_lr"], group["lr"] = cfg.lr, lr
            sched._last_lr = lrs
        for key in ("betas", "weight_decay"):
            if key in changed:
                for group in groups:
                    group[key] = getattr(cfg, key)


_UNRECORDED = ("progress", "num_threads", "data_workers", "history")
"""TrainConfig fields a resume may change without recording it: how the run is shown and run, not what it does."""


def _config_changes(saved: dict, new: dict) -> dict[str, list]:
    """``{field: [checkpoint's value, new value]}`` for the fields (in TrainConfig's order) that differ, as JSON
    values (tuples as lists)."""
    return {k: [saved.get(k), v] for k, v in new.items() if k not in _UNRECORDED and saved.get(k) != v}


def _refuse_finished(step: int, seconds: float, cfg: TrainConfig) -> None:
    """Raise ValueError when a run at ``step`` after ``seconds`` of training has nothing left to do under ``cfg``."""
    if step > cfg.steps:
        raise ValueError(f"the run is at step {step}, past --steps {cfg.steps}; give a larger --steps")
    if step == cfg.steps:
        raise ValueError(f"the run is already at step {step}, its --steps; give a larger --steps to train it further")
    if cfg.time_limit_minutes is not None and seconds >= cfg.time_limit_minutes * 60:
        raise ValueError(f"the run has trained {seconds / 60:.2f} minutes, past --minutes {cfg.time_limit_minutes:g}; "
                         "give a larger --minutes")


def _gather_objects(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, …]`` on every process (a collective)."""
    from accelerate.utils import gather_object

    return gather_object([obj])


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics lines with ``step ≤ step`` (and drop a torn last line), atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class _InterruptFlag:
    """While active, the first SIGINT (Ctrl-C) or SIGTERM (``kill``, ``timeout``, a batch scheduler's preemption) sets
    ``requested`` and ``signum`` (the loop saves a checkpoint and stops at the end of the step) and restores that
    signal's previous handler, so a second one acts at once (Ctrl-C aborts; SIGTERM kills). Installed only in the main
    thread, and for each signal only where it still has its default handler (Python's for SIGINT, the OS's for
    SIGTERM): a signal the caller ignores or handles itself is left alone."""

    _DEFAULTS: ClassVar[dict[int, object]] = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            for signum, default in self._DEFAULTS.items():
                if signal.getsignal(signum) is default:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested, self.signum = True, signum
        signal.signal(signum, self._previous.pop(signum))
        what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        logger.warning("%s: stopping after this step with a checkpoint (%s again to abort)", what, what)

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


class _ReadAhead:
    """The DataLoader's batch sampler of a streamed dataset: this process's shard of every coming global batch, from
    a copy of the data order's state (the loop's own ``_next_indices`` draws the same permutations from the same
    generator state, so the two agree; the loop checks it)."""

    def __init__(self, cur: _Cursor, generator_state: Tensor, n: int, batch_size: int, rank: int, world: int):
        self.permutation, self.position = cur.permutation, cur.position
        self.state, self.n, self.batch_size, self.rank, self.world = generator_state, n, batch_size, rank, world

    def __iter__(self) -> Iterator[Tensor]:
        g = torch.Generator()
        g.set_state(self.state)
        perm, pos, B = self.permutation, self.position, self.batch_size
        while True:
            if perm is None or pos + B > self.n:
                perm, pos = torch.randperm(self.n, generator=g), 0
            yield perm[pos:pos + B][self.rank::self.world]
            pos += B


class _ByIndex(torch.utils.data.Dataset):
    """What a DataLoader worker reads: ``(indices, uint8 levels [k, *event_shape])`` of a batch of indices (the
    levels cross the process boundary, a quarter of float32's bytes; the main process scales them)."""

    def __init__(self, examples: Examples):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Tensor:
        return self.examples.levels_at(torch.tensor([i]))[0]

    def __getitems__(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return idx, self.examples.levels_at(idx)


def _as_is(batch: Any) -> Any:
    """The DataLoader's collate: a batch is read whole by ``_ByIndex.__getitems__``."""
    return batch


def _quiet_worker(_worker_id: int) -> None:
    """A data worker ignores Ctrl-C and SIGTERM: the main process finishes its step, checkpoints and stops them
    (a worker also exits when the main process dies: torch watches it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
