#!/usr/bin/env python
"""Our RealNVP against normflows' RealNVP: test bits/dim (one convention, the same dequantization noise) and
training throughput.

Method (../shared/BENCHMARKING.md): the same data, split, architecture and size, optimizer, batch, steps and seed
for both; quality and speed together; speed as a ratio ours/normflows measured in the same process, the two
trainings alternated (ours first, then normflows first, …) over several separate processes (``--rounds``), with the
median and range of the per-process ratios; parameters and multiply-adds per example beside the throughput.

Data: ``mnist5k`` (4000 train / 1000 test 28×28 MNIST digits, 256 levels, on [−1, 1]). Both models are trained on
the same uniformly dequantized batches in the same order: x + u, u ~ U(−Δ/2, Δ/2)^D, Δ = 2/255, drawn from
generators seeded as our ``Trainer`` seeds them (``genmodels.train._derive_seed``), so the normflows loop reproduces
our Trainer's data order and noise exactly.

Architecture: our ``RealNVP(default_realnvp_config(spec) + --set …)``; by default ``--set n_scales=2`` (ours: 3
checkerboard couplings at 1×28×28, squeeze, 3 channel couplings at 4×14×14, factor out 2 channels, 4 checkerboard
couplings at 2×14×14; ResNet coupling nets of 32 channels and 1 residual block; logit α = 0.05). Our default preset
has 3 scales, whose last 4 checkerboard couplings act on 7×7 maps; normflows' checkerboard ``Split`` needs an even
last dimension, so it cannot build that scale (``--set n_scales=3`` stops with this message). normflows' model is
built from normflows' own blocks, walking our model's levels one by one: ``nf.MultiscaleFlow`` (written in the
generative direction z → x, so every level's list is our data-direction list reversed) with
``nf.flows.AffineCouplingBlock(param_map, scale_map="exp", split_mode=…)`` (our checkerboard parity 0 →
``checkerboard_inv``, parity 1 → ``checkerboard``; channel parity 0 → ``channel``, 1 → ``channel_inv``),
``nf.flows.Squeeze`` (its inverse is our space-to-depth, the same channel order), ``nf.flows.Merge("channel_inv")``
(factors out the first half of the channels, as ours does), ``nf.distributions.DiagGaussian(shape,
trainable=False)`` (N(0, I), as ours) and ``nf.transforms.Logit(α)`` on x01 = (x − lo)/(hi − lo) ∈ [0, 1], where
[lo, hi] = [−1 − Δ/2, 1 + Δ/2] is the interval our logit maps onto [α, 1 − α], so the two logits are the same map
(x01 = (k + u')/256, RealNVP's convention). The ``param_map`` of every coupling is *our* coupling network class
(``CouplingResNet``, the same in/out channels) followed by our log-scale bound (log s = a·tanh(h), a learned per
channel, a = 1 at start), output interleaved as normflows expects (shift at even channels, log-scale at odd), so the
parameter counts are equal (checked) and the initial weights are copied from ours (the same initial weights for both).

Differences that remain (normflows' design, not ours to change): normflows' checkerboard ``Split`` gathers the
x_a pixels into a half-width [C, H, W/2] map (the convolutions see each row's pixels packed together), so its
checkerboard couplings do about half the convolution work of ours, which runs the net on the full masked map; its
3-D checkerboard flips with the channel index (ours is the same in every channel); its couplings compute
x_b ↦ (x_b − t)·exp(−log s) in the data direction (ours x_b·exp(log s) + t). MACs per image are reported.

Budget: ``--steps`` optimizer steps of batch 64 for both, AdamW (β = 0.9, 0.999, weight decay 0), lr 1e-3 with our
linear warm-up (``--warmup-steps``, the same schedule for both), gradient clipping at global norm 1.0, the same
seed. Ours is trained through ``genmodels.cli.run_train`` (the ``genmodels train realnvp`` path: our Trainer with its
EMA, half-life 50 kimg, ramp-up 0.05); normflows has no trainer, so it is trained by a plain loop written here that
does what our Trainer does per step (the same batches and noise, loss in bits/dim, AdamW, the warm-up schedule,
clipping, and the same EMA with ``AveragedModel``). Both EMA and raw weights of both are evaluated.

Throughput (images/s) over ``--rounds`` processes: (1) the whole training call (ours: ``run_train`` including the
dataset load, model build, accelerate set-up and the final checkpoint; normflows: model build, weight copy, the loop
and saving the weights); (2) the training loop alone (ours: ``TrainResult.seconds``; normflows: the loop);
(3) the model step alone: both models driven by the *same* plain step function (dequantize, loss, backward, clip,
AdamW) on the same batches, ``--micro-steps`` steps per block, blocks alternated ABAB…, ``--micro-blocks`` blocks
each, after the trainings. Ratios ours/normflows (> 1: ours faster).

Bits/dim: the discrete-data upper bound of ``genmodels.core.discrete_nll_from_density`` for both,
−log p(x + u) − D·log Δ on the [−1, 1] scale (normflows' density on x01 converted by its Jacobian, −D·log(hi − lo)),
over all 1000 test images, averaged over ``--eval-draws`` dequantization draws per image, the same u for every model;
± is the standard error over images; the paired difference ours − normflows is taken per image (same x, same u).

Checks run before training (all must pass): (a) normflows' ``log_prob`` on a tiny 1×4×4 model of this builder with
random weights equals Σ log N(z_i) + log|det ∂z/∂x| with the Jacobian of its data → latent map computed by autograd
(float64); the same for ours; (b) a 1×1×2 model of this builder (two pixels, checkerboard couplings, normflows'
Logit) with random weights (std 0.3): its density integrates to 1 over its support (midpoint rule, 1000² points,
tolerance 1e-4) and its samples' log q equals its log_prob at them; (c) at initialization
(couplings are the identity: zero-initialized last convolutions) ours and normflows give the same test NLL on the same
dequantized images, which checks the logit and bits/dim conventions end to end; (d) the same batches: one step of
each training (ours through ``run_train``, normflows' loop) from the same initial weights gives the same loss.

Usage::

    python benchmarks/realnvp_vs_normflows.py                         # 2000 steps, 3 rounds, 2 threads
    python benchmarks/realnvp_vs_normflows.py --steps 20 --rounds 1 --threads 1   # smoke test (about 1.5 min)
    python benchmarks/realnvp_vs_normflows.py --worker ...            # one training process (internal; JSON)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (benchmarks/_machine.py)

DATA = "mnist5k"
BATCH = 64
DEFAULT_SET = ["n_scales=2"]


# --------------------------------------------------------------------------- the two models
def our_config(spec, settings: list[str]):
    """Our RealNVP preset for ``spec`` with the ``--set`` assignments (what ``genmodels train realnvp`` builds)."""
    from genmodels.cli import model_config

    return model_config("realnvp", spec, settings)


def our_model(cfg, spec, seed: int):
    """Our RealNVP with the initial weights ``run_train`` gives it (``torch.manual_seed(seed)`` then build)."""
    from genmodels.flows.flow import RealNVP

    torch.manual_seed(seed)
    return RealNVP(cfg, spec)


class ParamMap(nn.Module):
    """normflows' ``param_map`` for one coupling: our ``CouplingResNet`` (x_a's channels → 2 × x_b's channels) and
    our log-scale bound, output interleaved as ``nf.flows.AffineCoupling`` reads it (``param[:, 0::2]`` the shift,
    ``param[:, 1::2]`` the log-scale, exponentiated by its ``scale_map="exp"``). Its parameter names equal those of
    our ``AffineCoupling`` (``net.*``, ``tanh_scale``), so our weights load into it one to one."""

    def __init__(self, n_cond: int, n_target: int, net_cfg, scale: str):
        super().__init__()
        from genmodels.nets.coupling import CouplingResNet

        self.net = CouplingResNet(n_cond, 2 * n_target, net_cfg)
        self.scale = scale
        if scale == "tanh":
            self.tanh_scale = nn.Parameter(torch.ones(n_target, 1, 1))

    def forward(self, z1: Tensor) -> Tensor:
        """``[B, n_cond, H, W'] -> [B, 2·n_target, H, W']`` (shift, log-scale interleaved per channel)."""
        h, t = self.net(z1).chunk(2, dim=1)  # the same split of the net's output as ours
        if self.scale == "tanh":
            log_s = self.tanh_scale * torch.tanh(h)
        else:
            log_s = nn.functional.logsigmoid(h + 2.0)
        return torch.stack([t, log_s], 2).flatten(1, 2)


def normflows_model(ours):
    """normflows' ``MultiscaleFlow`` mirroring ``ours`` (a built ``RealNVP`` on images), built from normflows' blocks
    with our coupling networks as ``param_map`` (module docstring); returns ``(model, [(our coupling, its param
    map)] in data order)``.

    Raises:
        ValueError: for a structure normflows' blocks cannot express (a checkerboard coupling on an odd width, a
            channel coupling on an odd channel count, a transform that is not a coupling or a squeeze).
    """
    import normflows as nf

    from genmodels.flows.transforms import AffineCoupling, ChannelPartition, CheckerboardPartition, Squeeze

    cfg, spec = ours.config, ours.spec
    if ours.preprocess is None or not spec.is_image:
        raise ValueError("this benchmark compares image RealNVPs with the logit pre-processing")
    shape = list(spec.event_shape)  # (C, H, W) through the levels, data direction
    levels, q0_shapes, pairs = [], [], []
    for level, split in zip(ours.levels, ours.splits, strict=True):
        blocks = []  # data direction
        for t in level.transforms:
            if isinstance(t, Squeeze):
                blocks.append(nf.flows.Squeeze())  # its inverse (the data direction) is our space-to-depth
                shape = [4 * shape[0], shape[1] // 2, shape[2] // 2]
            elif isinstance(t, AffineCoupling) and isinstance(t.partition, CheckerboardPartition):
                if shape[2] % 2:
                    raise ValueError(f"normflows' checkerboard Split needs an even width; our model has a "
                                     f"checkerboard coupling on {shape[1]}×{shape[2]} maps (use --set n_scales=2 "
                                     f"on 28×28)")
                pm = ParamMap(t.partition.n_cond, t.partition.n_target, cfg.net, t.scale)
                mode = "checkerboard_inv" if t.partition.parity == 0 else "checkerboard"
                blocks.append(nf.flows.AffineCouplingBlock(pm, scale=True, scale_map="exp", split_mode=mode))
                pairs.append((t, pm))
            elif isinstance(t, AffineCoupling) and isinstance(t.partition, ChannelPartition):
                if shape[0] % 2:
                    raise ValueError(f"normflows' channel Split halves the channels; our model has a channel "
                                     f"coupling on {shape[0]} channels")
                pm = ParamMap(t.partition.n_cond, t.partition.n_target, cfg.net, t.scale)
                mode = "channel" if t.partition.parity == 0 else "channel_inv"
                blocks.append(nf.flows.AffineCouplingBlock(pm, scale=True, scale_map="exp", split_mode=mode))
                pairs.append((t, pm))
            else:
                raise ValueError(f"no normflows counterpart for {type(t).__name__} in this benchmark")
        levels.append(blocks[::-1])  # normflows lists the generative direction
        if split:  # ours factors out the first half of the channels; Merge("channel_inv").inverse does the same
            q0_shapes.append((shape[0] // 2, shape[1], shape[2]))
            shape = [shape[0] - shape[0] // 2, shape[1], shape[2]]
    q0_shapes.append(tuple(shape))
    n = len(levels)
    # normflows' index i = n − 1 − (our level k): flows[n−1] meets the data first; q0[i > 0] is the piece factored
    # out after flows[i] by merges[i − 1]; q0[0] takes the last level's output
    flows = levels[::-1]
    q0 = [nf.distributions.DiagGaussian(s, trainable=False) for s in q0_shapes[::-1]]
    merges = [nf.flows.Merge("channel_inv") for _ in range(n - 1)]
    model = nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(alpha=cfg.logit_alpha),
                              class_cond=False)
    return model, pairs


def copy_weights(pairs) -> None:
    """Load every our coupling's weights into its normflows ``ParamMap`` (the same names and shapes)."""
    for ours_t, pm in pairs:
        pm.load_state_dict(ours_t.state_dict(), strict=True)


