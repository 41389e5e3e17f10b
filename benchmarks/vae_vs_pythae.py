#!/usr/bin/env python
"""Our VAE against pythae's VAE: test NLL (IWAE-k, one estimator for both) and training throughput.

Method (../shared/BENCHMARKING.md): the same data, split, architecture, budget and seed for both; quality and
speed together; speed as a ratio ours/pythae measured in the same process, the two trainings alternated
(ours first, then pythae first, …) over several separate processes, with the median and minimum of the
per-process ratios; parameters and multiply-adds per example beside the throughput.

Data: ``binary:mnist5k`` (4000 train / 1000 test stochastically binarized 28×28 MNIST digits, fixed seed). Our
models see values in {−1, 1}; pythae sees the same images as {0, 1} floats (its ``bce`` loss needs [0, 1]).

Architecture (both, 829,232 parameters at latent 16): pythae's default MNIST MLPs, ``Encoder_VAE_MLP``
(784→512 ReLU→(μ, log σ²) by two Linear heads) and ``Decoder_AE_MLP`` (latent→512 ReLU→784 sigmoid); ours
``VAEConfig(latent_dim=L, coder=CoderConfig(backbone="mlp", hidden=512, depth=1, activation="relu"))`` with the
Bernoulli decoder (picked for n_bins = 2; it outputs the logits before pythae's sigmoid).

Budget: E epochs of batch 64, lr 1e-3, the same seed. pythae is trained as its users train it:
``TrainingPipeline(model, BaseTrainerConfig(num_epochs=E, learning_rate=1e-3, per_device_train_batch_size=64,
…))(train_data=…)`` with no eval data (so it keeps the best model on the training loss, and saves it as
``final_model``, which is what we evaluate), Adam, no scheduler, on CPU; its DataLoader keeps the last partial
batch, so an epoch is ⌈4000/64⌉ = 63 steps. Ours is trained through ``genmodels.cli.run_train`` (the
``genmodels train`` path) for the same number of optimizer steps, 63·E, of 64 images (our loop drops a
partial batch, so it sees 4032·E images against pythae's 4000·E), with AdamW (weight decay 0: Adam), a short
linear warm-up, our default gradient clipping (1.0) and our default EMA; checkpoints only at the end, as pythae.

Throughput: images per second of the whole training call (pythae's pipeline call; our ``run_train``, which
also loads the dataset, about 0.2 s) for each, with the same number of torch threads, over ``--processes``
processes; reported as the ratio ours/pythae (> 1: ours faster).

NLL: the IWAE bound with k importance samples (Burda et al. 2016), in nats per image, over the whole test
split, computed for every model by *our* estimator ``LatentVariableModel.nll_terms(x, g, k=k)`` with the same
random numbers. pythae's trained weights are copied into our ``VAE`` of the same shape (the encoder's heads
concatenated into our ``to_posterior``; its first layer folded for our {−1, 1} input scale,
W' = W/2, b' = b + W·1/2; the decoder's last Linear gives the logits its sigmoid turned into probabilities),
and the copy is checked against pythae's own ``model.forward`` loss (BCE summed + KL, batch mean) at the same
ε, to 1e-4 relative. pythae's own ``get_nll`` is reported as a cross-check (see the notes it prints).

Usage::

    python benchmarks/vae_vs_pythae.py                          # 50 epochs, k = 5000, 3 processes, 1 thread
    python benchmarks/vae_vs_pythae.py --epochs 1 --k 10 --processes 1    # smoke test
    python benchmarks/vae_vs_pythae.py --worker ...             # one training process (internal; JSON)
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

# pythae: no network, no experiment trackers, no progress bars (ours runs with progress=False too), CPU only.
for _k, _v in {"WANDB_MODE": "disabled", "WANDB_DISABLED": "true", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
               "CUDA_VISIBLE_DEVICES": ""}.items():
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (benchmarks/_machine.py)

DATA = "binary:mnist5k"
BATCH = 64
SHAPE = (1, 28, 28)
HIDDEN = 512


# --------------------------------------------------------------------------- training (one worker process)
def steps_per_epoch(n_train: int) -> int:
    """Optimizer steps of one pythae epoch: its DataLoader keeps the last partial batch."""
    return math.ceil(n_train / BATCH)


def our_settings(latent_dim: int) -> list[str]:
    """The ``--set`` assignments of our matched VAE (``genmodels train vae --set …``)."""
    return [f"latent_dim={latent_dim}", "coder.backbone=mlp", f"coder.hidden={HIDDEN}", "coder.depth=1",
            "coder.activation=relu"]


def train_ours(args: argparse.Namespace, steps: int, per_epoch: int, out: Path) -> dict:
    """``genmodels train vae`` for ``steps`` steps of 64 images; returns timing and the final loss."""
    from genmodels.cli import run_train

    overrides = {"steps": steps, "batch_size": BATCH, "lr": args.lr, "warmup_steps": args.warmup_steps,
                 "grad_clip": math.inf if args.grad_clip is None else args.grad_clip, "progress": False,
                 "seed": args.seed, "num_threads": args.threads, "checkpoint_every": 0, "log_every": per_epoch}
    t0 = time.perf_counter()
    res = run_train("vae", DATA, out, False, overrides, {}, {}, our_settings(args.latent_dim))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": res.steps, "images": res.images_seen,
            "images_per_sec": res.images_seen / seconds, "loop_seconds": res.seconds,
            "loop_images_per_sec": res.images_seen / res.seconds, "final_epoch_train_loss": res.final_loss,
            "run_dir": str(out)}


def pythae_model(latent_dim: int):
    """pythae's VAE with its default MNIST MLPs (``Encoder_VAE_MLP``, ``Decoder_AE_MLP``) and the BCE loss."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.nn.default_architectures import Decoder_AE_MLP, Encoder_VAE_MLP

    model = VAE(VAEConfig(input_dim=SHAPE, latent_dim=latent_dim, reconstruction_loss="bce"))
    assert type(model.encoder) is Encoder_VAE_MLP and type(model.decoder) is Decoder_AE_MLP
    return model


