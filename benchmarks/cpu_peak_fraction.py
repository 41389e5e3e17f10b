#!/usr/bin/env python
"""The Fashion-MNIST DDPM training step's FLOP/s as a fraction of this CPU's measured matmul peak, fp32 and bf16
(issue 18's bar: fp32 ≥ 80% of the fp32 peak). One process, one thread by default; the step is the CLI's default
DDPM (batch 64, ``model.loss(x).mean()`` + backward + AdamW), its FLOPs counted once by
``torch.utils.flop_counter`` (matmuls, convolutions, attention: :func:`gpu_unet.count_flops`), the peak that of an
N×N matmul (N = 2048, best of three blocks: :func:`gpu_unet.matmul_peak`). Steps and peaks alternate over
``--rounds``; medians reported.

    python benchmarks/cpu_peak_fraction.py --rounds 3 --steps 10
    python benchmarks/cpu_peak_fraction.py --rounds 3 --steps 10 --precisions fp32   # a CPU without native bf16
"""

# ruff: noqa: I001  (genmodels.cli loads before torch, as in `genmodels train`)
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import genmodels.cli  # noqa: E402,F401  (the command line's process set-up, before torch loads)
import torch  # noqa: E402
from gpu_unet import count_flops, matmul_peak  # noqa: E402

from genmodels.data import load_dataset  # noqa: E402
from genmodels.families import MODELS  # noqa: E402
from genmodels.jobs import model_config  # noqa: E402


class Step:
    """The DDPM step in the shape :func:`gpu_unet.count_flops` reads (``net``, ``opt``, ``loss``)."""

    def __init__(self, spec):
        torch.manual_seed(0)
        self.model = MODELS.get("ddpm").build(model_config("ddpm", spec), spec).train()
        self.net = self.model.net
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=2e-4)
        self.loss = lambda x: self.model.loss(x).mean()

    def run(self, x: torch.Tensor, precision: str, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        t0 = time.perf_counter()
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = self.loss(x)
            loss.backward()
            self.opt.step()
        return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peak-size", type=int, default=2048)
    ap.add_argument("--precisions", default="fp32,bf16",
                    help="comma-separated; fp32 alone on a CPU without native bf16 (emulated bf16 is very slow)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("fashion-mnist")
    x = ds.train[:64].float()
    step = Step(ds.spec)
    flops = count_flops(step, x)["step_flops"] * len(x)  # per step
    precisions = [p for p in args.precisions.split(",") if p]
    if not precisions or set(precisions) - {"fp32", "bf16"}:
        sys.exit(f"--precisions {args.precisions!r}: give fp32, bf16 or both, comma-separated")
    for p in precisions:
        step.run(x, p, 2)  # warm-up
    sec: dict[str, list[float]] = {p: [] for p in precisions}
    peak: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.rounds):
        for p in precisions:
            peak[p].append(matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, args.peak_size, 5,
                                       torch.device("cpu")))
            sec[p].append(step.run(x, p, args.steps))
    rows = {}
    for p in precisions:
        s, pk = statistics.median(sec[p]), statistics.median(peak[p])
        rows[p] = {"img_per_s": len(x) / s, "gflops": flops / s / 1e9, "peak_gflops": pk / 1e9,
                   "fraction_of_peak": flops / s / pk}
    print(json.dumps({"threads": args.threads, "step_gflop": flops / 1e9, "rows": rows}, indent=1))
    print("| precision | img/s | achieved GFLOP/s | matmul peak GFLOP/s | fraction |\n|---|---|---|---|---|")
    for p, r in rows.items():
        print(f"| {p} | {r['img_per_s']:.1f} | {r['gflops']:.1f} | {r['peak_gflops']:.1f} | "
              f"{100 * r['fraction_of_peak']:.0f}% |")


if __name__ == "__main__":
    main()