def logit_interval(spec) -> tuple[float, float]:
    """[lo, hi]: the interval our logit maps onto [α, 1 − α] (the data range extended by half a bin)."""
    from genmodels.core import log_bin_width

    half = math.exp(log_bin_width(spec)) / 2
    lo, hi = spec.value_range
    return lo - half, hi + half


def normflows_nll(model, x_deq: Tensor, spec) -> Tensor:
    """The discrete-data NLL bound in nats per image, ``[B]``, of a normflows model on dequantized ``x_deq`` on
    the [−1, 1] scale: its density on x01 = (x − lo)/(hi − lo), carried to the [−1, 1] scale (−D·log(hi − lo)),
    then ``discrete_nll_from_density``."""
    from genmodels.core import discrete_nll_from_density

    lo, hi = logit_interval(spec)
    log_p = model.log_prob((x_deq - lo) / (hi - lo), None) - spec.dim * math.log(hi - lo)
    return discrete_nll_from_density(-log_p, spec)


def our_nll(model, x_deq: Tensor, spec) -> Tensor:
    """Our discrete-data NLL bound in nats per image on dequantized ``x_deq`` (what ``nll_terms`` sums)."""
    from genmodels.core import discrete_nll_from_density

    return discrete_nll_from_density(-model.log_prob(x_deq), spec)