def train_pythae(args: argparse.Namespace, x01: torch.Tensor, out: Path) -> dict:
    """pythae's ``TrainingPipeline`` for ``args.epochs`` epochs; returns timing, losses and its model folder."""
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    class History(TrainingCallback):
        """Records pythae's per-epoch mean training loss."""

        def __init__(self) -> None:
            self.train_loss: list[float] = []
            self.begin = self.end = math.nan

        def on_train_begin(self, training_config, **kwargs) -> None:
            """Time the start of the training loop (after pythae's setup)."""
            self.begin = time.perf_counter()

        def on_train_end(self, training_config, **kwargs) -> None:
            """Time its end (after the final model is saved)."""
            self.end = time.perf_counter()

        def on_log(self, training_config, logs, **kwargs) -> None:
            """Append the epoch's ``train_epoch_loss``."""
            self.train_loss.append(float(logs["train_epoch_loss"]))

    torch.manual_seed(args.seed)  # the initial weights (pythae seeds again, with the same seed, before training)
    model = pythae_model(args.latent_dim)
    config = BaseTrainerConfig(output_dir=str(out), num_epochs=args.epochs, learning_rate=args.lr,
                               per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                               optimizer_cls="Adam", scheduler_cls=None, steps_saving=None, steps_predict=None,
                               seed=args.seed, no_cuda=True, amp=False)
    history = History()
    t0 = time.perf_counter()
    pipeline = TrainingPipeline(model=model, training_config=config)
    pipeline(train_data=x01, callbacks=[history])
    seconds = time.perf_counter() - t0
    trainer = pipeline.trainer
    assert trainer.device == "cpu" and trainer.eval_loader is None
    steps = args.epochs * len(trainer.train_loader)
    images = args.epochs * len(trainer.train_loader.dataset)
    last = out / "last_weights.pt"  # the weights after the last epoch (pythae saves the best-on-train ones)
    torch.save(model.state_dict(), last)
    losses = history.train_loss
    loop = history.end - history.begin
    return {"seconds": seconds, "steps": steps, "images": images, "images_per_sec": images / seconds,
            "loop_seconds": loop, "loop_images_per_sec": images / loop, "final_epoch_train_loss": losses[-1],
            "best_epoch": 1 + min(range(len(losses)), key=losses.__getitem__),  # pythae's rule: the first minimum
            "final_model_dir": str(Path(trainer.training_dir) / "final_model"), "last_weights": str(last)}


