#!/usr/bin/env python
"""GPU training step of a CIFAR-sized UNet: our DDPM against diffusers' ``UNet2DModel``, fp32/bf16, compile optional.

Run on a machine with one NVIDIA GPU (estimated, not yet measured: 2–3 minutes eager, 5–8 with ``--compile``, on one
H200)::

    python benchmarks/gpu_unet.py --device cuda --rounds 5 --steps 20             # eager, fp32 and bf16
    python benchmarks/gpu_unet.py --device cuda --rounds 5 --steps 20 --compile   # plus torch.compile'd variants

Smoke test on a CPU (tiny model: channels 32, batch 4, 2 steps; well under 2 minutes)::

    OMP_NUM_THREADS=1 python benchmarks/gpu_unet.py --device cpu --quick --threads 1

What it measures (method of ../shared/BENCHMARKING.md: ratios within one process, the variants alternated round by
round, warm-up steps excluded, absolute figures only as notes; run it in 3 separate processes, e.g. with
``--out benchmarks/results/gpu_unet_1.json`` …, and report the median and minimum of the ratios):

- The timed step is one DDPM training step (eps-prediction MSE, L_simple) + backward + AdamW step (lr 2e-4,
  default ``foreach`` implementation), batch 128 of synthetic 3×32×32 images in [-1, 1], for
  A  ours: ``DDPM`` built by ``genmodels.jobs.model_config("ddpm", spec, [...])`` for a (3, 32, 32) spec with the
     UNet of Ho et al. 2020's CIFAR-10 model: ``unet.channels=128``, ``unet.channel_mult=[1,2,2,2]``,
     ``unet.num_res_blocks=2``, ``unet.attn_levels=[1]`` (16×16; the middle block always has attention),
     ``unet.groups=32``, ``unet.num_heads=4`` (head width 64), ``unet.dropout=0.1``; the step is ``model.loss(x)``
     (draws t and ε, noises x, runs the UNet) ``.mean()``.
  B  diffusers ``UNet2DModel(block_out_channels=(128, 256, 256, 256), layers_per_block=2)`` with attention at the
     16×16 level only (``AttnDownBlock2D``/``AttnUpBlock2D`` there, plus the middle block's), ``norm_num_groups=32``,
     ``attention_head_dim=64`` (4 heads at 256 channels, as A), ``dropout=0.1``; the step is
     ``DDPMScheduler(num_train_timesteps=1000).add_noise`` + ``F.mse_loss(unet(x_t, t).float(), ε)``, as in
     diffusers' ``train_unconditional.py``.
- Precisions: fp32, and bf16 autocast (``torch.autocast(device, dtype=torch.bfloat16)`` around the forward and
  loss; weights, gradients and optimizer state stay fp32). TF32 is off by default (``--tf32 off``: matmuls *and*
  cuDNN convolutions in true fp32, whereas PyTorch's default lets cuDNN use TF32); ``--tf32 on`` allows it for both.
  ``torch.backends.cudnn.benchmark`` is on for both models.
- ``--compile``: each model also ``torch.compile``'d (the network only; a separate instance, so the eager ones stay
  eager), in both precisions; compilation happens in the untimed warm-up and its seconds are reported.
- Reported: images/s of every (model, precision[, compiled]) variant (median of the rounds), the per-round ratios
  ours/diffusers for each precision, bf16/fp32 for each model (and compiled/eager), as median and min over rounds;
  parameters; FLOPs per image of one step (forward + backward, ``torch.utils.flop_counter.FlopCounterMode``: matmuls,
  convolutions and attention; norms, activations and the optimizer are not counted); the measured matmul peak
  (an N×N by N×N matmul, N = 8192 by default, in bf16 and in fp32 under the run's TF32 setting) and each
  variant's achieved FLOP/s as a fraction of the peak of its precision; peak memory per variant.

Results: a markdown table on stdout (and ``benchmarks/results/gpu_unet.md``), JSON in
``benchmarks/results/gpu_unet.json`` (``benchmarks/results/`` is gitignored). diffusers is a benchmark-only
dependency: ``pip install -e ".[bench]"`` or ``pip install "diffusers==0.42.*"``.
"""

