"""How much the learned schedule and antithetic times reduce the variance of a trained VDM's bound estimate.

The network of a VDM is conditioned on λ, and E[L_∞] does not depend on the schedule between its end points (VDM
Eq. 18), so the same trained network can be evaluated under its learned γ and under the linear γ with the same end
points: the means must agree, and the spread of the one-time (K = 1) estimate shows what the variance-trained
schedule buys. Also: the variance of a batch's mean loss with antithetic against i.i.d. times (training's estimate).

    python benchmarks/vdm_estimator_variance.py runs/vdm/fmnist --limit 500 --repeats 8 --threads 2

Prints a Markdown table (bits/dim).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from genmodels.checkpoint import from_pretrained
from genmodels.data import load_dataset
from genmodels.diffusion.schedules import FixedLinearGamma
from genmodels.diffusion.vdm import antithetic_times


def diffusion_draws(model, x: torch.Tensor, repeats: int, seed: int, batch_size: int) -> torch.Tensor:
    """``[repeats, N]`` one-time estimates of the diffusion term per image (bits/dim), t ~ U(0, 1) i.i.d."""
    g = torch.Generator().manual_seed(seed)
    to_bpd = 1.0 / (model.spec.dim * math.log(2))
    out = torch.zeros(repeats, len(x), dtype=torch.float64)
    with torch.no_grad():
        for r in range(repeats):
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]
                t = torch.rand(len(xb), generator=g, dtype=torch.float64).clamp(min=1e-12)
                eps = torch.randn(xb.shape, generator=g)
                out[r, i:i + len(xb)] = model.diffusion_term(xb, t, eps).double() * to_bpd
    return out


def batch_mean_spread(model, x: torch.Tensor, batch: int, repeats: int, seed: int) -> tuple[float, float]:
    """Standard deviation (bits/dim) of a batch's mean diffusion term with i.i.d. and with antithetic times."""
    g = torch.Generator().manual_seed(seed)
    to_bpd = 1.0 / (model.spec.dim * math.log(2))
    iid, anti = [], []
    with torch.no_grad():
        for _ in range(repeats):
            xb = x[torch.randint(0, len(x), (batch,), generator=g)]
            for times, sink in ((torch.rand(batch, generator=g, dtype=torch.float64), iid),
                                (antithetic_times(batch, g), anti)):
                eps = torch.randn(xb.shape, generator=g)
                sink.append(model.diffusion_term(xb, times.clamp(min=1e-12), eps).mean().item() * to_bpd)
    return torch.tensor(iid).std().item(), torch.tensor(anti).std().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--limit", type=int, default=500, help="test images")
    ap.add_argument("--repeats", type=int, default=8, help="one-time estimates per image")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--batch-repeats", type=int, default=100, help="batches for the antithetic comparison")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, run_config = from_pretrained(args.run)
    model.eval()
    x = load_dataset(run_config.data).test[: args.limit]
    start = time.perf_counter()
    learned_gamma = model.gamma
    with torch.no_grad():
        g0, g1 = (float(v) for v in learned_gamma.endpoints())
    rows = []
    for name, gamma in (("learned", learned_gamma), ("linear, same end points", FixedLinearGamma(g0, g1))):
        model.gamma = gamma
        d = diffusion_draws(model, x, args.repeats, args.seed, args.batch_size)
        per_image_mean = d.mean(0)
        within = d.var(0).mean().item()  # the estimator's variance for one image, averaged over images
        se = math.sqrt(per_image_mean.var().item() / len(x) + within / (args.repeats * len(x)))
        iid, anti = batch_mean_spread(model, x, 64, args.batch_repeats, args.seed + 1)
        rows.append((name, per_image_mean.mean().item(), se, math.sqrt(within), iid, anti))
    model.gamma = learned_gamma
    print(f"{run_config.data}, {len(x)} test images, {args.repeats} one-time estimates each "
          f"(γ_0 = {g0:.3f}, γ_1 = {g1:.3f}); {time.perf_counter() - start:.0f} s\n")
    print("| schedule | diffusion term, bits/dim | one-time estimator s.d. per image | batch-64 mean s.d., i.i.d. t "
          "| batch-64 mean s.d., antithetic t |")
    print("|---|---|---|---|---|")
    for name, mean, se, sd, iid, anti in rows:
        print(f"| {name} | {mean:.4f} ± {se:.4f} | {sd:.3f} | {iid:.4f} | {anti:.4f} |")


if __name__ == "__main__":
    main()