def dequantize(x: Tensor, g: torch.Generator, spec) -> Tensor:
    """x + u, u ~ U(−Δ/2, Δ/2)^D, drawn exactly as our ``Flow.dequantize`` draws it from ``g``
    (:func:`genmodels.core.uniform_dequantize`)."""
    from genmodels.core import uniform_dequantize

    return uniform_dequantize(x, spec, g)


def n_params(m: nn.Module) -> int:
    """Number of parameters of ``m``."""
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- checks of normflows' density
def _randomize(m: nn.Module, std: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


def density_checks() -> dict:
    """(a) log_prob against an autograd change of variables on a tiny 1×4×4 model (normflows and ours); (b) the
    density of a 1×1×2 normflows model integrates to 1 (module docstring)."""
    from genmodels.core import DataSpec
    from genmodels.flows.flow import RealNVP, RealNVPConfig
    from genmodels.nets.coupling import CouplingNetConfig

    out = {}
    torch.manual_seed(0)
    spec = DataSpec("tiny", (1, 4, 4), 256)
    cfg = RealNVPConfig(n_scales=2, net=CouplingNetConfig(hidden=8, depth=1))
    ours = RealNVP(cfg, spec).double()
    nfm, _ = normflows_model(ours)
    nfm = nfm.double()
    # std 0.15: log-densities a few nats away from the identity flow's, z still of order 1 (larger weights make
    # the 10 stacked couplings blow z up to |z| ~ 1e3, where an absolute comparison says little)
    _randomize(ours, 0.15, 1)
    _randomize(nfm, 0.15, 2)
    x01 = 0.05 + 0.9 * torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    errs_nf, errs_ours, errs_ld, lps = [], [], [], []
    for xi in x01:
        def f_nf(v):
            z, _ = nfm.inverse_and_log_det(v.view(1, 1, 4, 4))
            return torch.cat([p.flatten() for p in z])

        v = xi.flatten()
        z = f_nf(v)
        jac = torch.autograd.functional.jacobian(f_nf, v)
        logdet = torch.linalg.slogdet(jac)[1]
        base = -0.5 * (z * z).sum() - 0.5 * z.numel() * math.log(2 * math.pi)
        lp = nfm.log_prob(xi[None], None)[0]
        _, ld = nfm.inverse_and_log_det(xi[None])
        errs_nf.append(abs((lp - (base + logdet)).item()))
        errs_ld.append(abs((ld[0] - logdet).item()))
        lps.append(lp.item())
        x = (xi * 2 - 1)  # ours reads [−1, 1]; any point inside its logit's domain will do

        def f_ours(v):
            return ours(v.view(1, 1, 4, 4))[0][0]

        v = x.flatten()
        zo = f_ours(v)
        logdet_o = torch.linalg.slogdet(torch.autograd.functional.jacobian(f_ours, v))[1]
        base_o = -0.5 * (zo * zo).sum() - 0.5 * zo.numel() * math.log(2 * math.pi)
        errs_ours.append(abs((ours.log_prob(x[None])[0] - (base_o + logdet_o)).item()))
    errs = errs_nf + errs_ld + errs_ours
    out["change_of_variables"] = {"shape": [1, 4, 4], "points": len(x01), "normflows_log_prob": lps,
                                  "normflows_log_prob_max_abs_error": max(errs_nf),
                                  "normflows_log_det_max_abs_error": max(errs_ld),
                                  "ours_log_prob_max_abs_error": max(errs_ours),
                                  "passed": all(math.isfinite(e) and e < 1e-8 for e in errs)}

    # (b) two pixels: normflows' density integrates to 1 over its support (−α/β, 1 + α/β)², β = 1 − 2α
    spec2 = DataSpec("two-pixels", (1, 1, 2), 256)
    cfg2 = RealNVPConfig(n_scales=1, final_couplings=4, net=CouplingNetConfig(hidden=8, depth=1))
    nf2, _ = normflows_model(RealNVP(cfg2, spec2))
    nf2 = nf2.double()
    probe = torch.rand(1000, 1, 1, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():  # the density at initialization (identity couplings), to show the random one differs
        lp_identity = nf2.log_prob(probe, None)
    # weights of std 0.3: a clearly non-trivial density that a 1000² grid still resolves (std 0.5 makes peaks
    # too sharp for the grid: the midpoint sums then move with the grid size, for ours as for normflows)
    _randomize(nf2, 0.3, 4)
    a = cfg2.logit_alpha
    lo, hi = -a / (1 - 2 * a), 1 + a / (1 - 2 * a)
    n = 1000
    h = (hi - lo) / n
    c = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1).view(-1, 1, 1, 2)
    with torch.no_grad():
        mass = sum(nf2.log_prob(b, None).exp().sum().item() for b in pts.split(100_000)) * h * h
    # and its samples' log q equals log_prob at the samples (the generative and the data directions agree)
    with torch.no_grad():
        torch.manual_seed(5)
        xs, log_q = nf2.sample(1000)
        agree = (nf2.log_prob(xs, None) - log_q).abs().max().item()
        effect = (nf2.log_prob(probe, None) - lp_identity).abs().mean().item()
    out["normalization_2d"] = {"shape": [1, 1, 2], "grid": n, "support": [lo, hi], "integral": mass,
                               "sample_log_q_vs_log_prob_max_abs": agree,
                               "mean_abs_log_density_change_vs_identity": effect,
                               "passed": math.isfinite(mass) and abs(mass - 1) < 1e-4 and agree < 1e-8}
    out["passed"] = out["change_of_variables"]["passed"] and out["normalization_2d"]["passed"]
    return out


# --------------------------------------------------------------------------- training (one worker process)
def trainer_settings(args: argparse.Namespace) -> dict:
    """Our TrainConfig's values both trainings use."""
    from genmodels.train import TrainConfig

    d = TrainConfig()
    return {"betas": d.betas, "weight_decay": d.weight_decay, "ema_halflife_kimg": d.ema_halflife_kimg,
            "ema_rampup": d.ema_rampup, "log_every": min(100, args.steps)}


def train_ours(args: argparse.Namespace, out: Path) -> dict:
    """``genmodels train realnvp --data mnist5k --set …`` for ``args.steps`` steps; timing and the final loss."""
    from genmodels.cli import run_train

    ts = trainer_settings(args)
    overrides = {"steps": args.steps, "batch_size": BATCH, "lr": args.lr, "warmup_steps": args.warmup_steps,
                 "grad_clip": math.inf if args.grad_clip is None else args.grad_clip,  # None: TrainConfig's default
                 "progress": False, "seed": args.seed, "num_threads": args.threads,
                 "checkpoint_every": 0, "log_every": ts["log_every"]}
    t0 = time.perf_counter()
    res = run_train("realnvp", DATA, out, False, overrides, {}, {}, args.set)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": res.steps, "images": res.images_seen,
            "images_per_sec": res.images_seen / seconds, "loop_seconds": res.seconds,
            "loop_images_per_sec": res.images_seen / res.seconds, "final_train_bpd": res.final_loss,
            "run_dir": str(out)}


