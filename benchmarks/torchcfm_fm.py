#!/usr/bin/env python
"""Our flow matching (``genmodels.flow_matching``) against torchcfm 1.0.7's conditional flow matcher, on the same UNet.

What it measures, in one process on one thread (../shared/BENCHMARKING.md: ratios measured in the same run):

1. **Loss equivalence.** On the same noise x0, data x1 and times t, our path (``model.path.sample``) and torchcfm's
   ``ConditionalFlowMatcher(sigma=0).sample_location_and_conditional_flow(x0, x1, t)`` must give the same x_t and u_t,
   and ``model.loss`` the same value as torchcfm's ``((net(x_t, 1000 t) − u_t)²).mean()``; the first training step of
   each draws the same x0 and t (our generator and torch's global RNG both seeded 1), so its loss must match too.
2. **Training throughput.** Two copies of the Fashion-MNIST preset network (``default_config(spec)``: the DDPM
   preset's UNet, read at c_noise = 1000·t), identical at initialisation, trained on the same batches in the same
   order: one by our ``model.loss`` (I-CFM, linear path, σ_min = 0), one by torchcfm's loss. Same recipe for both:
   AdamW (lr 1e-3 as ``genmodels compare``, default betas, no weight decay), batch 64, linear warm-up over 100 steps
   and gradient clipping at 1.0 (our trainer's defaults), no EMA (the raw weights are sampled). The two trainers
   alternate in chunks of ``--chunk`` steps (ours first, then torchcfm first, …) so both see the same machine;
   reported: images/s of each chunk (forward + backward + clip + AdamW; batches gathered before the clock starts),
   the median per trainer, and the ratios ours/torchcfm (ratio of the medians; median and minimum over the chunk
   pairs). Parameters and multiply-adds per image (``FlopCounterMode``) beside them: the work is the same.
3. **Sample quality at a fixed budget.** After ``--steps`` steps each, ``--samples`` images from each network with
   the same sampler and the same initial noise: our ``solve_fixed`` midpoint with 10 steps and Euler with 20 steps
   (20 network evaluations each), scored by ``genmodels.metrics.sample_quality`` (what ``genmodels compare`` uses:
   Fréchet distance in the features of the dataset's own classifier, against the test split, beside the floor of as
   many train images). One seed: the FD ratio carries the seed-to-seed spread of a short training.
4. **OT-CFM throughput** (``--ot-steps``, 0 to skip): our ``FlowMatchingConfig(coupling="ot")`` (exact minibatch OT
   by POT's ``ot.emd``, the noise permuted) against torchcfm's ``ExactOptimalTransportConditionalFlowMatcher``
   (the same ``ot.emd`` plan, then B pairs *resampled from the plan with replacement*), fresh copies of the same
   initial network, alternated in chunks; images/s only (no quality: it does not fit the time budget).

torchcfm is installed for this benchmark only, never a dependency of genmodels (not in pyproject.toml)::

    pip install --no-deps torchcfm==1.0.7   # its conditional_flow_matching imports only torch, numpy and POT

Usage (about 20 minutes on one thread of a shared 2-core machine; the Fashion-MNIST feature classifier is trained
and cached on first use, a further 2–3 minutes)::

    OMP_NUM_THREADS=1 python benchmarks/torchcfm_fm.py                 # --steps 300 --chunk 30 --samples 500
    OMP_NUM_THREADS=1 python benchmarks/torchcfm_fm.py --steps 4 --chunk 2 --samples 20 --ot-steps 4   # smoke

Results: a markdown table on stdout and beside ``--out`` (``.md``), JSON in ``--out`` (default
``/work/runs/torchcfm_fm.json``).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (benchmarks/_machine.py)

from genmodels.data import Dataset, load_dataset  # noqa: E402
from genmodels.flow_matching.model import FlowMatching, default_config  # noqa: E402
from genmodels.flow_matching.solvers import solve_fixed  # noqa: E402

DATA = "fashion-mnist"
BATCH = 64
LR = 1e-3
WARMUP = 100
CLIP = 1.0
INIT_SEED, DATA_SEED, NOISE_SEED, SAMPLE_SEED = 0, 0, 1, 2
SAMPLERS = (("midpoint", 10), ("euler", 20))  # 20 network evaluations each
SAMPLE_BATCH = 100


# --------------------------------------------------------------------------- models and losses
def build_model(ds: Dataset, coupling: str = "independent") -> FlowMatching:
    """The preset flow-matching model for ``ds`` with ``coupling``, initialised from :data:`INIT_SEED` (the global
    RNG is forked, so the caller's stream is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return FlowMatching(replace(default_config(ds.spec), coupling=coupling), ds.spec)


def ours_loss(model: FlowMatching, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    """Our batch loss: the mean of ``model.loss``'s per-example CFM losses (x0 and t from ``generator``)."""
    return lambda x1: model.loss(x1, generator).mean()


def torchcfm_loss(model: FlowMatching, matcher) -> Callable[[Tensor], Tensor]:
    """torchcfm's loss as its examples write it: x0 = randn_like(x1), t and x_t, u_t from the matcher (torch's
    global RNG), ``((v(x_t, t) − u_t)²).mean()`` with our network read at c_noise = 1000·t."""

    def loss(x1: Tensor) -> Tensor:
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        return (model.net(xt, 1000.0 * t) - ut).pow(2).mean()

    return loss


def equivalence(ds: Dataset, model: FlowMatching, matcher) -> dict:
    """Our path and loss against torchcfm's on the same x0, x1, t (max abs differences and both losses)."""
    g = torch.Generator().manual_seed(123)
    x1 = ds.train[torch.randint(0, ds.n_train, (BATCH,), generator=g)]
    x0 = torch.randn(x1.shape, generator=g)
    t = torch.rand(BATCH, generator=g)
    xt_o, ut_o = model.path.sample(x0, x1, t)
    with torch.random.fork_rng(devices=[]):  # torchcfm draws an unused ε even at σ = 0
        _, xt_c, ut_c = matcher.sample_location_and_conditional_flow(x0, x1, t)
    with torch.no_grad():
        ours = (model.velocity(xt_o, t) - ut_o).pow(2).flatten(1).mean(1).mean()
        theirs = (model.net(xt_c, 1000.0 * t) - ut_c).pow(2).mean()
    return {"max_abs_dxt": float((xt_o - xt_c).abs().max()), "max_abs_dut": float((ut_o - ut_c).abs().max()),
            "loss_ours": float(ours), "loss_torchcfm": float(theirs)}


def macs_per_image(model: FlowMatching, ds: Dataset) -> int:
    """Multiply-adds of one network evaluation on one image (FlopCounterMode's FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, *ds.spec.event_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.net(x, torch.full((1,), 500.0))
    return fc.get_total_flops() // 2


# --------------------------------------------------------------------------- training
class Trainer:
    """AdamW with linear warm-up and gradient clipping on ``loss_fn(batch)``; keeps its losses and chunk speeds."""

    def __init__(self, name: str, model: FlowMatching, loss_fn: Callable[[Tensor], Tensor]):
        self.name, self.model, self.loss_fn = name, model.train(), loss_fn
        self.opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
        self.step = 0
        self.losses: list[float] = []
        self.images_per_s: list[float] = []

    def chunk(self, batches: list[Tensor]) -> None:
        """Train on ``batches`` (already gathered), timing the whole chunk."""
        start = time.perf_counter()
        for x in batches:
            for group in self.opt.param_groups:
                group["lr"] = LR * min(1.0, (self.step + 1) / WARMUP)
            loss = self.loss_fn(x)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
            self.opt.step()
            self.losses.append(loss.item())
            self.step += 1
        self.images_per_s.append(len(batches) * BATCH / (time.perf_counter() - start))


def batch_indices(n_train: int, steps: int) -> list[Tensor]:
    """The shared data order: epochs of a seeded permutation, cut into batches of :data:`BATCH`."""
    g = torch.Generator().manual_seed(DATA_SEED)
    out: list[Tensor] = []
    while len(out) < steps:
        out.extend(p for p in torch.randperm(n_train, generator=g).split(BATCH) if len(p) == BATCH)
    return out[:steps]


def alternate(ds: Dataset, a: Trainer, b: Trainer, steps: int, chunk: int, log: Callable[[str], None]) -> None:
    """Train ``a`` and ``b`` on the same batches, alternating chunks of ``chunk`` steps (a b, b a, a b, …)."""
    idx = batch_indices(ds.n_train, steps)
    for k, lo in enumerate(range(0, steps, chunk)):
        batches = [ds.train[i] for i in idx[lo:lo + chunk]]
        for tr in (a, b) if k % 2 == 0 else (b, a):
            tr.chunk(batches)
        log(f"  chunk {k + 1}/{math.ceil(steps / chunk)}: {a.name} {a.images_per_s[-1]:.1f} img/s (loss "
            f"{statistics.fmean(a.losses[-len(batches):]):.4f}), {b.name} {b.images_per_s[-1]:.1f} img/s (loss "
            f"{statistics.fmean(b.losses[-len(batches):]):.4f})")


def speed_summary(a: Trainer, b: Trainer) -> dict:
    """Median images/s of each, the ratio of the medians, and the median and minimum of the per-chunk ratios."""
    ratios = [x / y for x, y in zip(a.images_per_s, b.images_per_s, strict=True)]
    ma, mb = statistics.median(a.images_per_s), statistics.median(b.images_per_s)
    return {"ours_img_s": a.images_per_s, "torchcfm_img_s": b.images_per_s, "ours_median": ma, "torchcfm_median": mb,
            "ratio_of_medians": ma / mb, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}


# --------------------------------------------------------------------------- sampling and scoring
@torch.no_grad()
def draw(models: dict[str, FlowMatching], noise: Tensor, method: str, steps: int) -> tuple[dict, dict]:
    """Samples of each model from the same ``noise`` by ``solve_fixed``, batch by batch and model by model in turn;
    clamped to the data range as ``FlowMatching.draw`` does. Returns (samples, seconds) per model."""
    xs = {k: [] for k in models}
    secs = dict.fromkeys(models, 0.0)
    for z in noise.split(SAMPLE_BATCH):
        for name, m in models.items():
            start = time.perf_counter()
            xs[name].append(solve_fixed(m.eval().field(None), z, steps, method)[0].clamp(-1.0, 1.0))
            secs[name] += time.perf_counter() - start
    return {k: torch.cat(v) for k, v in xs.items()}, secs


# --------------------------------------------------------------------------- report
def markdown(res: dict) -> str:
    sp, eq = res["speed"], res["equivalence"]
    lines = [
        f"### Flow matching: genmodels vs torchcfm {res['machine']['torchcfm']} (Fashion-MNIST, same UNet, "
        f"{res['settings']['steps']} steps of batch {BATCH} each, 1 thread)",
        "",
        f"Network: {res['params']:,} parameters, {res['macs_per_image'] / 1e6:.1f} M multiply-adds per image per "
        f"evaluation (both). Machine: {res['machine']['nproc']} CPUs ({res['machine']['cpu_model']}), "
        f"{res['machine']['date']}, commit {res['machine']['git_commit']}.",
        "",
        "| measure | ours | torchcfm | ours / torchcfm |",
        "|---|---|---|---|",
        f"| I-CFM training, img/s (median of {len(sp['ours_img_s'])} chunks of {res['settings']['chunk']} steps) | "
        f"{sp['ours_median']:.1f} | {sp['torchcfm_median']:.1f} | {sp['ratio_of_medians']:.3f} (per chunk pair: "
        f"median {sp['ratio_median']:.3f}, min {sp['ratio_min']:.3f}, max {sp['ratio_max']:.3f}) |",
        f"| training loss, mean of the last chunk | {res['final_loss']['ours']:.4f} | "
        f"{res['final_loss']['torchcfm']:.4f} | {res['final_loss']['ours'] / res['final_loss']['torchcfm']:.3f} |",
        f"| first-step loss (same x0, t) | {res['first_loss']['ours']:.6f} | {res['first_loss']['torchcfm']:.6f} | "
        f"{res['first_loss']['ours'] / res['first_loss']['torchcfm']:.6f} |",
    ]
    for row in res["quality"]:
        q = row["scores"]
        lines.append(f"| FD, {row['sampler']} {row['steps']} steps ({row['nfe']} NFE), {row['n']} samples "
                     f"(floor {q['ours']['fd_floor']:.2f}) | {q['ours']['fd']:.2f} | {q['torchcfm']['fd']:.2f} | "
                     f"{q['ours']['fd'] / q['torchcfm']['fd']:.3f} |")
        lines.append(f"| precision / recall, {row['sampler']} | {q['ours']['precision']:.3f} / "
                     f"{q['ours']['recall']:.3f} | {q['torchcfm']['precision']:.3f} / {q['torchcfm']['recall']:.3f} "
                     "| |")
    if res.get("ot"):
        ot = res["ot"]
        lines.append(f"| OT-CFM training, img/s (median of {len(ot['ours_img_s'])} chunks of "
                     f"{res['settings']['ot_chunk']} steps) | {ot['ours_median']:.1f} | {ot['torchcfm_median']:.1f} | "
                     f"{ot['ratio_of_medians']:.3f} (per chunk pair: min {ot['ratio_min']:.3f}, max "
                     f"{ot['ratio_max']:.3f}) |")
    lines += ["", f"Equivalence on the same x0, x1, t: max |Δx_t| = {eq['max_abs_dxt']:.1e}, max |Δu_t| = "
              f"{eq['max_abs_dut']:.1e}, loss {eq['loss_ours']:.6f} (ours) vs {eq['loss_torchcfm']:.6f} (torchcfm). "
              f"Wall time {res['wall_seconds']:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps of each trainer (I-CFM)")
    p.add_argument("--chunk", type=int, default=30, help="steps per alternated chunk")
    p.add_argument("--samples", type=int, default=500, help="samples per model and sampler for the FD")
    p.add_argument("--ot-steps", type=int, default=30, help="OT-CFM training steps of each (0: skip)")
    p.add_argument("--ot-chunk", type=int, default=10, help="OT-CFM steps per alternated chunk")
    p.add_argument("--out", type=Path, default=Path("/work/runs/torchcfm_fm.json"), help="JSON results path")
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    import torchcfm
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    from genmodels.metrics.features import dataset_features, feature_extractor
    from genmodels.metrics.sample_quality import sample_quality

    ds = load_dataset(DATA)
    t0 = time.perf_counter()
    dataset_features(ds, feature_extractor(ds))  # trained and cached on first use; here so the timings exclude it
    log(f"feature classifier ready ({time.perf_counter() - t0:.0f} s)")

    ours_model = build_model(ds)
    theirs_model = copy.deepcopy(ours_model)  # the same class, weights and buffers
    matcher = ConditionalFlowMatcher(sigma=0.0)
    res: dict = {"machine": _machine.machine(torchcfm=getattr(torchcfm, "__version__", "1.0.7")),
                 "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
                 | {"data": DATA, "batch": BATCH, "lr": LR, "warmup": WARMUP, "clip": CLIP, "ema": None,
                    "threads": torch.get_num_threads()},
                 "params": sum(q.numel() for q in ours_model.parameters()),
                 "macs_per_image": macs_per_image(ours_model, ds),
                 "equivalence": equivalence(ds, ours_model, matcher)}
    log(f"equivalence: {res['equivalence']}")

    # untimed warm-up steps on throw-away copies (the first steps of a process run slower: allocator, caches)
    for make in (lambda m: ours_loss(m, torch.Generator().manual_seed(99)), lambda m: torchcfm_loss(m, matcher)):
        scratch = copy.deepcopy(ours_model)
        Trainer("warm-up", scratch, make(scratch)).chunk([ds.train[i] for i in batch_indices(ds.n_train, 3)])
    log("warm-up done")

    # 2. training, alternated; our generator and the global RNG seeded alike, so the first step draws the same x0, t
    gen = torch.Generator().manual_seed(NOISE_SEED)
    torch.manual_seed(NOISE_SEED)
    ours = Trainer("ours", ours_model, ours_loss(ours_model, gen))
    theirs = Trainer("torchcfm", theirs_model, torchcfm_loss(theirs_model, matcher))
    log(f"training {args.steps} steps each, alternating chunks of {args.chunk}")
    alternate(ds, ours, theirs, args.steps, args.chunk, log)
    last = min(args.chunk, args.steps)
    res["speed"] = speed_summary(ours, theirs)
    res["first_loss"] = {"ours": ours.losses[0], "torchcfm": theirs.losses[0]}
    res["final_loss"] = {"ours": statistics.fmean(ours.losses[-last:]),
                         "torchcfm": statistics.fmean(theirs.losses[-last:])}
    res["losses"] = {"ours": ours.losses, "torchcfm": theirs.losses}

    # 3. samples from the same noise with the same solver, scored like `genmodels compare`
    noise = torch.randn((args.samples, *ds.spec.event_shape), generator=torch.Generator().manual_seed(SAMPLE_SEED))
    models = {"ours": ours_model, "torchcfm": theirs_model}
    res["quality"] = []
    for method, steps in SAMPLERS:
        xs, secs = draw(models, noise, method, steps)
        scores = {k: sample_quality(x, ds, generator=torch.Generator().manual_seed(0)) for k, x in xs.items()}
        res["quality"].append({"sampler": method, "steps": steps, "nfe": steps * (2 if method == "midpoint" else 1),
                               "n": args.samples, "seconds": secs, "scores": scores})
        log(f"{method} {steps} steps: FD ours {scores['ours']['fd']:.3f}, torchcfm {scores['torchcfm']['fd']:.3f} "
            f"(floor {scores['ours']['fd_floor']:.3f})")

    # 4. OT-CFM throughput
    if args.ot_steps > 0:
        ot_ours, ot_theirs = build_model(ds, "ot"), build_model(ds, "ot")
        ot_matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
        torch.manual_seed(NOISE_SEED)
        np.random.seed(NOISE_SEED)  # torchcfm resamples the plan's pairs with numpy's global RNG
        a = Trainer("ours-ot", ot_ours, ours_loss(ot_ours, torch.Generator().manual_seed(NOISE_SEED)))
        b = Trainer("torchcfm-ot", ot_theirs, torchcfm_loss(ot_theirs, ot_matcher))
        log(f"OT-CFM: {args.ot_steps} steps each, alternating chunks of {args.ot_chunk}")
        alternate(ds, a, b, args.ot_steps, args.ot_chunk, log)
        res["ot"] = speed_summary(a, b) | {"first_loss": {"ours": a.losses[0], "torchcfm": b.losses[0]}}

    res["wall_seconds"] = time.perf_counter() - start
    _machine.write_results(res, args.out, markdown(res))


if __name__ == "__main__":
    main()
