#!/usr/bin/env python
"""Training throughput and per-step quality: our DDPM against diffusers' ``UNet2DModel``.

Method (../shared/BENCHMARKING.md): a speed claim is a ratio against a peer measured in the same process,
alternating the models round by round, over several separate processes; we report the median and the
minimum of the per-process median ratios, with absolute images/s only as a note, and parameters and
multiply-adds per example beside every throughput.

Models (batch 64, 1×28×28, ``torch.set_num_threads(2)``, AdamW lr 2e-4):

A  ours: ``DDPM(DDPMConfig())`` on a (1, 28, 28) spec — UNet channels 32, mult (1, 2, 2), 2 res blocks,
   attention at the 7×7 level (and the middle block), L_simple eps loss, linear T=1000 schedule. The timed
   step is our whole training step: ``model.loss(x, g).mean()`` (draws t and ε, noises x, runs the
   net) + backward + AdamW step.
B  the peer measured in BENCHMARKING.md: diffusers ``UNet2DModel`` with channels (32, 64, 64), 2 layers per
   block, attention at the two lower levels (14×14 and 7×7); ``DDPMScheduler(num_train_timesteps=1000)``
   ``add_noise`` + eps MSE + backward + AdamW step, as in diffusers' ``train_unconditional.py``.
C  the same diffusers UNet with attention only at the lowest level (7×7): the architecture matched to A.

Ratios are ours/peer in images/s (> 1: ours trains faster per step).

Quality per step (``--quality-steps K``): A and B trained from the same seed on Fashion-MNIST train for K
steps each, in interleaved chunks, with the same batches and the same (t, ε) draws at every step; the
held-out eps-MSE on 1000 test images at fixed, seeded (t, ε) pairs (t uniform over 0..999, the same x_t
for both) is evaluated at steps 0, K/3, 2K/3 and K, with each model's cumulative training seconds.

Usage::

    python benchmarks/train_throughput.py                       # full run: 3 processes × 5 rounds × 20 steps
    python benchmarks/train_throughput.py --quick               # smoke test
    python benchmarks/train_throughput.py --worker ...          # one process (internal; prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import flop_counter as fc
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (benchmarks/_machine.py)

DEFAULT_OUT = HERE / "results" / "train_throughput.json"
BATCH = 64
SHAPE = (1, 28, 28)
T = 1000
LR = 2e-4

DESCRIPTIONS = {
    "A": "ours: DDPM(DDPMConfig()), UNet 32×(1,2,2), 2 res blocks, attention at 7×7",
    "B": "diffusers UNet2DModel (32,64,64), 2 layers/block, attention at 14×14 and 7×7 (BENCHMARKING.md peer)",
    "C": "diffusers UNet2DModel (32,64,64), 2 layers/block, attention at 7×7 only (architecture matched to A)",
}
PEER_BLOCKS = {
    "B": (("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
    "C": (("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
}


# --------------------------------------------------------------------------- models
class Trainee:
    """One model with its optimizer: ``loss(x, g)`` (scalar, with its own t/ε draws), ``step(x, g)``,
    ``eps_pred(x_t, i)`` (the network's ε̂ at integer steps ``i``)."""

    def __init__(self, name: str, seed: int):
        self.name = name
        torch.manual_seed(seed)
        if name == "A":
            from genmodels.core import DataSpec
            from genmodels.diffusion.ddpm import DDPM, DDPMConfig

            self.model = DDPM(DDPMConfig(), DataSpec("fashion-mnist", SHAPE, 256))
            assert self.model.T == T and self.model.config.parameterization == "eps"
            self.loss: Callable = lambda x, g: self.model.loss(x, g).mean()
            self.eps_pred: Callable = lambda x_t, i: self.model.net(x_t, self.model.c_noise(i))
        else:
            from diffusers import DDPMScheduler, UNet2DModel

            down, up = PEER_BLOCKS[name]
            self.model = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                                     layers_per_block=2, down_block_types=down, up_block_types=up)
            self.scheduler = DDPMScheduler(num_train_timesteps=T)

            def loss(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
                # the same draw order as DDPM.loss (t, then ε), so equal generators give equal draws
                t = torch.randint(0, T, (x.shape[0],), generator=g, device=x.device)
                noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
                noisy = self.scheduler.add_noise(x, noise, t)
                return F.mse_loss(self.model(noisy, t).sample, noise)

            self.loss = loss
            self.eps_pred = lambda x_t, i: self.model(x_t, i).sample
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR)

    def step(self, x: torch.Tensor, g: torch.Generator | None) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x, g)
        loss.backward()
        self.opt.step()
        return loss.item()

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# FlopCounterMode (torch 2.13) has no formula for the CPU kernel of F.scaled_dot_product_attention, which
# both our UNet and diffusers' AttnProcessor2_0 use: without these two entries attention counts as zero.
def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_backward_flop_count(grad_out, q, k, v)


