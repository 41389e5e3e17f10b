"""Training throughput of VDM against DDPM on the same UNet (each family's preset for the data), alternated.

A step is the model's loss on a batch of real training images, backward and an AdamW step. The two are timed in
turns (DDPM, VDM, DDPM, …) so that drifts of a shared machine hit both; the ratio is the median over rounds.

    python benchmarks/vdm_vs_ddpm_throughput.py --data fashion-mnist --steps 20 --rounds 3 --threads 2

Prints a Markdown table: images/s of each and VDM/DDPM.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genmodels.data import load_dataset
from genmodels.families import MODELS


def time_steps(model, x: torch.Tensor, steps: int, batch: int, generator: torch.Generator) -> float:
    """Images per second over ``steps`` optimizer steps (after one warm-up step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        xb = x[torch.randint(0, len(x), (batch,), generator=generator)]
        opt.zero_grad(set_to_none=True)
        model.loss(xb, generator=generator).mean().backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    """Parse the arguments, time both models alternately and print the ratio VDM/DDPM."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    models = {}
    for name in ("ddpm", "vdm"):
        torch.manual_seed(0)
        entry = MODELS.get(name)
        models[name] = entry.build(entry.preset(ds.spec), ds.spec)
    rates: dict[str, list[float]] = {name: [] for name in models}
    g = torch.Generator().manual_seed(0)
    for _ in range(args.rounds):
        for name, model in models.items():
            rates[name].append(time_steps(model, ds.train, args.steps, args.batch_size, g))
    ratios = [v / d for v, d in zip(rates["vdm"], rates["ddpm"], strict=True)]
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    print(f"{args.data}, batch {args.batch_size}, {args.steps} steps × {args.rounds} alternated rounds, "
          f"{args.threads} threads\n")
    print("| model | parameters | images/s (median; range) |")
    print("|---|---|---|")
    for name in models:
        r = rates[name]
        print(f"| {name} | {params[name]:,} | {statistics.median(r):.1f} ({min(r):.1f}–{max(r):.1f}) |")
    print(f"\nVDM/DDPM throughput: {statistics.median(ratios):.2f} (range {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