def make_optimizer(params, args: argparse.Namespace):
    """AdamW and our warm-up schedule (``Trainer.fit``'s)."""
    ts = trainer_settings(args)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=ts["betas"], weight_decay=ts["weight_decay"])
    w = args.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if w == 0 else min(1.0, (s + 1) / w))
    return opt, sched


def train_normflows(args: argparse.Namespace, train: Tensor, spec, out: Path) -> dict:
    """normflows' model trained by a plain loop doing what our Trainer does per step (module docstring)."""
    from torch.optim.swa_utils import AveragedModel

    from genmodels.core import nats_to_bpd
    from genmodels.train import _DATA, _GLOBAL, _NOISE, _derive_seed, edm_ema_multi_avg_fn

    ts = trainer_settings(args)
    t0 = time.perf_counter()
    ours0 = our_model(our_config(spec, args.set), spec, args.seed)  # run_train's initial weights
    model, pairs = normflows_model(ours0)
    copy_weights(pairs)
    del ours0
    model.train()
    opt, sched = make_optimizer(model.parameters(), args)
    ema = AveragedModel(model, multi_avg_fn=edm_ema_multi_avg_fn(BATCH, ts["ema_halflife_kimg"], ts["ema_rampup"]),
                        use_buffers=True)
    ema.requires_grad_(False)
    data_gen = torch.Generator().manual_seed(_derive_seed(args.seed, _DATA))
    noise_gen = torch.Generator().manual_seed(_derive_seed(args.seed, _NOISE, 0))
    torch.manual_seed(_derive_seed(args.seed, _GLOBAL, 0))
    data = train.contiguous()
    perm, pos = None, 0
    window, window_steps, final = 0.0, 0, math.nan
    t_loop = time.perf_counter()
    for step in range(args.steps):
        if perm is None or pos + BATCH > len(data):  # Trainer._next_indices: a new permutation, drop the rest
            perm, pos = torch.randperm(len(data), generator=data_gen), 0
        idx = perm[pos:pos + BATCH]
        pos += BATCH
        x = dequantize(data[idx], noise_gen, spec)
        loss = nats_to_bpd(normflows_nll(model, x, spec), spec).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        sched.step()
        ema.update_parameters(model)
        window += loss.item()
        window_steps += 1
        if (step + 1) % ts["log_every"] == 0 or step + 1 == args.steps:
            final, window, window_steps = window / window_steps, 0.0, 0
    loop = time.perf_counter() - t_loop
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "raw.pt")
    torch.save(ema.module.state_dict(), out / "ema.pt")
    seconds = time.perf_counter() - t0
    images = args.steps * BATCH
    return {"seconds": seconds, "steps": args.steps, "images": images, "images_per_sec": images / seconds,
            "loop_seconds": loop, "loop_images_per_sec": images / loop, "final_train_bpd": final,
            "weights_dir": str(out)}


