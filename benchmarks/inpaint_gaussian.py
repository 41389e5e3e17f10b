"""How close RePaint and the replacement method come to the exact conditional of Gaussian data (issue 16).

x_0 ~ N(m, Σ) with Σ_ij = s_i s_j ρ^|i−j| (a full, strongly correlated covariance), the first ⌊D/2⌋ coordinates
observed at m_o + L_oo 1 (one standard deviation off the mean along each whitened direction), the Bayes-optimal ε
predictor in a DDPM (linear schedule, T steps, ``fixed_small`` variance), and the exact conditional
N(m_u + Σ_uo Σ_oo⁻¹ (x_o − m_o), Σ_uu − Σ_uo Σ_oo⁻¹ Σ_ou) as the reference. For each method the table gives

- mean error: ‖L⁻¹(μ̂ − μ*)‖, the error of the mean in standard deviations of the conditional (Mahalanobis);
- cov error: ‖L⁻¹ Ĉ L⁻ᵀ − I‖_F, the relative error of the covariance (L L ᵀ = Σ* the conditional's);

both from ``--n`` samples of ``genmodels.diffusion.inpaint`` (Monte Carlo error ≈ √(k/n) and ≈ √(k(k+1)/n) for k
unknowns) and from the chain's exact law (mean and covariance propagated through RePaint's Algorithm 1 in numpy,
tests/_gaussian_inpaint.py: the method's own bias, free of sampling noise). Wall time is for the sampled run.

    python benchmarks/inpaint_gaussian.py         # D = 4, ρ = 0.9, 250 levels, j = 10, r ∈ {2, 5, 10, 20, 50}
    python benchmarks/inpaint_gaussian.py --D 6 --rho 0.8 --steps 1000 --r 10,20

Prints a Markdown table; JSON and Markdown in benchmarks/results/inpaint_gaussian.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import _machine  # noqa: E402  (benchmarks/_machine.py)

from _gaussian_inpaint import (  # noqa: E402  (tests/_gaussian_inpaint.py)
    ar1_problem,
    chain_law,
    exact_conditional,
    gaussian_ddpm,
    observed_values,
    whitened_errors,
)
from genmodels.diffusion.inpaint import jump_schedule, repaint, repaint_nfe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--D", type=int, default=4, help="dimensions (the first ⌊D/2⌋ observed)")
    ap.add_argument("--rho", type=float, default=0.9, help="AR(1) correlation of Σ")
    ap.add_argument("--T", type=int, default=1000, help="steps of the model's process")
    ap.add_argument("--steps", type=int, default=250, help="levels S of the respaced process (RePaint: 250)")
    ap.add_argument("--jump-length", type=int, default=10, help="RePaint's j")
    ap.add_argument("--r", default="2,5,10,20,50", help="RePaint's jump_n_sample values, comma-separated")
    ap.add_argument("--n", type=int, default=4000, help="samples per method")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "inpaint_gaussian.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    m, cov = ar1_problem(args.D, args.rho)
    obs = np.zeros(args.D, bool)
    obs[: args.D // 2] = True
    x_o = observed_values(m, cov, obs)
    ref_mean, ref_cov = exact_conditional(m, cov, obs, x_o)
    model = gaussian_ddpm(args.T, m, cov)
    x = torch.zeros(args.n, args.D)
    x[:, torch.from_numpy(obs)] = torch.tensor(x_o, dtype=torch.float32)
    known = torch.from_numpy(obs)[None]
    u = ~obs

    configs = [("replace", 1, 1)] + [("repaint", args.jump_length, int(r)) for r in args.r.split(",")]
    rows = []
    for method, j, r in configs:
        t0 = time.perf_counter()
        out = repaint(model, x, known, steps=args.steps, jump_length=j, jump_n_sample=r,
                      generator=torch.Generator().manual_seed(args.seed))
        seconds = time.perf_counter() - t0
        assert out.nfe == repaint_nfe(args.steps, j, r)
        assert torch.equal(out.x0[:, known[0]], x[:, known[0]])
        xs = out.x0.double().numpy()[:, u]
        sample = whitened_errors(xs.mean(0), np.cov(xs.T), ref_mean, ref_cov)
        mu, c = chain_law(m, cov, obs, x_o, args.T, args.steps, jump_schedule(args.steps, j, r))
        exact = whitened_errors(mu[u], c[np.ix_(u, u)], ref_mean, ref_cov)
        rows.append({"method": method, "steps": args.steps, "r": r, "j": j if method == "repaint" else None,
                     "nfe": out.nfe, "mean_error": sample[0], "cov_error": sample[1],
                     "mean_error_exact": exact[0], "cov_error_exact": exact[1], "seconds": seconds})
        print(f"{method} r={r}: {seconds:.1f} s", file=sys.stderr, flush=True)

    k = int(u.sum())
    md = [f"Inpainting Gaussian data: D = {args.D} ({k} unknown), Σ_ij = s_i s_j {args.rho}^|i−j|, optimal ε "
          f"predictor, T = {args.T}, {args.n} samples per method (Monte Carlo error ≈ {np.sqrt(k / args.n):.3f} "
          f"mean, ≈ {np.sqrt(k * (k + 1) / args.n):.3f} cov); errors in the conditional's whitened coordinates.",
          "",
          "| method | steps | r | j | NFE | mean error | cov error | mean error (exact law) | cov error (exact law) "
          "| seconds |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        md.append(f"| {row['method']} | {row['steps']} | {row['r']} | {row['j'] or '—'} | {row['nfe']} | "
                  f"{row['mean_error']:.3f} | {row['cov_error']:.3f} | {row['mean_error_exact']:.3f} | "
                  f"{row['cov_error_exact']:.3f} | {row['seconds']:.1f} |")
    res = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rows": rows,
           "machine": _machine.machine(), "wall_seconds": time.perf_counter() - start}
    _machine.write_results(res, args.out, "\n".join(md))


if __name__ == "__main__":
    main()