SDPA_CPU_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def count_macs(tr: Trainee, x: torch.Tensor) -> dict:
    """Multiply-adds per example of one training step's forward and backward (FLOPs / 2 / batch)."""
    g = torch.Generator().manual_seed(0)
    tr.opt.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as fwd:
        loss = tr.loss(x, g)
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as bwd:
        loss.backward()
    tr.opt.zero_grad(set_to_none=True)
    f, b = fwd.get_total_flops(), bwd.get_total_flops()
    attn_f = sum(v for k, v in fwd.get_flop_counts()["Global"].items() if "attention" in str(k))
    n = x.shape[0]
    return {"fwd_macs": f / 2 / n, "bwd_macs": b / 2 / n, "fwd_bwd_macs": (f + b) / 2 / n,
            "fwd_attention_core_macs": attn_f / 2 / n}


# --------------------------------------------------------------------------- one timing process
def worker(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    names = args.models
    trainees = {n: Trainee(n, args.seed) for n in names}
    gx = torch.Generator().manual_seed(args.seed)
    x = torch.rand((BATCH, *SHAPE), generator=gx) * 2 - 1  # synthetic batch in [-1, 1]: speed ignores values
    info = {n: {"params": tr.params(), **count_macs(tr, x)} for n, tr in trainees.items()}
    gens = {n: torch.Generator().manual_seed(args.seed + 1) for n in names}
    for n in names:  # warm-up
        for _ in range(args.warmup):
            trainees[n].step(x, gens[n])
    rounds = []
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]  # A B C, C B A, …: drift hits every model alike
        ips = {}
        for n in order:
            t0 = time.perf_counter()
            for _ in range(args.steps_per_round):
                trainees[n].step(x, gens[n])
            ips[n] = args.steps_per_round * BATCH / (time.perf_counter() - t0)
        rounds.append(ips)
        print(f"  [pid {os.getpid()}] round {r + 1}/{args.rounds}: "
              + ", ".join(f"{n} {ips[n]:.1f} img/s" for n in names), file=sys.stderr, flush=True)
    ratios = {f"A/{p}": [rd["A"] / rd[p] for rd in rounds] for p in names if p != "A"} if "A" in names else {}
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "models": info, "rounds": rounds,
            "ratios": ratios, "median_ratio": {k: statistics.median(v) for k, v in ratios.items()},
            "median_ips": {n: statistics.median(rd[n] for rd in rounds) for n in names}}


# --------------------------------------------------------------------------- quality per step
def linear_alphas_cumprod() -> torch.Tensor:
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0)


@torch.no_grad()
def heldout_eps_mse(tr: Trainee, x_t: torch.Tensor, i: torch.Tensor, eps: torch.Tensor, bs: int = 250) -> float:
    tr.model.eval()
    tot = 0.0
    for s in range(0, len(x_t), bs):
        tot += ((tr.eps_pred(x_t[s:s + bs], i[s:s + bs]) - eps[s:s + bs]) ** 2).mean(dim=(1, 2, 3)).sum().item()
    tr.model.train()
    return tot / len(x_t)


