#!/usr/bin/env python
"""Flow matching on the 2-D toys: network evaluations (NFE) needed for a given Wasserstein distance, with independent
coupling (I-CFM / rectified flow), minibatch optimal-transport coupling (OT-CFM, Tong et al. 2024) and after one
reflow of the I-CFM model (2-rectified flow, Liu et al. 2023), issue 19.

Per toy, the three models share the preset MLP (genmodels' flow-matching preset for 2-D data), the seed, AdamW
(lr 1e-3), batch 256 and the number of steps; the reflow model starts from the trained I-CFM weights and trains the
same number of steps again on 20 000 of its own (noise, sample) pairs drawn with the adaptive solver (dopri5,
rtol = atol = 1e-5). Each model then draws 2 000 samples from the same noise with Euler at 1, 2, 4, 8, 16, 32 and 64
steps (NFE = steps) and with dopri5, scored by the exact W2 (POT network simplex) against 2 000 held-out test points;
the floor is W2 between two disjoint sets of 2 000 test points (what two samples of the data itself give). Two
NFE columns: the fewest Euler steps with W2 ≤ a common target, 1.1 × the worst model's dopri5 W2 (a quality every
model's own ODE reaches), and with W2 ≤ 1.1 × the model's own dopri5 W2 (how soon it reaches what its ODE gives).

    OMP_NUM_THREADS=1 python benchmarks/flow_matching_toys.py --steps 3000 --toys 8gaussians,moons,checkerboard

One thread, about 2 minutes per model and toy. Results: markdown on stdout and in
``benchmarks/results/flow_matching_toys.md``, JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from genmodels.data import load_dataset
from genmodels.flow_matching.model import FlowMatching, default_config
from genmodels.flow_matching.reflow import reflow, reflow_pairs
from genmodels.metrics.sample_quality import wasserstein_distance

HERE = Path(__file__).resolve().parent
NFES = (1, 2, 4, 8, 16, 32, 64)
N_EVAL = 2000


def train(model: FlowMatching, x: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    """AdamW on ``model.loss`` over shuffled minibatches of ``x``; returns the seconds taken."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = model.loss(x[idx], g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return time.perf_counter() - start


def scores(model: FlowMatching, test: torch.Tensor, seed: int) -> dict:
    """W2 to the test points at each Euler NFE and with dopri5 (NFE measured), all from the same noise."""
    out = {}
    for nfe in NFES:
        x = model.draw(N_EVAL, torch.Generator().manual_seed(seed), sampler="euler", steps=nfe).x0
        out[str(nfe)] = wasserstein_distance(x.double(), test, max_samples=N_EVAL)
    d = model.draw(N_EVAL, torch.Generator().manual_seed(seed), sampler="ode", rtol=1e-5, atol=1e-5)
    out["dopri5"] = wasserstein_distance(d.x0.double(), test, max_samples=N_EVAL)
    out["dopri5_nfe"] = d.nfe
    return out


def nfe_for(row: dict, target: float) -> int | None:
    """The fewest Euler NFE whose W2 ≤ target (None: not within 64)."""
    return next((n for n in NFES if row[str(n)] <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toys", default="8gaussians,moons,checkerboard")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "flow_matching_toys.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for toy in args.toys.split(","):
        ds = load_dataset(toy)
        x = ds.train.double()
        test = ds.test.double()
        floor = wasserstein_distance(test[:N_EVAL], test[N_EVAL:2 * N_EVAL], max_samples=N_EVAL)
        rows = {}
        for name, coupling in (("I-CFM", "independent"), ("OT-CFM", "ot")):
            torch.manual_seed(args.seed)
            model = FlowMatching(replace(default_config(ds.spec), coupling=coupling), ds.spec).double()
            secs = train(model, x, args.steps, args.batch, args.seed)
            rows[name] = {**scores(model, test, args.seed + 1), "train_s": secs}
            if name == "I-CFM":
                start = time.perf_counter()
                pool = reflow_pairs(model, args.pairs, torch.Generator().manual_seed(args.seed + 2), rtol=1e-5,
                                    atol=1e-5)
                pair_s = time.perf_counter() - start
                student = reflow(model, pool, args.steps, batch_size=args.batch,
                                 generator=torch.Generator().manual_seed(args.seed + 3))
                rows["I-CFM + reflow"] = {**scores(student, test, args.seed + 1),
                                          "train_s": time.perf_counter() - start - pair_s, "pairs_s": pair_s}
            print(toy, name, {k: round(v, 4) if isinstance(v, float) else v for k, v in rows[name].items()},
                  flush=True)
        target = 1.1 * max(r["dopri5"] for r in rows.values())
        for r in rows.values():
            r["nfe_for_target"] = nfe_for(r, target)
            r["nfe_for_own"] = nfe_for(r, 1.1 * r["dopri5"])
        results[toy] = {"floor": floor, "target": target, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                   indent=1))
    lines = []
    for toy, res in results.items():
        lines += [f"**{toy}** (W2 floor {res['floor']:.4f}; common target {res['target']:.4f})", "",
                  "| model | " + " | ".join(f"W2 @{n}" for n in NFES)
                  + " | dopri5 W2 (NFE) | NFE for common target | NFE for 1.1 × own dopri5 |",
                  "|---|" + "---|" * (len(NFES) + 3)]
        for name, r in res["rows"].items():
            lines.append(f"| {name} | " + " | ".join(f"{r[str(n)]:.4f}" for n in NFES)
                         + f" | {r['dopri5']:.4f} ({r['dopri5_nfe']}) | {r['nfe_for_target'] or '> 64'} | "
                         f"{r['nfe_for_own'] or '> 64'} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