def worker(args: argparse.Namespace) -> dict:
    """One process: train both models (in ``args.order``) on the train split, timing each call."""
    torch.set_num_threads(args.threads)
    # import everything first, so neither timed call pays the other's imports
    import accelerate  # noqa: F401
    import pythae.pipelines
    import pythae.trainers  # noqa: F401

    import genmodels.cli
    import genmodels.train  # noqa: F401
    from genmodels.data import load_dataset

    ds = load_dataset(DATA)
    x01 = ((ds.train + 1) / 2).float()  # {−1, 1} -> {0, 1}
    assert set(x01.unique().tolist()) <= {0.0, 1.0}
    per_epoch = steps_per_epoch(len(ds.train))
    work = Path(args.work_dir)
    out = {}
    for name in args.order.split(","):
        if name == "ours":
            out["ours"] = train_ours(args, args.epochs * per_epoch, per_epoch, work / "ours")
        else:
            out["pythae"] = train_pythae(args, x01, work / "pythae")
        print(f"  [pid {os.getpid()}] {name}: {out[name]['seconds']:.1f} s, "
              f"{out[name]['images_per_sec']:.0f} img/s", file=sys.stderr, flush=True)
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "order": args.order, "models": out,
            "ratio": out["ours"]["images_per_sec"] / out["pythae"]["images_per_sec"],
            "loop_ratio": out["ours"]["loop_images_per_sec"] / out["pythae"]["loop_images_per_sec"]}


def workers(args: argparse.Namespace, work: Path) -> list[tuple[str, list[str]]]:
    """``(label, command)`` of the ``args.processes`` training processes, alternating which model trains first,
    for :func:`_machine.run_workers` (which runs them one after another)."""
    out = []
    for p in range(args.processes):
        order = "ours,pythae" if p % 2 == 0 else "pythae,ours"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--work-dir", str(work / f"p{p}"),
               "--order", order, "--epochs", str(args.epochs), "--latent-dim", str(args.latent_dim),
               "--lr", str(args.lr), "--warmup-steps", str(args.warmup_steps),
               "--grad-clip", "none" if args.grad_clip is None else str(args.grad_clip),
               "--threads", str(args.threads), "--seed", str(args.seed)]
        out.append((f"process {p + 1}/{args.processes} ({order})", cmd))
    return out


# --------------------------------------------------------------------------- evaluation (main process)
def our_vae(latent_dim: int, spec):
    """Our VAE of the matched architecture (untrained)."""
    from genmodels.nets.coders import CoderConfig
    from genmodels.vae.vae import VAE, VAEConfig

    cfg = VAEConfig(latent_dim=latent_dim, coder=CoderConfig(backbone="mlp", hidden=HIDDEN, depth=1,
                                                             activation="relu"))
    return VAE(cfg, spec)


def adapter_from_pythae(pm, latent_dim: int, spec):
    """Our ``VAE`` carrying a trained pythae VAE's weights, so our estimator evaluates pythae's model.

    pythae's encoder reads x01 ∈ {0, 1}; ours reads x = 2·x01 − 1, so its first layer is folded:
    W·x01 + b = (W/2)·x + (b + W·1/2). The (μ, log σ²) heads are concatenated into ``to_posterior``
    (our ``chunk(2)`` takes μ first). pythae's decoder ends in Linear + sigmoid; ours outputs the Linear's
    logits, so its weights map 1:1.
    """
    m = our_vae(latent_dim, spec)
    enc, dec = pm.encoder, pm.decoder
    w0, b0 = enc.layers[0][0].weight.detach().double(), enc.layers[0][0].bias.detach().double()
    sd = {
        "train_steps": torch.zeros((), dtype=torch.int64),
        "encoder.net.0.weight": (w0 / 2).float(),
        "encoder.net.0.bias": (b0 + w0.sum(1) / 2).float(),
        "to_posterior.weight": torch.cat([enc.embedding.weight, enc.log_var.weight]).detach(),
        "to_posterior.bias": torch.cat([enc.embedding.bias, enc.log_var.bias]).detach(),
        "decoder.net.0.weight": dec.layers[0][0].weight.detach(),
        "decoder.net.0.bias": dec.layers[0][0].bias.detach(),
        "decoder.net.2.weight": dec.layers[1][0].weight.detach(),
        "decoder.net.2.bias": dec.layers[1][0].bias.detach(),
    }
    m.load_state_dict(sd, strict=True)
    return m.eval()