def model_step_benchmark(args: argparse.Namespace, train: Tensor, spec) -> dict:
    """Both models driven by the same plain step function, blocks of ``micro_steps`` steps alternated."""
    from genmodels.core import nats_to_bpd

    ours = our_model(our_config(spec, args.set), spec, args.seed)
    nfm, pairs = normflows_model(ours)
    copy_weights(pairs)
    arms = {"ours": (ours, lambda x: nats_to_bpd(our_nll(ours, x, spec), spec)),
            "normflows": (nfm, lambda x: nats_to_bpd(normflows_nll(nfm, x, spec), spec))}
    opts = {k: make_optimizer(m.parameters(), args) for k, (m, _) in arms.items()}

    def run(name: str, steps: int) -> float:
        m, nll = arms[name]
        opt, sched = opts[name]
        gen = torch.Generator().manual_seed(args.seed + 8)  # the same batches and noise for both
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(len(train), (BATCH,), generator=gen)
            x = dequantize(train[idx], gen, spec)
            loss = nll(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(m.parameters(), args.grad_clip)
            opt.step()
            sched.step()
        return time.perf_counter() - t0

    for name in arms:  # warm-up, untimed
        run(name, 2)
    secs = {k: 0.0 for k in arms}
    first = "ours" if args.order.startswith("ours") else "normflows"
    names = [first, "normflows" if first == "ours" else "ours"]
    for b in range(args.micro_blocks):
        for name in (names if b % 2 == 0 else names[::-1]):
            secs[name] += run(name, args.micro_steps)
    images = args.micro_blocks * args.micro_steps * BATCH
    ips = {k: images / v for k, v in secs.items()}
    return {"steps_per_model": args.micro_blocks * args.micro_steps, "blocks": args.micro_blocks,
            "images_per_sec": ips, "ratio": ips["ours"] / ips["normflows"]}


def first_step_check(args: argparse.Namespace) -> dict:
    """Check (d): one training step of each from the same initial weights (couplings at the identity, so the same
    function) on what must be the same batch and noise: the same loss."""
    from genmodels.data import load_dataset

    ds = load_dataset(DATA)
    one = argparse.Namespace(**{**vars(args), "steps": 1})
    with tempfile.TemporaryDirectory(prefix="realnvp_vs_normflows_check_") as d:
        a = train_ours(one, Path(d) / "ours")["final_train_bpd"]
        b = train_normflows(one, ds.train, ds.spec, Path(d) / "normflows")["final_train_bpd"]
    torch.set_num_threads(args.threads)
    return {"ours_bpd": a, "normflows_bpd": b, "passed": abs(a - b) < 1e-5}


def worker(args: argparse.Namespace) -> dict:
    """One process: train both models (in ``args.order``), then the alternated model-step benchmark."""
    torch.set_num_threads(args.threads)
    # import everything first, so neither timed call pays the other's imports
    import accelerate  # noqa: F401
    import normflows  # noqa: F401

    import genmodels.cli
    import genmodels.train  # noqa: F401
    from genmodels.data import load_dataset

    ds = load_dataset(DATA)
    work = Path(args.work_dir)
    out = {}
    for name in args.order.split(","):
        if name == "ours":
            out["ours"] = train_ours(args, work / "ours")
        else:
            out["normflows"] = train_normflows(args, ds.train, ds.spec, work / "normflows")
        print(f"  [pid {os.getpid()}] {name}: {out[name]['seconds']:.1f} s, {out[name]['images_per_sec']:.1f} img/s, "
              f"final train {out[name]['final_train_bpd']:.4f} bits/dim", file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    micro = model_step_benchmark(args, ds.train, ds.spec) if args.micro_steps > 0 else None
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "order": args.order, "models": out,
            "ratio": out["ours"]["images_per_sec"] / out["normflows"]["images_per_sec"],
            "loop_ratio": out["ours"]["loop_images_per_sec"] / out["normflows"]["loop_images_per_sec"],
            "model_step": micro}


def worker_cmd(args: argparse.Namespace, work: Path, order: str) -> list[str]:
    """The command line of one worker process (``order``: which model trains first)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--work-dir", str(work), "--order", order,
           "--steps", str(args.steps), "--lr", str(args.lr), "--warmup-steps", str(args.warmup_steps),
           "--grad-clip", "none" if args.grad_clip is None else str(args.grad_clip), "--threads", str(args.threads),
           "--seed", str(args.seed), "--micro-steps", str(args.micro_steps), "--micro-blocks", str(args.micro_blocks)]
    for s in args.set:
        cmd += ["--set", s]
    return cmd


def workers(args: argparse.Namespace, work: Path) -> list[tuple[str, list[str]]]:
    """``(label, command)`` of the ``args.rounds`` training processes, alternating which model trains first, for
    :func:`_machine.run_workers` (which runs them one after another)."""
    orders = ["ours,normflows" if p % 2 == 0 else "normflows,ours" for p in range(args.rounds)]
    return [(f"round {p + 1}/{args.rounds} ({order})", worker_cmd(args, work / f"p{p}", order))
            for p, order in enumerate(orders)]


# --------------------------------------------------------------------------- evaluation (main process)
def count_macs(m: nn.Module, nll, x: Tensor) -> dict:
    """Multiply-adds per example of one training step (forward; forward + backward), FlopCounterMode / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    m.train()
    with FlopCounterMode(display=False) as fc:
        loss = nll(x).mean()
    f = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        loss.backward()
    b = fc.get_total_flops()
    m.zero_grad(set_to_none=True)
    return {"params": n_params(m), "fwd_macs": f / 2 / len(x), "fwd_bwd_macs": (f + b) / 2 / len(x)}


@torch.no_grad()
def test_nll(models: dict, test: Tensor, spec, draws: int, seed: int, batch: int) -> dict[str, Tensor]:
    """Per-image discrete NLL bound (nats, ``[N]`` float64) of every model, averaged over ``draws`` dequantization
    draws; the same u for every model."""
    for _, m in models.values():
        m.eval()
    g = torch.Generator().manual_seed(seed)
    acc = {k: torch.zeros(len(test), dtype=torch.float64) for k in models}
    for _ in range(draws):
        i = 0
        for xb in test.split(batch):
            x = dequantize(xb, g, spec)
            for k, (nll, _) in models.items():
                acc[k][i:i + len(xb)] += nll(x).double()
            i += len(xb)
    return {k: v / draws for k, v in acc.items()}


def summarize(nll: Tensor, spec) -> dict:
    """Mean bits/dim of per-image NLLs ``[N]`` (nats), its standard error, and the mean in nats."""
    from genmodels.core import nats_to_bpd

    bpd = nats_to_bpd(nll, spec)
    return {"bpd": bpd.mean().item(), "bpd_se": (bpd.std() / math.sqrt(len(bpd))).item(),
            "nats": nll.mean().item()}


def paired(a: Tensor, b: Tensor, spec) -> dict:
    """Mean per-image difference a − b in bits/dim (same images and noise) and its standard error."""
    from genmodels.core import nats_to_bpd

    d = nats_to_bpd(a - b, spec)
    return {"delta_bpd": d.mean().item(), "delta_bpd_se": (d.std() / math.sqrt(len(d))).item()}


def evaluate(args: argparse.Namespace, first: dict) -> dict:
    """Load round 1's trained models and evaluate them on the test split (and the checks that need them)."""
    from genmodels.checkpoint import from_pretrained
    from genmodels.data import load_dataset

    torch.set_num_threads(args.eval_threads)
    ds = load_dataset(DATA)
    spec, test = ds.spec, ds.test
    cfg = our_config(spec, args.set)
    ours_dir = first["models"]["ours"]["run_dir"]
    ours_ema, rc = from_pretrained(ours_dir, ema=True)
    ours_raw, _ = from_pretrained(ours_dir, ema=False)
    assert rc.model == "realnvp" and ours_ema.config == cfg
    nf_dir = Path(first["models"]["normflows"]["weights_dir"])
    nf_models = {}
    for kind in ("ema", "raw"):
        m, _ = normflows_model(our_model(cfg, spec, args.seed))
        m.load_state_dict(torch.load(nf_dir / f"{kind}.pt", weights_only=True), strict=True)
        nf_models[kind] = m.eval()

    def o(m):
        return lambda x: our_nll(m, x, spec)

    def n(m):
        return lambda x: normflows_nll(m, x, spec)

    models = {"ours (EMA)": (o(ours_ema), ours_ema), "ours (raw)": (o(ours_raw), ours_raw),
              "normflows (EMA)": (n(nf_models["ema"]), nf_models["ema"]),
              "normflows (raw)": (n(nf_models["raw"]), nf_models["raw"])}
    t0 = time.perf_counter()
    nll = test_nll(models, test, spec, args.eval_draws, args.seed + 1, args.eval_batch)
    evals = {k: summarize(v, spec) for k, v in nll.items()}
    for a, b in (("ours (EMA)", "normflows (EMA)"), ("ours (raw)", "normflows (raw)"),
                 ("ours (EMA)", "normflows (raw)")):
        evals[a].setdefault("delta_vs", {})[b] = paired(nll[a], nll[b], spec)
    for k, e in evals.items():
        print(f"{k}: {e['bpd']:.4f} ± {e['bpd_se']:.4f} bits/dim", file=sys.stderr, flush=True)
    eval_seconds = time.perf_counter() - t0

    # check: our nll_terms (its own dequantization from a generator) equals our_nll at the same u
    with torch.no_grad():
        xb = test[:100]
        r = ours_raw.nll_terms(xb, torch.Generator().manual_seed(123)).nll
        mine = our_nll(ours_raw, dequantize(xb, torch.Generator().manual_seed(123), spec), spec)
        nll_terms_err = (r - mine).abs().max().item()
    # check (c): at initialization both are the logit + N(0, I): the same NLL on the same dequantized images
    ours0 = our_model(cfg, spec, args.seed)
    nf0, pairs = normflows_model(ours0)
    copy_weights(pairs)
    init = test_nll({"ours": (o(ours0), ours0), "normflows": (n(nf0), nf0)}, test, spec, 1, args.seed + 1,
                    args.eval_batch)
    init_err = (init["ours"] - init["normflows"]).abs().max().item()
    from genmodels.core import nats_to_bpd

    init_check = {"ours_bpd": nats_to_bpd(init["ours"], spec).mean().item(),
                  "normflows_bpd": nats_to_bpd(init["normflows"], spec).mean().item(),
                  "max_abs_nats_difference": init_err, "passed": init_err < 1e-2}
    x = ds.train[:BATCH]
    x = dequantize(x, torch.Generator().manual_seed(0), spec)
    macs = {"ours": count_macs(ours0, o(ours0), x), "normflows": count_macs(nf0, n(nf0), x)}
    return {"evals": evals, "eval_seconds": eval_seconds, "test_images": len(test),
            "ours_nll_terms_vs_log_prob_max_abs_nats": nll_terms_err, "init_check": init_check, "macs": macs,
            "ours_config": repr(cfg)}


# --------------------------------------------------------------------------- report
def machine() -> dict:
    """Where the benchmark ran (:func:`_machine.machine`), with normflows' version."""
    import normflows

    return _machine.machine(normflows=getattr(normflows, "__version__", "1.7.3"))


def _ratio_row(label: str, s: dict) -> str:
    return (f"| {label} | **{s['median']:.3f}** | {s['min']:.3f} | {s['max']:.3f} | "
            f"{', '.join(f'{v:.3f}' for v in s['per_process'])} |")


def markdown(res: dict) -> str:
    """The results JSON as the markdown report."""
    cfg, m, ev, procs = res["config"], res["machine"], res["evaluation"], res["processes"]
    macs, dc, ic = ev["macs"], res["density_checks"], ev["init_check"]
    rows = []
    for name in ("ours (EMA)", "ours (raw)", "normflows (EMA)", "normflows (raw)"):
        key = name.split()[0]
        t = [p["models"][key] for p in procs]
        e = ev["evals"][name]
        per_proc = ", ".join(f"{x['images_per_sec']:.1f}" for x in t)
        delta = "; ".join(f"vs {b}: {d['delta_bpd']:+.4f} ± {d['delta_bpd_se']:.4f}"
                          for b, d in e.get("delta_vs", {}).items()) or "—"
        rows.append(f"| {name} | {macs[key]['params']:,} | {macs[key]['fwd_bwd_macs'] / 1e6:.1f}M | {t[0]['steps']} "
                    f"| {t[0]['final_train_bpd']:.4f} | {statistics.median(x['seconds'] for x in t):.1f} "
                    f"| {statistics.median(x['images_per_sec'] for x in t):.1f} ({per_proc}) "
                    f"| **{e['bpd']:.4f}** ± {e['bpd_se']:.4f} | {delta} |")
    speed = [_ratio_row("whole training call", res["speed"]), _ratio_row("training loop alone", res["loop_speed"])]
    if res.get("model_step_speed"):
        ms = res["model_step_speed"]
        speed.append(_ratio_row(f"model step alone (same plain step, {ms['steps_per_model']} steps each in "
                                f"{ms['blocks']} alternated blocks per process)", ms))
    cv, nz = dc["change_of_variables"], dc["normalization_2d"]
    L = [f"## RealNVP vs normflows {m['normflows']} on {DATA} ({m['date']})", "",
         f"Command: `{res['command']}`", "",
         f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), torch {m['torch']}, normflows {m['normflows']}; commit "
         f"{m['git_commit']}. Training on {cfg['threads']} thread(s), {cfg['rounds']} process(es), the two "
         f"trainings alternated (ours first in odd rounds); evaluation on {cfg['eval_threads']} thread(s) with "
         f"round 1's models.", "",
         f"Both: our RealNVP (`--set {' '.join(cfg['set']) or '(preset)'}`; {ev['ours_config']}); normflows built "
         f"from its own `MultiscaleFlow`, `AffineCouplingBlock` (checkerboard/channel splits), `Squeeze`, `Merge`, "
         f"`DiagGaussian` (fixed N(0, I)) and `Logit` (α = {res['logit_alpha']}), with our `CouplingResNet` + tanh "
         f"log-scale bound as each coupling's `param_map` and our initial weights copied in. {cfg['steps']} steps "
         f"of batch {BATCH} on the same dequantized batches in the same order, AdamW (β = 0.9, 0.999, decay 0), "
         f"lr {cfg['lr']:g}, linear warm-up {cfg['warmup_steps']} steps, gradient clipping {cfg['grad_clip']}, EMA "
         f"(half-life 50 kimg, ramp-up 0.05), seed {cfg['seed']}. Ours: `genmodels train realnvp` (`run_train`); "
         f"normflows: a plain loop doing the same per step (normflows has no trainer).", "",
         "| model | params | MACs/img (fwd+bwd) | steps | final train bits/dim | train s | img/s (per process) "
         "| test bits/dim | Δ bits/dim ours − normflows (paired) |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---|", *rows, "",
         f"Test bits/dim: the discrete-data bound −log p(x + u) − D·log Δ (Δ = 2/255 on [−1, 1]) over the "
         f"{ev['test_images']} test images, {cfg['eval_draws']} dequantization draw(s) per image, the same u for every "
         f"model; ± is the standard error over images; Δ is per image, same x and u. Lower is better.", "",
         "| speed ratio ours/normflows (img/s; > 1 = ours faster) | median | min | max | per process |",
         "|---|---:|---:|---:|---|", *speed, "",
         "Whole call: ours `run_train` (dataset load, model build, accelerate set-up, the loop with EMA, the final "
         "checkpoint); normflows: model build and weight copy, the loop with EMA, saving the weights. Loop alone: our "
         "`TrainResult.seconds`; normflows' loop. Model step alone: the same plain step function for both (no EMA). "
         f"Same final training loss in every process (determinism): {res['same_final_loss_in_every_process']}.", "",
         f"Checks: (a) change of variables on a 1×4×4 model with random weights, float64: normflows `log_prob` vs "
         f"Σ log N(z) + log|det J| (autograd) max |Δ| {cv['normflows_log_prob_max_abs_error']:.1e} nats (its log_det "
         f"{cv['normflows_log_det_max_abs_error']:.1e}), ours {cv['ours_log_prob_max_abs_error']:.1e}; (b) a 1×1×2 "
         f"normflows model integrates to {nz['integral']:.5f} over its support ({nz['grid']}² midpoint grid), its "
         f"samples' log q vs log_prob max |Δ| {nz['sample_log_q_vs_log_prob_max_abs']:.1e}; (c) at initialization "
         f"(identity couplings) ours {ic['ours_bpd']:.4f} and normflows {ic['normflows_bpd']:.4f} bits/dim on the "
         f"same test images and u, max |Δ| {ic['max_abs_nats_difference']:.1e} nats per image; (d) first training "
         f"step's loss, ours {dc['first_step']['ours_bpd']:.6f}, normflows {dc['first_step']['normflows_bpd']:.6f} "
         f"bits/dim (the same batch and noise); our `nll_terms` vs "
         f"the log_prob used here, same u: max |Δ| {ev['ours_nll_terms_vs_log_prob_max_abs_nats']:.1e} nats. "
         f"{'All passed.' if dc['passed'] and dc['first_step']['passed'] and ic['passed'] else 'NOT ALL PASSED.'}", ""]
    return "\n".join(L)