def quality(args: argparse.Namespace) -> dict:
    from genmodels.data import load_dataset

    torch.set_num_threads(args.threads)
    K = args.quality_steps
    ds = load_dataset("fashion-mnist")
    names = ["A", "B"]
    trainees = {n: Trainee(n, args.seed) for n in names}
    # the fixed held-out set: the same x_t for both networks
    g = torch.Generator().manual_seed(args.seed + 2)
    x0 = ds.test[:args.quality_eval]
    i_eval = torch.randint(0, T, (len(x0),), generator=g)
    eps_eval = torch.randn(x0.shape, generator=g)
    ac = linear_alphas_cumprod()
    ours_ac = trainees["A"].model.schedule.alphas_cumprod.double().cpu()
    sched_ac = trainees["B"].scheduler.alphas_cumprod.double()
    assert torch.allclose(ours_ac, ac, rtol=1e-9, atol=1e-12) and torch.allclose(sched_ac, ac, rtol=1e-5)
    a = ac[i_eval].sqrt().view(-1, 1, 1, 1)
    x_t = (a * x0.double() + (1 - a ** 2).sqrt() * eps_eval.double()).float()
    # the same batches, and the same (t, ε) draws per step, for both
    gp = torch.Generator().manual_seed(args.seed + 3)
    n_train = len(ds.train)
    perm = torch.cat([torch.randperm(n_train, generator=gp) for _ in range(-(-K * BATCH // n_train))])
    gens = {n: torch.Generator().manual_seed(args.seed + 1) for n in names}
    checkpoints = sorted({0, *(round(K * j / 3) for j in (1, 2, 3))})
    done = {n: 0 for n in names}
    secs = {n: 0.0 for n in names}
    train_loss = {n: [] for n in names}
    evals: list[dict] = []
    last = [0]  # step of the previous evaluation

    def evaluate(step: int) -> None:
        row = {"step": step}
        for n in names:
            row[n] = {"heldout_eps_mse": heldout_eps_mse(trainees[n], x_t, i_eval, eps_eval),
                      "train_seconds": secs[n], "images_seen": step * BATCH,
                      "train_loss_since_last_eval": statistics.fmean(train_loss[n][last[0]:step])
                      if step else None}
        evals.append(row)
        last[0] = step
        print(f"  quality step {step}/{K}: " + ", ".join(
            f"{n} eps-MSE {row[n]['heldout_eps_mse']:.4f} ({secs[n]:.0f} s)" for n in names),
              file=sys.stderr, flush=True)

    evaluate(0)
    for target in checkpoints[1:]:
        while done["A"] < target:
            chunk = min(args.quality_chunk, target - done["A"])
            order = names if (done["A"] // args.quality_chunk) % 2 == 0 else names[::-1]
            for n in order:
                t0 = time.perf_counter()
                for s in range(done[n], done[n] + chunk):
                    train_loss[n].append(trainees[n].step(ds.train[perm[s * BATCH:(s + 1) * BATCH]], gens[n]))
                secs[n] += time.perf_counter() - t0
                done[n] += chunk
        evaluate(target)
    return {"steps": K, "batch": BATCH, "lr": LR, "optimizer": "torch.optim.AdamW (defaults besides lr)",
            "eval_images": len(x0), "chunk": args.quality_chunk, "evals": evals}


# --------------------------------------------------------------------------- the main run
def machine() -> dict:
    """Where the benchmark ran (:func:`_machine.machine`), with diffusers' version."""
    import diffusers

    return _machine.machine(diffusers=diffusers.__version__)


def workers(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """``(label, command)`` of the ``args.processes`` timing processes, for :func:`_machine.run_workers`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--models", ",".join(args.models),
           "--rounds", str(args.rounds), "--steps-per-round", str(args.steps_per_round),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--seed", str(args.seed)]
    return [(f"process {p + 1}/{args.processes}: {' '.join(cmd[1:])}", cmd) for p in range(args.processes)]


def _fmt_m(v: float) -> str:
    return f"{v / 1e6:.1f}M"


def markdown(res: dict) -> str:
    m, cfg, procs = res["machine"], res["config"], res["processes"]
    names = cfg["models"]
    info = procs[0]["models"]
    L = [f"## Training throughput vs diffusers UNet2DModel ({m['date']})", "",
         f"Command: `{res['command']}`", "",
         f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), torch {m['torch']}, diffusers {m['diffusers']}, "
         f"{cfg['threads']} threads; commit {m['git_commit']}. Batch {BATCH}, 1×28×28; "
         f"{cfg['processes']} processes × {cfg['rounds']} rounds × {cfg['steps_per_round']} timed steps "
         f"(after {cfg['warmup']} warm-up steps), models alternated within each process.", "",
         "| model | params | MACs/example fwd | MACs/example fwd+bwd | img/s (note) |",
         "|---|---:|---:|---:|---:|"]
    for n in names:
        ips = [p["median_ips"][n] for p in procs]
        L.append(f"| {n}: {DESCRIPTIONS[n]} | {info[n]['params'] / 1e6:.3f}M | {_fmt_m(info[n]['fwd_macs'])} | "
                 f"{_fmt_m(info[n]['fwd_bwd_macs'])} | {statistics.median(ips):.1f} "
                 f"({', '.join(f'{v:.1f}' for v in ips)}) |")
    L += ["", "MACs = FLOPs/2 from `torch.utils.flop_counter.FlopCounterMode` over one training step "
          "(forward; forward + backward), per example; attention's CPU SDPA kernel counted with torch's own SDPA "
          "formulas (FlopCounterMode has none for it). Group norm, activations and the optimizer are not counted. "
          "img/s: median over processes of each process's median round (per-process values in brackets); "
          "an absolute figure is only a note on this shared machine.", ""]
    if res["summary"]:
        L += ["| speed ratio (ours/peer, img/s; > 1 = ours faster) | median | min | per-process medians |",
              "|---|---:|---:|---|"]
        for k, s in res["summary"].items():
            L.append(f"| {k} | **{s['median']:.3f}** | {s['min']:.3f} | "
                     f"{', '.join(f'{v:.3f}' for v in s['per_process'])} |")
        L.append("")
    q = res.get("quality")
    if q:
        L += [f"Quality per step: A and B trained {q['steps']} steps each on Fashion-MNIST train (same seed, "
              f"same batches and same (t, ε) draws, AdamW lr {q['lr']}, batch {q['batch']}, interleaved in chunks "
              f"of {q['chunk']}); held-out eps-MSE on {q['eval_images']} test images at fixed seeded (t, ε), "
              "t uniform over 0..999 (lower is better); training seconds are cumulative for each model.", "",
              "| step | A eps-MSE | B eps-MSE | A/B MSE | A train s | B train s |", "|---:|---:|---:|---:|---:|---:|"]
        for e in q["evals"]:
            a, b = e["A"], e["B"]
            L.append(f"| {e['step']} | {a['heldout_eps_mse']:.4f} | {b['heldout_eps_mse']:.4f} | "
                     f"{a['heldout_eps_mse'] / b['heldout_eps_mse']:.3f} | {a['train_seconds']:.0f} | "
                     f"{b['train_seconds']:.0f} |")
        L.append("")
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=3, help="separate timing processes (default 3)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per process (default 5)")
    ap.add_argument("--steps-per-round", type=int, default=20, help="timed steps per model per round (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    ap.add_argument("--quality-steps", type=int, default=300, help="training steps for A and B each (0: skip)")
    ap.add_argument("--quality-chunk", type=int, default=25, help="steps per interleaved chunk (default 25)")
    ap.add_argument("--quality-eval", type=int, default=1000, help="held-out test images (default 1000)")
    ap.add_argument("--models", type=lambda s: s.split(","), default=["A", "B", "C"],
                    help="comma-separated subset of A,B,C for timing (default A,B,C)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 process, 1 round, 3 steps, no quality")
    ap.add_argument("--worker", action="store_true", help="internal: one timing process, JSON on stdout")
    args = ap.parse_args()
    if not set(args.models) <= set(DESCRIPTIONS) or "A" not in args.models or len(args.models) < 2:
        ap.error("--models must be A plus at least one of B, C")
    if args.quick:
        args.processes, args.rounds, args.steps_per_round, args.warmup, args.quality_steps = 1, 1, 3, 1, 0
    if args.worker:
        print(json.dumps(worker(args)))
        return

    t_start = time.perf_counter()
    procs = _machine.run_workers(workers(args))  # one after another, never side by side
    summary = {}
    for k in procs[0]["median_ratio"]:
        per = [p["median_ratio"][k] for p in procs]
        summary[k] = {"median": statistics.median(per), "min": min(per), "max": max(per), "per_process": per}
    res = {"command": " ".join(["python", "benchmarks/train_throughput.py", *sys.argv[1:]]),
           "machine": machine(),
           "config": {"processes": args.processes, "rounds": args.rounds, "steps_per_round": args.steps_per_round,
                      "warmup": args.warmup, "threads": args.threads, "batch": BATCH, "seed": args.seed,
                      "models": args.models, "descriptions": {n: DESCRIPTIONS[n] for n in args.models},
                      "ratio": "ours/peer images per second, per round; per-process median; median and min over "
                               "processes"},
           "processes": procs, "summary": summary, "quality": None}
    if args.quality_steps > 0:
        res["quality"] = quality(args)
    res["wall_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(markdown(res))
    print(f"\n(results: {args.out}; {res['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