@torch.no_grad()
def adapter_check(pm, adapter, x: torch.Tensor, seed: int) -> dict:
    """pythae's ``forward`` loss (−ELBO: BCE summed + analytic KL, batch mean, one ε) against our −ELBO
    (``nll_terms(k=1)``) of the adapter at the same ε (torch's global CPU stream and a generator seeded alike
    draw the same normals)."""
    pm.eval()
    x01 = (x + 1) / 2
    torch.manual_seed(seed)
    out = pm({"data": x01})
    g = torch.Generator().manual_seed(seed)
    r = adapter.nll_terms(x, g, k=1)
    ours = {"loss": r.nll.mean().item(), "recon": r.terms["reconstruction"].mean().item(),
            "kl": r.terms["kl_z"].mean().item()}
    theirs = {"loss": out.loss.item(), "recon": out.recon_loss.item(), "kl": out.reg_loss.item()}
    rel = {k: abs(ours[k] - theirs[k]) / abs(theirs[k]) for k in ours}
    # the mapping itself, free of pythae's BCE clamp (log ≥ −100 on probabilities that round to 0 or 1)
    enc = pm.encoder(x01)
    mu, logvar = adapter.posterior(x)
    probs = torch.sigmoid(adapter.decode(out.z)).reshape(out.recon_x.shape)
    mapping = {"mu": (mu - enc.embedding).abs().max().item(),
               "logvar": (logvar - enc.log_covariance).abs().max().item(),
               "decoder_probability": (probs - out.recon_x).abs().max().item()}
    saturated = int(((out.recon_x == 0) | (out.recon_x == 1)).sum())
    return {"images": len(x), "pythae": theirs, "adapter": ours, "relative_difference": rel,
            "mapping_max_abs_difference": mapping, "pythae_saturated_probabilities": saturated,
            "mapping_passed": max(mapping.values()) < 1e-4, "passed": rel["loss"] < 1e-4}