def main() -> None:
    """Parse the flags, run the checks and the worker processes, evaluate, write the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000,
                    help="optimizer steps of batch 64 for both (default 2000 = 32 epochs of the 4000 images)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training (both; default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="separate training processes (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help=f"our RealNVP config assignments (repeatable; default {' '.join(DEFAULT_SET)})")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=100, help="linear LR warm-up, both (default 100)")
    ap.add_argument("--grad-clip", type=lambda s: None if s.lower() == "none" else float(s), default=1.0,
                    help="max global gradient norm, both, or 'none' (default 1.0, our default)")
    ap.add_argument("--eval-draws", type=int, default=4, help="dequantization draws per test image (default 4)")
    ap.add_argument("--eval-threads", type=int, default=None, help="torch threads for evaluation (default: --threads)")
    ap.add_argument("--eval-batch", type=int, default=250)
    ap.add_argument("--micro-steps", type=int, default=10,
                    help="steps per block of the alternated model-step benchmark (0 disables; default 10)")
    ap.add_argument("--micro-blocks", type=int, default=4, help="blocks per model of that benchmark (default 4)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "realnvp_vs_normflows.json",
                    help="JSON results; the markdown goes beside it as .md")
    ap.add_argument("--keep", action="store_true", help="keep the trained runs (printed folder)")
    ap.add_argument("--worker", action="store_true", help="internal: one training process, JSON on stdout")
    ap.add_argument("--work-dir", help="internal: the worker's folder")
    ap.add_argument("--order", default="ours,normflows", help="internal: training order in a worker")
    args = ap.parse_args()
    args.set = args.set if args.set is not None else list(DEFAULT_SET)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.rounds < 1 or args.steps < 1 or args.eval_draws < 1 or args.micro_blocks < 1:
        ap.error("--rounds, --steps, --eval-draws and --micro-blocks must be ≥ 1")
    args.eval_threads = args.eval_threads or args.threads
    torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    from genmodels.data import load_dataset

    spec = load_dataset(DATA).spec
    cfg = our_config(spec, args.set)
    try:  # fail early on a structure normflows' blocks cannot build
        normflows_model(our_model(cfg, spec, args.seed))
    except ValueError as e:
        ap.error(str(e))
    print("density checks …", file=sys.stderr, flush=True)
    checks = density_checks()
    print(f"  {json.dumps(checks)}", file=sys.stderr, flush=True)
    if not checks["passed"]:
        raise SystemExit(f"normflows density checks failed: {checks}")
    checks["first_step"] = first_step_check(args)
    print(f"  first step: {json.dumps(checks['first_step'])}", file=sys.stderr, flush=True)
    if not checks["first_step"]["passed"]:
        raise SystemExit(f"the two trainings do not see the same first batch: {checks['first_step']}")
    work = Path(tempfile.mkdtemp(prefix="realnvp_vs_normflows_"))
    try:
        procs = _machine.run_workers(workers(args, work))
        evaluation = evaluate(args, procs[0])
    finally:
        if args.keep:
            print(f"trained runs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if evaluation["macs"]["ours"]["params"] != evaluation["macs"]["normflows"]["params"]:
        print("WARNING: parameter counts differ", file=sys.stderr)

    def stats(v: list[float]) -> dict:
        return {"median": statistics.median(v), "min": min(v), "max": max(v), "per_process": v}

    same = {k: len({p["models"][k]["final_train_bpd"] for p in procs}) == 1 for k in ("ours", "normflows")}
    res = {"command": " ".join(["python", "benchmarks/realnvp_vs_normflows.py", *sys.argv[1:]]), "machine": machine(),
           "config": {"data": DATA, "steps": args.steps, "threads": args.threads, "rounds": args.rounds,
                      "seed": args.seed, "set": args.set, "lr": args.lr, "warmup_steps": args.warmup_steps,
                      "grad_clip": args.grad_clip, "batch": BATCH, "eval_draws": args.eval_draws,
                      "eval_threads": args.eval_threads, "micro_steps": args.micro_steps,
                      "micro_blocks": args.micro_blocks},
           "logit_alpha": cfg.logit_alpha, "density_checks": checks, "processes": procs,
           "same_final_loss_in_every_process": same,
           "speed": stats([p["ratio"] for p in procs]), "loop_speed": stats([p["loop_ratio"] for p in procs]),
           "model_step_speed": ({**stats([p["model_step"]["ratio"] for p in procs]),
                                 "steps_per_model": procs[0]["model_step"]["steps_per_model"],
                                 "blocks": procs[0]["model_step"]["blocks"]} if args.micro_steps > 0 else None),
           "evaluation": evaluation}
    res["wall_seconds"] = time.perf_counter() - t_start
    _machine.write_results(res, args.out, markdown(res))


if __name__ == "__main__":
    main()
