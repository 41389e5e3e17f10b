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
"""

from __future__ import annotations

import io
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    RunConfig,
    config_to_dict,
    save_pretrained,
)
from .core import DataSpec, GenerativeModel
from .fileio import atomic_write_bytes, atomic_write_text
from .train_config import TrainConfig  # re-exported: `from genmodels.train import TrainConfig`

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "TrainConfig",
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

logger = logging.getLogger("genmodels.train")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        steps: optimizer steps done in total (including those before a resume).
        images_seen: training examples consumed in total (``steps × batch_size``).
        seconds: training wall time in seconds, summed over resumes.
        final_loss: mean loss of the last logged window (across processes); NaN if no step ran.
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
    Non-floating buffers (e.g. counters) are copied from the model.
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

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:  # [B, *event] -> [B]
        """The model's per-example loss, ``[B]``."""
        return self.model.loss(x, generator=generator)


def _derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (numpy SeedSequence), one stream per purpose."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# stream keys for _derive_seed(seed, STREAM, ...)
_DATA, _NOISE, _GLOBAL, _SAMPLE = 0, 1, 2, 3
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


class Trainer:
    """Trains a :class:`~genmodels.core.GenerativeModel` and writes its run folder.

    Args:
        model: the model (built by the caller; under DDP, rank 0's initial weights are used).
        train_data: ``[N, *spec.event_shape]`` float tensor on the model's data scale, kept in
            memory (moved once to the accelerator's device).
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
    Raises:
        ValueError: ``train_data`` of the wrong shape/dtype, fewer examples than ``batch_size``, or
            ``batch_size`` not divisible by the number of processes.
    """

    def __init__(self, model: GenerativeModel, train_data: Tensor, spec: DataSpec,
                 config: TrainConfig, run_dir: str | Path, run_config: RunConfig,
                 sample_fn: SampleFn | None = None, *, progress: ProgressFactory | None = None,
                 accelerator: Accelerator | None = None):
        from accelerate import Accelerator  # heavy import, only when training

        if not isinstance(train_data, Tensor) or not train_data.is_floating_point():
            raise ValueError(f"train_data must be a floating-point tensor [N, *event_shape], got "
                             f"{type(train_data).__name__} {getattr(train_data, 'dtype', '')}")
        if tuple(train_data.shape[1:]) != tuple(spec.event_shape):
            raise ValueError(f"train_data has examples of shape {tuple(train_data.shape[1:])}, but "
                             f"the spec of {spec.name!r} says {tuple(spec.event_shape)}")
        if run_config.spec != spec:
            raise ValueError(f"run_config.spec {run_config.spec} differs from the spec of the training "
                             f"data {spec}; config.json must describe the data the model is trained on")
        if len(train_data) < config.batch_size:
            raise ValueError(f"train_data has {len(train_data)} examples, fewer than one batch "
                             f"(batch_size={config.batch_size}); lower --batch-size")
        self.accelerator = accelerator or Accelerator(mixed_precision=config.mixed_precision,
                                                      cpu=not torch.cuda.is_available())
        world = self.accelerator.num_processes
        if config.batch_size % world:
            raise ValueError(f"batch_size={config.batch_size} is the global batch and must be "
                             f"divisible by the number of processes ({world})")
        self.model = model
        self.train_data = train_data
        self.spec = spec
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_config = replace(run_config, train=config)  # keeps the data's source and fingerprint
        self.sample_fn = sample_fn
        self._progress_factory = progress
        self.ema: AveragedModel | None = None  # set by fit

    # -- public -------------------------------------------------------------------------------

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA copy of the model (eval mode), after :meth:`fit` has started."""
        return None if self.ema is None else self.ema.module

    def fit(self, resume: bool = False) -> TrainResult:
        """Train up to ``config.steps`` steps, checkpointing along the way.

        Checkpoints (``save_pretrained`` files + ``train_state.pt``) are written every
        ``checkpoint_every`` steps, at the end, when ``time_limit_minutes`` is reached, and on the
        first Ctrl-C (SIGINT), which finishes the current step, saves, then raises
        KeyboardInterrupt (a second Ctrl-C aborts at once, keeping the last checkpoint), and on the first
        SIGTERM (``kill``, a scheduler's preemption), which does the same, then raises ``SystemExit(143)``.

        Args:
            resume: continue from ``run_dir/train_state.pt``; the weights, optimizer, scheduler,
                EMA, data position and every RNG state are restored, and ``metrics.jsonl`` lines
                past the checkpoint's step are dropped before appending.
        Returns:
            a :class:`TrainResult`.
        Raises:
            FileExistsError: ``resume=False`` on a folder that already holds a run.
            FileNotFoundError: ``resume=True`` on a folder without ``train_state.pt``.
            ValueError: resuming with a different ``batch_size`` or ``seed`` than the checkpoint.
            KeyboardInterrupt: after the checkpoint that a Ctrl-C asked for.
        """
        cfg, acc = self.config, self.accelerator
        self._check_run_dir(resume)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        device, rank, world = acc.device, acc.process_index, acc.num_processes
        self._data = self.train_data.to(device).contiguous()

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
        self._noise_gen = torch.Generator(device).manual_seed(_derive_seed(cfg.seed, _NOISE, rank))
        cursor = _Cursor()
        if resume:
            cursor = self._load_state()
        else:
            torch.manual_seed(_derive_seed(cfg.seed, _GLOBAL, rank))
            if acc.is_main_process:
                (self.run_dir / METRICS_NAME).unlink(missing_ok=True)  # from a run with no checkpoint
        acc.wait_for_everyone()
        return self._loop(cursor, world)

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
        factory = self._progress_factory or (
            _tqdm_progress if cfg.progress and acc.is_main_process else lambda total, initial: _NoProgress())
        bar = factory(cfg.steps, cur.step)
        interrupt = _InterruptFlag()
        if cur.step < cfg.steps:
            logger.info("training %s on %s: steps %d→%d, global batch %d on %d process(es), run %s",
                        self.run_config.model, self.run_config.data, cur.step, cfg.steps, B, world,
                        self.run_dir)
        try:
            with interrupt:
                while cur.step < cfg.steps:
                    timed_out = (cfg.time_limit_minutes is not None
                                 and seconds() >= cfg.time_limit_minutes * 60)
                    stop = self._agree(_INTERRUPT if interrupt.requested else _TIME if timed_out else 0)
                    if stop:
                        stop_reason = "interrupt" if stop == _INTERRUPT else "time_limit"
                        break
                    log_now = (cur.step + 1) % cfg.log_every == 0 or cur.step + 1 == cfg.steps
                    loss, lr, norm, halflife = self._train_step(cur, need_norm=log_now)
                    grad_norm = grad_norm if norm is None else norm
                    window_loss += loss
                    window_steps += 1
                    bar.update(1)

                    if log_now:
                        final_loss = self._log(cur, window_loss / window_steps, lr, grad_norm,
                                               B * window_steps / (time.perf_counter() - window_t0),
                                               seconds(), halflife, bar)
                        window_loss.zero_()
                        window_steps, window_t0 = 0, time.perf_counter()
                    # Samples before the checkpoint, so a resumed run follows the same sequence.
                    if self.sample_fn is not None and cfg.sample_every and cur.step % cfg.sample_every == 0:
                        self._save_samples(cur.step)
                    if cfg.checkpoint_every and cur.step % cfg.checkpoint_every == 0:
                        self._save_checkpoint(cur, seconds())
                        saved_step = cur.step
            if window_steps:  # stopped early: flush the partial log window
                final_loss = self._log(cur, window_loss / window_steps, lr, grad_norm,
                                       B * window_steps / (time.perf_counter() - window_t0),
                                       seconds(), halflife, bar)
            if cur.step > saved_step or not (self.run_dir / STATE_NAME).exists():
                self._save_checkpoint(cur, seconds())
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

    def _train_step(self, cur: _Cursor, need_norm: bool) -> tuple[Tensor, float, Tensor | None, float]:
        """One optimizer step on the next global batch, then the EMA update; advances ``cur``.

        Returns:
            (this process's mean loss (detached, float32 scalar), the lr used, the gradient norm
            before clipping (None when not computed), the EMA half-life in images used).
        """
        cfg, acc = self.config, self.accelerator
        idx = self._next_indices(cur)  # [B] int64, the global batch
        shard = idx[acc.process_index::acc.num_processes]  # [B / world], this process's examples
        x = self._data[shard.to(self._data.device)]  # [B / world, *event_shape]
        loss = self._loss_module(x, generator=self._noise_gen).mean()  # DDP averages the gradients
        self.optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        norm = None
        if cfg.grad_clip is not None:
            norm = acc.clip_grad_norm_(self._loss_module.parameters(), cfg.grad_clip)
        elif need_norm:  # norm only: an infinite max_norm scales the gradients by exactly 1
            norm = acc.clip_grad_norm_(self._loss_module.parameters(), math.inf)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        halflife = ema_halflife_images(int(self.ema.n_averaged) * cfg.batch_size,
                                       cfg.ema_halflife_kimg, cfg.ema_rampup)
        self.ema.update_parameters(self.model)  # EDM decay, see edm_ema_multi_avg_fn
        cur.step += 1
        cur.images_seen += cfg.batch_size
        return loss.detach().float(), lr, norm, halflife

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

    def _log(self, cur: _Cursor, local_loss: Tensor, lr: float, grad_norm: Tensor,
             images_per_sec: float, seconds: float, halflife_images: float, bar: Progress) -> float:
        """Append one metrics.jsonl line (main process) and return the window's mean loss."""
        loss = float(self.accelerator.reduce(local_loss.reshape(1), "mean").item())
        if not self.accelerator.is_main_process:
            return loss
        record = {
            "step": cur.step,
            "loss": loss,  # mean over the window's steps and over processes
            "lr": lr,
            "grad_norm": float(grad_norm),  # global L2 norm before clipping, at the window's last step
            "images_per_sec": images_per_sec,
            "seconds": seconds,  # training wall time since the run started (summed over resumes)
            "ema_halflife_kimg": halflife_images / 1000.0,  # effective (ramped-up) half-life
            "images_seen": cur.images_seen,
            "epoch": cur.epoch,
            **self.model.train_metrics(),  # the model's own parts, at the window's last step (this process)
        }
        with open(self.run_dir / METRICS_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        logger.info("step %d loss %.5f lr %.2e grad_norm %.3f %.1f img/s", cur.step, loss, lr,
                    record["grad_norm"], images_per_sec)
        return loss

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
        """
        acc = self.accelerator
        acc.wait_for_everyone()
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
                "rng": per_rank,  # [world_size] dicts of ByteTensors
                "train_config": config_to_dict(self.config),
            }
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write_bytes(self.run_dir / STATE_NAME, buf.getvalue())
            logger.info("checkpoint at step %d in %s", cur.step, self.run_dir)
        acc.wait_for_everyone()

    def _load_state(self) -> _Cursor:
        """Restore everything :meth:`_save_checkpoint` wrote (every process reads the file)."""
        cfg, acc = self.config, self.accelerator
        path = self.run_dir / STATE_NAME
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("batch_size", "seed"):
            if state[key] != getattr(cfg, key):
                raise ValueError(f"cannot resume {path}: it was trained with {key}={state[key]}, "
                                 f"the config says {getattr(cfg, key)}; use the same {key}")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._data_gen.set_state(state["data_generator"])
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
        if acc.is_main_process:
            _truncate_metrics(self.run_dir / METRICS_NAME, state["step"])
        logger.info("resumed %s at step %d", self.run_dir, state["step"])
        return _Cursor(step=state["step"], images_seen=state["images_seen"], seconds=state["seconds"],
                       epoch=state["epoch"], position=state["position"], permutation=state["permutation"])


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