@torch.no_grad()
def iwae(model, x: torch.Tensor, k: int, seed: int, batch: int) -> dict:
    """−IWAE_k and −ELBO (the ELBO averaged over the same k samples) per test image, nats, by our estimator."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    nll, elbo, recon, kl = [], [], [], []
    t0 = time.perf_counter()
    for xb in x.split(batch):
        r = model.nll_terms(xb, g, k=k)
        recon.append(r.terms["reconstruction"])
        kl.append(r.terms["kl_z"])
        elbo.append(r.terms["reconstruction"] + r.terms["kl_z"])
        nll.append(r.nll)
    nll, elbo, recon, kl = (torch.cat(v).double() for v in (nll, elbo, recon, kl))
    n = len(nll)
    return {"per_image_nll": nll, "iwae_nll": nll.mean().item(), "iwae_se": (nll.std() / math.sqrt(n)).item(),
            "elbo_nll": elbo.mean().item(), "elbo_se": (elbo.std() / math.sqrt(n)).item(),
            "reconstruction": recon.mean().item(), "kl": kl.mean().item(), "seconds": time.perf_counter() - t0}


def pythae_get_nll(pm, x01: torch.Tensor, k: int, seed: int) -> dict:
    """pythae's own estimate, ``-model.get_nll(data, n_samples, batch_size)``.

    Its quirks (pythae 0.1.2, ``VAE.get_nll``): it returns the mean *log*-likelihood (a negative number), not
    the NLL; it draws ``batch_size`` samples per pass and makes ``max(1, n_samples // batch_size)`` passes, so it
    uses ``batch_size`` samples when ``n_samples ≤ batch_size`` and ``⌊n_samples/batch_size⌋·batch_size``
    otherwise; it loops over the images one at a time, re-encoding each copy, and runs without ``no_grad``
    (we add it; the numbers are the same).
    """
    bs = min(k, 1000)
    k_eff = bs if k <= bs else (k // bs) * bs
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        log_p = pm.get_nll(x01, n_samples=k, batch_size=bs)
    return {"nll": -float(log_p), "n_samples": k, "batch_size": bs, "k_effective": k_eff,
            "seconds": time.perf_counter() - t0}


def count_macs(kind: str, latent_dim: int, spec, x: torch.Tensor) -> dict:
    """Multiply-adds per example of one training step (forward; forward + backward), FlopCounterMode / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    if kind == "ours":
        m = our_vae(latent_dim, spec).train()
        fwd = lambda: m.loss(x).mean()  # noqa: E731
    else:
        m = pythae_model(latent_dim).train()
        fwd = lambda: m({"data": (x + 1) / 2}).loss  # noqa: E731
    with FlopCounterMode(display=False) as fc:
        loss = fwd()
    f = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        loss.backward()
    b = fc.get_total_flops()
    return {"params": sum(p.numel() for p in m.parameters()), "fwd_macs": f / 2 / len(x),
            "fwd_bwd_macs": (f + b) / 2 / len(x)}


def evaluate(args: argparse.Namespace, first: dict) -> dict:
    """Load process 1's trained models and evaluate them on the test split."""
    from pythae.models import VAE as PythaeVAE

    from genmodels.checkpoint import from_pretrained
    from genmodels.data import load_dataset

    torch.set_num_threads(args.eval_threads)
    ds = load_dataset(DATA)
    spec, test = ds.spec, ds.test
    ours_dir = first["models"]["ours"]["run_dir"]
    p = first["models"]["pythae"]
    ours_ema, _ = from_pretrained(ours_dir, ema=True)
    ours_raw, _ = from_pretrained(ours_dir, ema=False)
    assert ours_ema.likelihood == "bernoulli" and ours_ema.config == our_vae(args.latent_dim, spec).config
    pm = PythaeVAE.load_from_folder(p["final_model_dir"]).eval()  # what pythae saved: best on the train loss
    last = torch.load(p["last_weights"], weights_only=True)
    best_is_last = all(torch.equal(last[k], v) for k, v in pm.state_dict().items())
    adapter = adapter_from_pythae(pm, args.latent_dim, spec)
    check = adapter_check(pm, adapter, test[:256], args.seed)
    print(f"adapter check: pythae loss {check['pythae']['loss']:.6f}, adapter {check['adapter']['loss']:.6f}, "
          f"relative difference {check['relative_difference']['loss']:.2e}", file=sys.stderr, flush=True)
    if not check["mapping_passed"]:
        raise SystemExit(f"adapter check failed: the copied weights do not reproduce pythae's networks: {check}")
    if not check["passed"]:  # the networks agree: pythae's clamped BCE on saturated probabilities can explain it
        print(f"WARNING: adapter ELBO differs from pythae's loss by more than 1e-4 relative, with "
              f"{check['pythae_saturated_probabilities']} saturated pythae probabilities: {check}",
              file=sys.stderr, flush=True)
    models = {"ours (EMA)": ours_ema, "ours (raw weights)": ours_raw, "pythae": adapter}
    evals = {}
    for name, m in models.items():  # the same seed: the same ε for every model
        evals[name] = iwae(m, test, args.k, args.seed + 1, args.eval_batch)
        print(f"{name}: -IWAE-{args.k} {evals[name]['iwae_nll']:.3f} ± {evals[name]['iwae_se']:.3f}, "
              f"-ELBO {evals[name]['elbo_nll']:.3f} ({evals[name]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    base = evals["pythae"]["per_image_nll"]
    for name in ("ours (EMA)", "ours (raw weights)"):
        d = evals[name]["per_image_nll"] - base
        evals[name]["delta_vs_pythae"] = d.mean().item()
        evals[name]["delta_vs_pythae_se"] = (d.std() / math.sqrt(len(d))).item()
    for e in evals.values():
        del e["per_image_nll"]
    cross = pythae_get_nll(pm, (test + 1) / 2, args.pythae_nll_k, args.seed + 2)
    print(f"pythae get_nll (k={cross['k_effective']}): {cross['nll']:.3f} ({cross['seconds']:.0f} s)",
          file=sys.stderr, flush=True)
    x = ds.train[:BATCH]
    macs = {"ours": count_macs("ours", args.latent_dim, spec, x), "pythae": count_macs("pythae", args.latent_dim,
                                                                                          spec, x)}
    return {"adapter_check": check, "pythae_best_is_last_epoch": best_is_last, "evals": evals,
            "pythae_get_nll": cross, "macs": macs, "test_images": len(test)}


# --------------------------------------------------------------------------- report
def machine() -> dict:
    """Where the benchmark ran (:func:`_machine.machine`), with pythae's version."""
    import pythae

    return _machine.machine(pythae=getattr(pythae, "__version__", "0.1.2"))


def markdown(res: dict) -> str:
    """The results JSON as the markdown report (tables of NLL, throughput and the checks)."""
    cfg, m, ev, procs = res["config"], res["machine"], res["evaluation"], res["processes"]
    k = cfg["k"]
    macs = ev["macs"]
    rows = []
    for name, key in (("ours (EMA)", "ours"), ("ours (raw weights)", "ours"), ("pythae", "pythae")):
        t = [p["models"][key] for p in procs]
        e = ev["evals"][name]
        per_proc = ", ".join(f"{x['images_per_sec']:.0f}" for x in t)
        delta = (f"{e['delta_vs_pythae']:+.3f} ± {e['delta_vs_pythae_se']:.3f}" if "delta_vs_pythae" in e else "—")
        rows.append(f"| {name} | {macs[key]['params']:,} | {macs[key]['fwd_bwd_macs'] / 1e6:.2f}M | {cfg['epochs']} "
                    f"| {t[0]['steps']} | {t[0]['images']:,} | {statistics.median(x['seconds'] for x in t):.1f} "
                    f"| {statistics.median(x['images_per_sec'] for x in t):.0f} ({per_proc}) "
                    f"| {e['elbo_nll']:.3f} ± {e['elbo_se']:.3f} | **{e['iwae_nll']:.3f}** ± {e['iwae_se']:.3f} "
                    f"| {delta} |")
    s, ls = res["speed"], res["loop_speed"]
    ac, cross = ev["adapter_check"], ev["pythae_get_nll"]
    L = [f"## VAE vs pythae 0.1.2 on {DATA} ({m['date']})", "",
         f"Command: `{res['command']}`", "",
         f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), torch {m['torch']}, pythae {m['pythae']}; commit "
         f"{m['git_commit']}. Training on {cfg['threads']} thread(s), {cfg['processes']} process(es), the two "
         f"trainings alternated (ours first in odd processes); evaluation on {cfg['eval_threads']} thread(s) with "
         f"the models of process 1.", "",
         f"Both: MLP 784→{HIDDEN}→(μ, log σ²) / latent {cfg['latent_dim']}→{HIDDEN}→784 Bernoulli, "
         f"{cfg['epochs']} epoch(s) × {res['steps_per_epoch']} steps of batch {BATCH}, lr {cfg['lr']:g}, "
         f"seed {cfg['seed']}; our encoder reads x ∈ {{−1, 1}}, pythae's x ∈ {{0, 1}} (each library's "
         "convention). "
         f"pythae: TrainingPipeline, Adam, no eval data (keeps and saves the best model on the training loss; "
         f"best = last epoch: {ev['pythae_best_is_last_epoch']}). Ours: `genmodels train vae`, AdamW (decay 0), "
         f"warm-up {cfg['warmup_steps']} steps, gradient clipping {cfg['grad_clip']}, EMA (half-life 50 kimg, "
         f"ramp-up 0.05).", "",
         f"| model | params | MACs/img (fwd+bwd) | epochs | steps | images | train s | img/s (per process) "
         f"| test −ELBO (nats) | test −IWAE-{k} (nats) | Δ −IWAE vs pythae (paired) |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
         f"Bounds over the {ev['test_images']} test images, by our estimator for all three (pythae's weights copied "
         f"into our VAE of the same shape), the same ε for every model; ± is the standard error over test images; "
         f"−ELBO is averaged over the same {k} samples. Lower is better.", "",
         "| speed ratio ours/pythae (img/s; > 1 = ours faster) | median | min | max | per process |",
         "|---|---:|---:|---:|---|",
         f"| whole training call | **{s['median']:.3f}** | {s['min']:.3f} | {s['max']:.3f} | "
         f"{', '.join(f'{v:.3f}' for v in s['per_process'])} |",
         f"| training loop only (note) | {ls['median']:.3f} | {ls['min']:.3f} | {ls['max']:.3f} | "
         f"{', '.join(f'{v:.3f}' for v in ls['per_process'])} |", "",
         "Whole call: pythae's `TrainingPipeline(...)(train_data=...)`; our `run_train` (dataset loading, model "
         "build, accelerate setup, the loop, the final checkpoint). Loop only: our `TrainResult.seconds`; pythae from "
         "its `on_train_begin` to `on_train_end` callbacks (per-epoch best-model copies and the final save included). "
         f"Same final training loss in every process (determinism): {res['same_final_loss_in_every_process']}.", "",
         f"Adapter check (pythae's `forward` loss vs our −ELBO of the copied weights, same ε, {ac['images']} test "
         f"images): pythae {ac['pythae']['loss']:.5f}, ours {ac['adapter']['loss']:.5f}, relative difference "
         f"{ac['relative_difference']['loss']:.1e} (reconstruction {ac['relative_difference']['recon']:.1e}, KL "
         f"{ac['relative_difference']['kl']:.1e}); {'passed' if ac['passed'] else 'NOT passed'} (tolerance 1e-4). "
         f"The networks themselves: max |Δ| of μ {ac['mapping_max_abs_difference']['mu']:.1e}, log σ² "
         f"{ac['mapping_max_abs_difference']['logvar']:.1e}, decoder probabilities "
         f"{ac['mapping_max_abs_difference']['decoder_probability']:.1e}; pythae probabilities rounded to exactly "
         f"0 or 1 (where its BCE clamps log at −100): {ac['pythae_saturated_probabilities']}.", "",
         f"pythae's own `get_nll` on its model: {cross['nll']:.3f} nats (k = {cross['k_effective']}: n_samples "
         f"{cross['n_samples']}, batch_size {cross['batch_size']}; it returns the mean log-likelihood, negated "
         f"here) against our IWAE-{k} on the same weights {ev['evals']['pythae']['iwae_nll']:.3f} ± "
         f"{ev['evals']['pythae']['iwae_se']:.3f}.", ""]
    return "\n".join(L)


def main() -> None:
    """Parse the flags, run the worker processes, evaluate, write the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=50, help="training epochs of pythae (ours: the same steps)")
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--k", type=int, default=5000, help="importance samples of the IWAE bound (default 5000)")
    ap.add_argument("--pythae-nll-k", type=int, default=None, help="n_samples of pythae's get_nll (default: --k)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (both; default 1)")
    ap.add_argument("--eval-threads", type=int, default=None, help="torch threads for evaluation (default: nproc)")
    ap.add_argument("--eval-batch", type=int, default=100, help="test images per nll_terms call (default 100)")
    ap.add_argument("--processes", type=int, default=3, help="separate training processes (default 3)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=20, help="our linear LR warm-up (pythae has none)")
    ap.add_argument("--grad-clip", type=lambda s: None if s.lower() == "none" else float(s), default=1.0,
                    help="our gradient clipping, a max norm or 'none' (default 1.0, our default; pythae: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "vae_vs_pythae.json",
                    help="JSON results; the markdown goes beside it as .md")
    ap.add_argument("--keep", action="store_true", help="keep the trained runs (printed folder)")
    ap.add_argument("--worker", action="store_true", help="internal: one training process, JSON on stdout")
    ap.add_argument("--work-dir", help="internal: the worker's folder")
    ap.add_argument("--order", default="ours,pythae", help="internal: training order in a worker")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.processes < 1 or args.epochs < 1 or args.k < 1:
        ap.error("--processes, --epochs and --k must be ≥ 1")
    args.pythae_nll_k = args.pythae_nll_k or args.k
    args.eval_threads = args.eval_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                              else os.cpu_count())

    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="vae_vs_pythae_"))
    try:
        procs = _machine.run_workers(workers(args, work))
        evaluation = evaluate(args, procs[0])
    finally:
        if args.keep:
            print(f"trained runs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    per = [p["ratio"] for p in procs]
    lp = [p["loop_ratio"] for p in procs]
    same = {k: len({p["models"][k]["final_epoch_train_loss"] for p in procs}) == 1 for k in ("ours", "pythae")}
    from genmodels.data import load_dataset

    res = {"command": " ".join(["python", "benchmarks/vae_vs_pythae.py", *sys.argv[1:]]), "machine": machine(),
           "config": {"data": DATA, "epochs": args.epochs, "latent_dim": args.latent_dim, "k": args.k,
                      "pythae_nll_k": args.pythae_nll_k, "threads": args.threads, "eval_threads": args.eval_threads,
                      "processes": args.processes, "lr": args.lr, "warmup_steps": args.warmup_steps,
                      "grad_clip": args.grad_clip, "batch": BATCH, "seed": args.seed,
                      "ours_settings": our_settings(args.latent_dim)},
           "steps_per_epoch": steps_per_epoch(len(load_dataset(DATA).train)),
           "processes": procs, "same_final_loss_in_every_process": same,
           "speed": {"median": statistics.median(per), "min": min(per), "max": max(per), "per_process": per},
           "loop_speed": {"median": statistics.median(lp), "min": min(lp), "max": max(lp), "per_process": lp},
           "evaluation": evaluation}
    res["wall_seconds"] = time.perf_counter() - t_start
    _machine.write_results(res, args.out, markdown(res))


if __name__ == "__main__":
    main()
