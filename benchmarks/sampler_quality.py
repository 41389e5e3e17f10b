#!/usr/bin/env python
"""Few-step sampling: our samplers against diffusers' schedulers driving the *same* trained network.

Method (../shared/BENCHMARKING.md): both sides run in one process on the same network (our trained DDPM's
UNet, EMA weights), from the same x_T (the same seeded normal draw, scaled by each scheduler's
``init_noise_sigma``), at the same number of network evaluations (NFE). Configurations are interleaved batch
by batch, so slow phases of the machine fall on all of them alike. Quality is the Fréchet distance on the
features of the dataset's own classifier (:mod:`genmodels.metrics.features`) against the test split, with
the test-vs-train floor at the same number of images; speed is wall time per sample, reported as ratios
ours/diffusers for matching methods (DDIM, DPM-Solver++(2M), Heun).

diffusers is given good settings of its own: DDIM with ``leading`` (its default) and ``trailing`` spacing,
DPM-Solver++(2M) with its default and with Karras σs, Euler and Heun (x̂_0 clipped like ours where the
scheduler offers it); its best configuration at each NFE is the comparison. (In a 16-sample smoke run the
other variants we tried, DPM++ with thresholding and Euler/Heun with Karras σs, were no better; each
configuration costs about 1 CPU-minute per 300 samples, so the list is kept short.) Our DPM-Solver++ runs
on its λ-uniform grid and on the EDM ρ = 7 grid, which is what diffusers' ``use_karras_sigmas`` gives.

Usage::

    python benchmarks/sampler_quality.py --run runs/fmnist            # 300 samples per configuration
    python benchmarks/sampler_quality.py --run runs/fmnist --quick    # smoke test (16 samples, NFE 10)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PREDICTION_TYPE = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def ours(name: str, **options) -> Callable:
    """A config: our sampler ``name`` spending ``nfe`` evaluations on ``n`` samples."""
    from genmodels.diffusion.samplers import SAMPLERS, steps_for_nfe

    def run(model, n: int, nfe: int, g: torch.Generator) -> tuple[torch.Tensor, int]:
        out = SAMPLERS.get(name)(model, n, steps=steps_for_nfe(name, nfe), generator=g, **options)
        return out.x0, out.nfe

    return run


def peer(cls_name: str, **options) -> Callable:
    """A config: diffusers scheduler ``cls_name`` (with ``options``) driving our network."""
    import diffusers

    def run(model, n: int, nfe: int, g: torch.Generator) -> tuple[torch.Tensor, int]:
        cfg = model.config.schedule
        sched = getattr(diffusers, cls_name)(
            num_train_timesteps=cfg.T, beta_start=cfg.beta_start, beta_end=cfg.beta_end, beta_schedule="linear",
            prediction_type=PREDICTION_TYPE[model.config.parameterization], **options)
        steps = (nfe + 1) // 2 if cls_name == "HeunDiscreteScheduler" else nfe
        sched.set_timesteps(steps)
        x = torch.randn((n, *model.spec.event_shape), generator=g) * sched.init_noise_sigma
        calls = 0
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            out = model.net(inp, model.c_noise(t.expand(n)))
            calls += 1
            kw = {"generator": g} if cls_name == "DDIMScheduler" else {}
            x = sched.step(out, t, x, **kw).prev_sample
        return x, calls

    return run


def configs(model) -> dict[str, tuple[str, Callable]]:
    """name -> (method family, runner). Families pair ours with diffusers' for the speed ratios."""
    clip = {"clip_sample": model.config.clip_x0}
    return {
        "ours ddim": ("ddim", ours("ddim")),
        "ours dpm++ (λ-uniform)": ("dpm++", ours("dpm++")),
        "ours dpm++ (EDM ρ=7 grid)": ("dpm++", ours("dpm++", spacing="edm")),
        "ours heun (EDM ρ=7)": ("heun", ours("heun")),
        "diffusers DDIM (leading)": ("ddim", peer("DDIMScheduler", **clip)),
        "diffusers DDIM (trailing)": ("ddim", peer("DDIMScheduler", timestep_spacing="trailing", **clip)),
        "diffusers DPM++2M": ("dpm++", peer("DPMSolverMultistepScheduler")),
        "diffusers DPM++2M (Karras σ)": ("dpm++", peer("DPMSolverMultistepScheduler", use_karras_sigmas=True)),
        "diffusers Euler": ("euler", peer("EulerDiscreteScheduler")),
        "diffusers Heun": ("heun", peer("HeunDiscreteScheduler", **clip)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/fmnist"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--nfe", default="10,20")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sampler_quality.json")
    args = ap.parse_args()
    if args.quick:
        args.n, args.nfe, args.batch_size = 16, "10", 16
    torch.set_num_threads(args.threads)

    from genmodels.checkpoint import from_pretrained
    from genmodels.data import load_dataset
    from genmodels.metrics.sample_quality import sample_quality

    model, run_config = from_pretrained(args.run, ema=True)
    model.eval()
    dataset = load_dataset(run_config.data)
    nfes = [int(v) for v in args.nfe.split(",")]
    cfgs = configs(model)
    xs: dict[tuple[str, int], list[torch.Tensor]] = {}
    secs: dict[tuple[str, int], float] = {}
    nfe_used: dict[tuple[str, int], int] = {}
    gens = {(c, k): torch.Generator().manual_seed(args.seed) for c in cfgs for k in nfes}
    sizes = [min(args.batch_size, args.n - i) for i in range(0, args.n, args.batch_size)]
    with torch.no_grad():
        for b, size in enumerate(sizes):  # interleave: batch b of every configuration, then batch b + 1
            for k in nfes:
                for name, (_, fn) in cfgs.items():
                    t0 = time.perf_counter()
                    x, used = fn(model, size, k, gens[(name, k)])
                    secs[(name, k)] = secs.get((name, k), 0.0) + time.perf_counter() - t0
                    xs.setdefault((name, k), []).append(x.clamp(-1, 1))
                    nfe_used[(name, k)] = used
            print(f"batch {b + 1}/{len(sizes)} done", file=sys.stderr, flush=True)

    rows = []
    for k in nfes:
        for name, (family, _) in cfgs.items():
            q = sample_quality(torch.cat(xs[(name, k)]), dataset)
            rows.append({"config": name, "family": family, "nfe_budget": k, "nfe": nfe_used[(name, k)],
                         "seconds_per_sample": secs[(name, k)] / args.n, **q})
            print(f"{name:32s} NFE {nfe_used[(name, k)]:3d}  FD {q['fd']:.4g}", file=sys.stderr, flush=True)

    def best(prefix: str, k: int, family: str | None = None) -> dict:
        cand = [r for r in rows if r["config"].startswith(prefix) and r["nfe_budget"] == k
                and (family is None or r["family"] == family)]
        return min(cand, key=lambda r: r["fd"])

    summary = []
    for k in nfes:
        o, d = best("ours", k), best("diffusers", k)
        line = {"nfe": k, "ours_best": o["config"], "ours_fd": o["fd"], "diffusers_best": d["config"],
                "diffusers_fd": d["fd"], "fd_ratio_ours_over_diffusers": o["fd"] / d["fd"], "speed": {}}
        for fam in ("ddim", "dpm++", "heun"):
            of, df = best("ours", k, fam), best("diffusers", k, fam)
            line["speed"][fam] = {"ours": of["config"], "diffusers": df["config"],
                                  "fd_ratio": of["fd"] / df["fd"],
                                  "time_ratio_ours_over_diffusers": of["seconds_per_sample"] / df["seconds_per_sample"]}
        summary.append(line)

    floor = rows[0].get("fd_floor")
    md = [f"Floor (test vs train, {args.n} images): FD {floor:.4g}" if floor is not None else "",
          "", "| configuration | NFE | FD | KID | precision | recall | s/sample |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        kid = r.get("kid")
        kid_s = f"{kid[0]:.4g}" if isinstance(kid, (list, tuple)) else (f"{kid:.4g}" if kid is not None else "")
        md.append(f"| {r['config']} | {r['nfe']} | {r['fd']:.4g} | {kid_s} | {r.get('precision', float('nan')):.3f} "
                  f"| {r.get('recall', float('nan')):.3f} | {r['seconds_per_sample']:.3f} |")
    md += ["", "| NFE | ours best (FD) | diffusers best (FD) | FD ratio | time ratio ddim / dpm++ / heun |",
           "|---|---|---|---|---|"]
    for s in summary:
        tr = " / ".join(f"{s['speed'][f]['time_ratio_ours_over_diffusers']:.2f}" for f in ("ddim", "dpm++", "heun"))
        md.append(f"| {s['nfe']} | {s['ours_best']} ({s['ours_fd']:.4g}) | {s['diffusers_best']} "
                  f"({s['diffusers_fd']:.4g}) | {s['fd_ratio_ours_over_diffusers']:.3f} | {tr} |")
    print("\n".join(md))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": dt.datetime.now().isoformat(timespec="seconds"),
                                    "machine": platform.platform(), "threads": args.threads, "n": args.n,
                                    "seed": args.seed, "run": str(args.run), "rows": rows, "summary": summary},
                                   indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