from __future__ import annotations

import argparse
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

DEFAULT_OUT = HERE / "results" / "gpu_unet.json"
SHAPE = (3, 32, 32)
T = 1000
LR = 2e-4
MODELS = ("ours", "diffusers")
PRECISIONS = ("fp32", "bf16")


def import_diffusers():
    """diffusers, imported only when needed; exits with the install command where it is missing."""
    try:
        import diffusers
    except ImportError:
        sys.exit("gpu_unet.py needs diffusers (a benchmark-only dependency), which is not installed: "
                 "pip install -e \".[bench]\"  or  pip install \"diffusers==0.42.*\"")
    return diffusers


# --------------------------------------------------------------------------- models
class Trainee:
    """One model (``ours`` or ``diffusers``, eager or compiled) with its AdamW: ``loss(x)`` is the scalar training
    loss with its own (t, ε) draws; ``step(x, precision)`` one whole training step."""

    def __init__(self, name: str, args: argparse.Namespace, device: torch.device, compiled: bool):
        self.name, self.compiled, self.device = name, compiled, device
        torch.manual_seed(args.seed)
        c, d = args.channels, args.dropout
        if name == "ours":
            from genmodels.core import DataSpec
            from genmodels.families import MODELS as REGISTRY
            from genmodels.jobs import config_to_dict, model_config

            spec = DataSpec("cifar10", SHAPE, 256)
            cfg = model_config("ddpm", spec, [f"unet.channels={c}", "unet.channel_mult=[1,2,2,2]",
                                              "unet.num_res_blocks=2", "unet.attn_levels=[1]", "unet.groups=32",
                                              "unet.num_heads=4", f"unet.dropout={d}"])
            self.config = {"DDPMConfig": config_to_dict(cfg)}
            model = REGISTRY.get("ddpm").model_cls(cfg, spec).to(device)
            assert model.T == T and cfg.parameterization == "eps" and cfg.loss == "simple"
            self.model = model
            self.net = model.net
            if compiled:
                model.net = torch.compile(model.net, mode=args.compile_mode)
            self.loss: Callable = lambda x: model.loss(x).mean()
        else:
            diffusers = import_diffusers()
            blocks = dict(down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
            kw = dict(sample_size=SHAPE[1], in_channels=SHAPE[0], out_channels=SHAPE[0],
                      block_out_channels=(c, 2 * c, 2 * c, 2 * c), layers_per_block=2, norm_num_groups=32,
                      attention_head_dim=2 * c // 4, dropout=d, **blocks)
            self.config = {"UNet2DModel": kw}
            unet = diffusers.UNet2DModel(**kw).to(device)
            self.model = self.net = unet
            fwd = torch.compile(unet, mode=args.compile_mode) if compiled else unet
            scheduler = diffusers.DDPMScheduler(num_train_timesteps=T)

            def loss(x: torch.Tensor) -> torch.Tensor:
                t = torch.randint(0, T, (x.shape[0],), device=x.device)
                noise = torch.randn_like(x)
                noisy = scheduler.add_noise(x, noise, t)
                return F.mse_loss(fwd(noisy, t, return_dict=False)[0].float(), noise.float())

            self.loss = loss
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR)

    def step(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())


# FlopCounterMode has no formula for the CPU kernel of F.scaled_dot_product_attention (the CUDA ones it has):
# without these entries attention counts as zero in the CPU smoke test.
def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_backward_flop_count(grad_out, q, k, v)


SDPA_CPU_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def count_flops(tr: Trainee, x: torch.Tensor) -> dict:
    """FLOPs per image of one training step (fp32, eager instance): forward, backward; the attention blocks'
    FLOPs in the forward (their projections and the attention itself, found by module), and the aten ops counted
    (whether attention ran as a fused ``_scaled_dot_product_*`` kernel, or as the math fallback's ``bmm``)."""
    root = type(tr.net).__name__
    attn = [f"{root}.{n}" for n, mod in tr.net.named_modules() if type(mod).__name__ == "Attention"]
    tr.opt.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as fwd:
        loss = tr.loss(x)
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as bwd:
        loss.backward()
    tr.opt.zero_grad(set_to_none=True)
    f, b = fwd.get_total_flops(), bwd.get_total_flops()
    counts = [fwd.get_flop_counts(), bwd.get_flop_counts()]
    a = sum(sum(counts[0].get(k, {}).values()) for k in attn)  # by module: the forward (backward has only Global)
    ops = sorted({str(op) for c in counts for op in c.get("Global", {})})
    n = x.shape[0]
    return {"fwd_flops": f / n, "bwd_flops": b / n, "step_flops": (f + b) / n, "fwd_attention_block_flops": a / n,
            "attention_modules": len(attn), "ops_counted": ops,
            "fused_sdpa": any("scaled_dot_product" in o or "attention" in o for o in ops)}


# --------------------------------------------------------------------------- timing helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, n: int, reps: int, device: torch.device) -> float:
    """Measured FLOP/s of an n×n by n×n matmul in ``dtype`` (under the current TF32 setting for fp32)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(3):  # best of three timed blocks
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del a, b
    return 2 * n ** 3 * reps / best


def label(model: str, precision: str, compiled: bool) -> str:
    return f"{model}/{precision}" + ("+compile" if compiled else "")


# --------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda, but torch.cuda.is_available() is False (use --device cpu --quick for a smoke test)")
    diffusers = import_diffusers()
    torch.set_num_threads(args.threads)
    tf32 = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    if "bf16" in args.precisions and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        sys.exit("this GPU has no bf16; pass --precisions fp32")

    t_start = time.perf_counter()
    print(f"matmul peak ({args.peak_size}²)…", file=sys.stderr, flush=True)
    peak = {p: matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, args.peak_size, args.peak_reps, device)
            for p in args.precisions}

    compiled_opts = (False, True) if args.compile else (False,)
    trainees = {(m, c): Trainee(m, args, device, c) for c in compiled_opts for m in MODELS}
    gx = torch.Generator().manual_seed(args.seed)
    x = (torch.rand((args.batch, *SHAPE), generator=gx) * 2 - 1).to(device)  # synthetic: speed ignores values
    info = {m: {"params": trainees[(m, False)].params(), **count_flops(trainees[(m, False)], x),
                "config": trainees[(m, False)].config} for m in MODELS}
    variants = [(m, p, c) for c in compiled_opts for p in args.precisions for m in MODELS]
    names = [label(*v) for v in variants]

    warm = {}
    for m, p, c in variants:
        print(f"warm-up {label(m, p, c)} ({args.warmup} steps)…", file=sys.stderr, flush=True)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            loss = trainees[(m, c)].step(x, p)
        sync(device)
        warm[label(m, p, c)] = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise RuntimeError(f"{label(m, p, c)}: non-finite loss in warm-up")

    rounds, mem, round_s = [], {n: 0 for n in names}, 0.0
    for r in range(args.rounds):
        elapsed = time.perf_counter() - t_start
        if rounds and elapsed + round_s > args.max_seconds:  # keep within the machine's time: stop, and say so
            print(f"  stopping after {len(rounds)} rounds: {elapsed:.0f} s elapsed, a round takes {round_s:.0f} s, "
                  f"--max-seconds {args.max_seconds:.0f}", file=sys.stderr, flush=True)
            break
        t_round = time.perf_counter()
        order = variants if r % 2 == 0 else variants[::-1]  # A B C D, D C B A, …: drift hits every variant alike
        ips = {}
        for m, p, c in order:
            n, tr = label(m, p, c), trainees[(m, c)]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                loss = tr.step(x, p)
            sync(device)
            ips[n] = args.steps * args.batch / (time.perf_counter() - t0)
            if device.type == "cuda":
                mem[n] = max(mem[n], torch.cuda.max_memory_allocated(device))
            if not torch.isfinite(loss):
                raise RuntimeError(f"{n}: non-finite loss")
        rounds.append(ips)
        round_s = time.perf_counter() - t_round
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {ips[n]:.0f} img/s" for n in names),
              file=sys.stderr, flush=True)

    def summarize(vals: list[float]) -> dict:
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "per_round": vals}

    ratios = {}
    for c in compiled_opts:
        for p in args.precisions:
            a, b = label("ours", p, c), label("diffusers", p, c)
            ratios[f"{a} ÷ {b}"] = summarize([rd[a] / rd[b] for rd in rounds])
    if "bf16" in args.precisions and "fp32" in args.precisions:
        for c in compiled_opts:
            for m in MODELS:
                a, b = label(m, "bf16", c), label(m, "fp32", c)
                ratios[f"{a} ÷ {b}"] = summarize([rd[a] / rd[b] for rd in rounds])
    if args.compile:
        for p in args.precisions:
            for m in MODELS:
                a, b = label(m, p, True), label(m, p, False)
                ratios[f"{a} ÷ {b}"] = summarize([rd[a] / rd[b] for rd in rounds])

    results = {}
    for m, p, c in variants:
        n = label(m, p, c)
        med = statistics.median(rd[n] for rd in rounds)
        achieved = med * info[m]["step_flops"]
        results[n] = {"model": m, "precision": p, "compiled": c, "median_ips": med,
                      "min_ips": min(rd[n] for rd in rounds), "max_ips": max(rd[n] for rd in rounds),
                      "achieved_flops": achieved, "fraction_of_peak": achieved / peak[p],
                      "warmup_seconds": warm[n], "peak_memory_bytes": mem[n] if device.type == "cuda" else None}

    versions = {"diffusers": diffusers.__version__}
    if device.type == "cuda":
        versions.update(gpu=torch.cuda.get_device_name(device), cuda=str(torch.version.cuda),
                        cudnn=str(torch.backends.cudnn.version()))
    return {"command": " ".join(["python", "benchmarks/gpu_unet.py", *sys.argv[1:]]),
            "machine": _machine.machine(**versions),
            "config": {"device": str(device), "batch": args.batch, "shape": SHAPE, "channels": args.channels,
                       "dropout": args.dropout, "rounds": args.rounds, "steps_per_round": args.steps,
                       "rounds_done": len(rounds), "max_seconds": args.max_seconds, "warmup": args.warmup,
                       "precisions": args.precisions, "compile": args.compile,
                       "compile_mode": args.compile_mode if args.compile else None, "tf32": tf32,
                       "cudnn_benchmark": True, "threads": torch.get_num_threads(), "seed": args.seed,
                       "lr": LR, "optimizer": "torch.optim.AdamW (defaults besides lr)",
                       "peak_matmul_size": args.peak_size, "quick": args.quick,
                       "ratio": "per round, images/s of the first ÷ the second; median and min over rounds"},
            "peak_flops": peak, "models": info, "variants": results, "rounds": rounds, "ratios": ratios,
            "wall_seconds": time.perf_counter() - t_start}


# --------------------------------------------------------------------------- report
def markdown(res: dict) -> str:
    m, cfg, info, peak = res["machine"], res["config"], res["models"], res["peak_flops"]
    where = (f"{m['gpu']} (CUDA {m['cuda']}, cuDNN {m['cudnn']}), " if "gpu" in m else "") + \
        f"{m['nproc']} CPUs ({m['cpu_model']}), {cfg['threads']} threads"
    L = [f"## GPU UNet training step: ours vs diffusers UNet2DModel ({m['date']})", "",
         f"Command: `{res['command']}`", "",
         f"Machine: {where}; torch {m['torch']}, diffusers {m['diffusers']}; commit {m['git_commit']}. "
         f"Device {cfg['device']}, batch {cfg['batch']} × 3×32×32, channels {cfg['channels']}×(1,2,2,2), "
         f"2 res blocks, attention at 16×16 (+ middle), dropout {cfg['dropout']}; {cfg['rounds_done']} rounds × "
         f"{cfg['steps_per_round']} timed steps after {cfg['warmup']} warm-up steps, variants alternated; "
         f"TF32 {'on' if cfg['tf32'] else 'off'}" + (f"; torch.compile mode {cfg['compile_mode']}"
                                                   if cfg["compile"] else "") + ".", "",
         "| model | params | GFLOP/image fwd | GFLOP/image fwd+bwd | attention blocks' share of fwd "
         "| fused SDPA kernel |",
         "|---|---:|---:|---:|---:|---|"]
    for name, i in info.items():
        L.append(f"| {name} | {i['params'] / 1e6:.2f}M | {i['fwd_flops'] / 1e9:.3f} | {i['step_flops'] / 1e9:.3f} | "
                 f"{i['fwd_attention_block_flops'] / i['fwd_flops']:.1%} | "
                 f"{'yes' if i['fused_sdpa'] else 'no (bmm)'} |")
    L += ["", "Measured matmul peak (" + ", ".join(
        f"{p}: {v / 1e12:.1f} TFLOP/s" for p, v in peak.items()) + f"; {cfg['peak_matmul_size']}² matmul, best of 3).",
        "", "| variant | img/s median (min–max; note) | achieved TFLOP/s | of its precision's peak | warm-up s | "
        "peak mem GiB |", "|---|---:|---:|---:|---:|---:|"]
    for n, v in res["variants"].items():
        memv = f"{v['peak_memory_bytes'] / 2 ** 30:.2f}" if v["peak_memory_bytes"] else "–"
        L.append(f"| {n} | {v['median_ips']:.1f} ({v['min_ips']:.1f}–{v['max_ips']:.1f}) | "
                 f"{v['achieved_flops'] / 1e12:.2f} | {v['fraction_of_peak']:.1%} | {v['warmup_seconds']:.1f} | "
                 f"{memv} |")
    L += ["", "| ratio (images/s, per round) | median | min | max |", "|---|---:|---:|---:|"]
    for k, s in res["ratios"].items():
        L.append(f"| {k} | **{s['median']:.3f}** | {s['min']:.3f} | {s['max']:.3f} |")
    L += ["", "FLOPs from `torch.utils.flop_counter.FlopCounterMode` over one fp32 training step (matmuls, "
          "convolutions, attention; not norms, activations or the optimizer), per image; attention blocks' share: "
          "the forward FLOPs inside the attention modules (qkv and output projections included); fused SDPA kernel: "
          "whether `F.scaled_dot_product_attention` ran as a fused kernel in that count (no: its math fallback, bmm); "
          "achieved = median img/s × FLOPs per image. Ratios > 1: the first trains more images per second."]
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant per round (default 20)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first (default 5)")
    ap.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    ap.add_argument("--channels", type=int, default=128, help="first-level width (default 128: Ho et al.'s CIFAR-10)")
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout in the residual blocks (default 0.1)")
    ap.add_argument("--precisions", type=lambda s: s.split(","), default=list(PRECISIONS),
                    help="comma-separated subset of fp32,bf16 (default both)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd instances of both models")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode (default 'default')")
    ap.add_argument("--tf32", choices=("off", "on"), default="off",
                    help="TF32 for fp32 matmuls and cuDNN convolutions (default off: true fp32)")
    ap.add_argument("--peak-size", type=int, default=8192, help="N of the N×N matmul peak (default 8192)")
    ap.add_argument("--peak-reps", type=int, default=20, help="matmuls per timed block of the peak (default 20)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--max-seconds", type=float, default=420,
                    help="start no round that would end past this many seconds of the run (default 420)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: channels 32, batch 4, 2 rounds × 2 steps, 1 warm-up step, 256² peak")
    args = ap.parse_args()
    if not args.precisions or not set(args.precisions) <= set(PRECISIONS):
        ap.error("--precisions must be a subset of fp32,bf16")
    if args.quick:
        args.channels, args.batch, args.rounds, args.steps, args.warmup = 32, 4, 2, 2, 1
        args.peak_size, args.peak_reps = 256, 5
    if args.channels % 32:
        ap.error("--channels must be a multiple of 32 (group norm with 32 groups)")
    if args.threads is None:
        args.threads = torch.get_num_threads()
    res = run(args)
    _machine.write_results(res, args.out, markdown(res))


if __name__ == "__main__":
    main()
