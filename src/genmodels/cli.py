"""The ``genmodels`` command line: a thin typed layer over the library.

    genmodels demo                                   # the main job on an embedded dataset
    genmodels train ddpm --data fashion-mnist --minutes 30 --out runs/fmnist
    genmodels sample runs/fmnist --n 64 --sampler ddim --steps 50
    genmodels evaluate runs/fmnist --split test      # JSON: bits/dim with its parts and standard error
    genmodels evaluate runs/fmnist --likelihood ode --limit 200     # bits/dim through the probability-flow ODE
    genmodels evaluate runs/fmnist --sampler dpm++,heun --nfe 5,10,20,50   # sample quality against NFE
    genmodels pictures runs/fmnist                   # forward strip, reverse trajectory, schedule, loss curve
    genmodels datasets
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

import typer

app = typer.Typer(help="Train, sample and evaluate likelihood-based generative models, in bits/dim.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError)


def _friendly(fn: Callable) -> Callable:
    """Turn the library's clear errors into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        """Run the command; a library error becomes ``error: …`` and exit status 2."""
        try:
            return fn(*args, **kwargs)
        except _ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return wrapper


def _ints(text: str) -> tuple[int, ...]:
    """'1,2,2' -> (1, 2, 2)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers like '1,2,2', got {text!r}") from None


# ---------------------------------------------------------------------------------------------- building


def default_ddpm_config(spec, **overrides: Any):
    """The DDPM preset for a dataset: a UNet sized to the image (two levels up to 16 px, three above,
    attention at the lowest level only), or the MLP for vectors. x̂_0 is clipped to [−1, 1] when sampling only
    for discrete data (which lives there); continuous data such as the 2-D toys is not bounded so.
    ``overrides`` replace top-level fields."""
    from .diffusion.ddpm import DDPMConfig
    from .nets.unet import UNetConfig

    cfg = DDPMConfig(clip_x0=spec.is_discrete)
    if spec.is_image and max(spec.event_shape[1:]) <= 16:
        cfg = replace(cfg, unet=UNetConfig(channel_mult=(1, 2), attn_levels=(1,)))
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _load(run: Path, raw: bool):
    from .checkpoint import from_pretrained

    model, run_config = from_pretrained(run, ema=not raw)
    model.eval()
    return model, run_config


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def _progress(enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return functools.partial(tqdm, desc=desc, leave=False, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- the jobs


def run_train(model_name: str, data: str, out: Path, resume: bool, train_overrides: dict[str, Any],
              model_overrides: dict[str, Any], unet_overrides: dict[str, Any]):
    """Build (or reload, with ``resume``) a run and train it. Returns the :class:`TrainResult`."""
    import genmodels  # noqa: F401  (registers the model families)

    from .checkpoint import RunConfig, load_run_config
    from .data import load_dataset
    from .registry import MODELS
    from .train import Trainer, TrainConfig, model_sample_fn

    if resume:
        saved = load_run_config(out)
        if data and data != saved.data:
            raise ValueError(f"--data {data!r} differs from the run's dataset {saved.data!r}; omit --data to resume")
        run_config = saved
        train_cfg = replace(saved.train or TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
        dataset = load_dataset(saved.data)
    else:
        if not data:
            raise ValueError("--data is required (see `genmodels datasets`)")
        dataset = load_dataset(data)
        if model_name != "ddpm":
            raise ValueError(f"unknown model {model_name!r}; known models: {', '.join(MODELS.names())}")
        cfg = default_ddpm_config(dataset.spec, **model_overrides)
        unet = {k: v for k, v in unet_overrides.items() if v is not None}
        if unet:
            cfg = replace(cfg, unet=replace(cfg.unet, **unet))
        run_config = RunConfig(model=model_name, model_config=cfg, data=data, spec=dataset.spec)
        train_cfg = replace(TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
    entry = MODELS.get(run_config.model)
    import torch

    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = entry.build(run_config.model_config, run_config.spec)
    sample_fn = model_sample_fn(train_cfg.n_sample, sampler="ddim", steps=50) if train_cfg.sample_every else None
    trainer = Trainer(model, dataset.train, dataset.spec, train_cfg, out, run_config, sample_fn)
    try:
        return trainer.fit(resume=resume)
    finally:
        # the program owns the process group (under torchrun): destroy it before exit, or gloo can abort at
        # interpreter shutdown ("terminate called without an active exception") after a successful run
        trainer.accelerator.end_training()


def run_sample(run: Path, n: int, sampler: str, steps: Optional[int], eta: float, seed: int, out: Optional[Path],
               raw: bool, progress: bool, batch_size: int = 100) -> dict:
    """Sample ``n`` images from a run into a PNG grid (and ``.npz``). Returns what was written."""
    import time

    import numpy as np

    from .viz import save_grid

    from .diffusion.samplers import sample_in_batches

    model, _ = _load(run, raw)
    steps = steps or model.T
    start = time.perf_counter()
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    res = sample_in_batches(model, n, sampler, steps=steps, generator=_generator(seed), batch_size=batch_size,
                            progress=_progress(progress, f"{sampler} {steps} steps, batches of {batch_size}"), **kwargs)
    x = res.x0
    seconds = time.perf_counter() - start
    out = out or run / "samples" / f"{sampler}_{steps}.png"
    if model.spec.is_image:
        save_grid(x, out, scale=max(1, 64 // x.shape[-1]))  # small images upscaled to ~64 px tiles
    else:
        save_grid(x, out)
    np.savez_compressed(out.with_suffix(".npz"), x=x.numpy())
    return {"picture": str(out), "samples": str(out.with_suffix(".npz")), "n": n, "sampler": sampler,
            "steps": steps, "eta": eta, "nfe": res.nfe, "seconds": round(seconds, 2), "weights": "raw" if raw else "ema"}


def _load_split(run: Path, raw: bool, split: str, limit: Optional[int]):
    """(model, run_config, dataset, x): a run and the first ``limit`` examples of its ``split``."""
    from .data import load_dataset

    if split not in ("test", "train"):
        raise ValueError(f"--split must be 'test' or 'train', got {split!r}")
    model, run_config = _load(run, raw)
    dataset = load_dataset(run_config.data)
    x = dataset.test if split == "test" else dataset.train
    return model, run_config, dataset, x[:limit] if limit else x


def run_evaluate(run: Path, split: str, limit: Optional[int], t_samples: int, exact: bool, calibrate: bool,
                 batch_size: int, seed: int, raw: bool, progress: bool) -> dict:
    """The NLL (bound) of a split in bits/dim, as a JSON-ready dict (same keys for every family)."""
    from .metrics.likelihood import evaluate_nll

    model, run_config, dataset, x = _load_split(run, raw, split, limit)
    g = _generator(seed)
    kwargs: dict[str, Any] = {}
    if run_config.model == "ddpm":
        kwargs = {"exact": True} if exact else {"t_samples": t_samples}
        if calibrate and not exact:
            # pilot on training examples (never the evaluated ones), so the estimate stays unbiased
            kwargs["proposal"] = model.calibrate_proposal(dataset.train[:128], _generator(seed + 1), grid=32)
    report = evaluate_nll(model, x, batch_size=batch_size, generator=g, progress=_progress(progress, "evaluate"),
                          **kwargs)
    result = {"model": run_config.model, "data": run_config.data, "split": split, "weights": "raw" if raw else "ema",
              **report.to_json(), **_true_nll(run_config.data, x)}
    if "proposal" in kwargs:
        result["estimator"]["proposal"] = "calibrated on 128 training examples, 32 steps"
    return result


def _nfe_spec(text: str) -> dict[str, list[int]]:
    """'5,10,20;ancestral=20,1000' -> {'*': [5, 10, 20], 'ancestral': [20, 1000]}."""
    spec: dict[str, list[int]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, _, values = part.rpartition("=")
        spec[name.strip() or "*"] = list(_ints(values))
    return spec


def run_sweep(run: Path, samplers: list[str], nfes: dict[str, list[int]], n: int, seed: int, tolerances: list[float],
              batch_size: int, raw: bool, progress: bool, inception_weights: Optional[Path] = None) -> dict:
    """Sample quality against NFE and wall time for each sampler (:func:`genmodels.metrics.nfe_sweep.nfe_sweep`);
    writes RUN/nfe_sweep/{sweep.json, sweep.md, sweep.png} and returns the JSON."""
    from .checkpoint import atomic_write_text
    from .data import load_dataset
    from .metrics.nfe_sweep import nfe_sweep, sweep_table
    from .metrics.sample_quality import sample_quality
    from .viz import save_quality_vs_cost

    model, run_config = _load(run, raw)
    if run_config.model != "ddpm":
        raise ValueError(f"--sampler/--nfe sweep diffusion samplers; this run is a {run_config.model!r} model")
    dataset = load_dataset(run_config.data)
    out_dir = run / "nfe_sweep"

    def quality(x):
        """Scores of samples ``x`` against the test split, with their floors."""
        return sample_quality(x, dataset, generator=_generator(seed), inception_weights=inception_weights)

    image = model.spec.is_image and inception_weights is None
    key = "fd" if model.spec.is_image else "sliced_w2"
    metrics = ("fd", "kid", "precision", "recall") if model.spec.is_image else ("sliced_w2", "w2", "mmd2")

    def report(row) -> None:
        """One progress line per finished sweep row, on stderr."""
        typer.echo(f"{row.sampler:15s} NFE {row.nfe:5d}  {key} {row.quality.get(key, float('nan')):.4g}  "
                   f"{row.seconds_per_sample:.3f} s/sample", err=True)

    rows = nfe_sweep(model, samplers, nfes, quality, n=n, seed=seed, batch_size=batch_size,
                     ode_tolerances=tolerances, cache_dir=out_dir / "samples",
                     progress=_progress(progress, "batches"), on_row=report)
    floor = {k: v for k, v in rows[0].quality.items() if k.endswith("_floor")}  # the same for every row
    curves: dict[str, list] = {}
    for r in rows:
        curves.setdefault(r.sampler, []).append((r.nfe, max(r.seconds_per_sample, 1e-9), r.quality[key]))
    label = {"fd": "FD, classifier features" if image else "FID, Inception", "sliced_w2": "sliced W2"}[key]
    picture = save_quality_vs_cost(curves, out_dir / "sweep.png", floor=floor.get(f"{key}_floor"),
                                   metric=f"{label} ({n} samples)")
    result = {"run": str(run), "data": run_config.data, "n": n, "seed": seed, "weights": "raw" if raw else "ema",
              "floor": floor, "rows": [r.to_json() for r in rows], "picture": str(picture)}
    table = sweep_table(rows, metrics=metrics, floor={k.removesuffix("_floor"): v for k, v in floor.items()})
    atomic_write_text(out_dir / "sweep.md", table + "\n")
    atomic_write_text(out_dir / "sweep.json", json.dumps(result, indent=2, default=float) + "\n")
    return result


def _true_nll(data: str, x) -> dict:
    """For a toy whose density is known: the true data NLL of the same points, bits/dim (else {})."""
    import math

    from .core import nats_to_bpd
    from .data import DataError
    from .data.toys import toy_has_density, toy_log_density

    try:
        if not toy_has_density(data):
            return {}
    except DataError:
        return {}
    bpd = nats_to_bpd(-toy_log_density(data, x).double(), x.shape[1])
    return {"true_data_bpd": bpd.mean().item(), "true_data_bpd_stderr": (bpd.std() / math.sqrt(len(bpd))).item()}


def run_evaluate_ode(run: Path, split: str, limit: Optional[int], batch_size: int, seed: int, raw: bool,
                     progress: bool, rtol: float, atol: float, hutchinson_samples: int) -> dict:
    """Bits/dim through the probability-flow ODE (:func:`genmodels.metrics.likelihood.evaluate_ode_nll`)."""
    from .metrics.likelihood import evaluate_ode_nll

    model, run_config, _, x = _load_split(run, raw, split, limit)
    if run_config.model != "ddpm":
        raise ValueError(f"--likelihood ode needs a diffusion model; this run is a {run_config.model!r} model")
    report = evaluate_ode_nll(model, x, batch_size=batch_size, generator=_generator(seed), rtol=rtol, atol=atol,
                              hutchinson_samples=hutchinson_samples, progress=_progress(progress, "ODE likelihood"))
    return {"model": run_config.model, "data": run_config.data, "split": split, "likelihood": "ode",
            "weights": "raw" if raw else "ema", **report.to_json(), **_true_nll(run_config.data, x)}


def write_pictures(run: Path, seed: int = 0, n: int = 8) -> list[str]:
    """Forward-process strip, reverse trajectory (strip and GIF), schedule plot and loss curve of a run."""
    import torch

    from .data import load_dataset
    from .diffusion import gaussian as G
    from .diffusion.samplers import ancestral
    from .diffusion.schedules import DiscreteSchedule, ScheduleConfig
    from .viz import save_gif, save_loss_curve, save_schedule_plot, save_strip

    model, run_config = _load(run, raw=False)
    figs = run / "figures"
    written = []
    g = _generator(seed)
    T = model.T
    ts = sorted({0, T // 10, T // 4, T // 2, 3 * T // 4, T - 1})
    if model.spec.is_image or model.spec.event_shape == (2,):
        x0 = load_dataset(run_config.data).test[: (n if model.spec.is_image else 500)]
        frames = [x0] + [G.q_sample(x0, model.schedule.logsnr[t].expand(len(x0)),
                                    torch.randn(x0.shape, generator=g)) for t in ts]
        scale = {"scale": max(1, 32 // model.spec.event_shape[-1])} if model.spec.is_image else {}
        written.append(save_strip(torch.stack(frames), figs / "forward.png", ["x0"] + [f"t={t + 1}" for t in ts],
                                  **scale))
        out = ancestral(model, n if model.spec.is_image else 500, steps=T, generator=g, keep_trajectory=True)
        keep = sorted({0, T // 4, T // 2, 3 * T // 4, 9 * T // 10, T})  # trajectory[k] is x_{T−k}
        written.append(save_strip(out.trajectory[keep], figs / "reverse.png",
                                  [f"t={T - k}" if k < T else "x0" for k in keep], **scale))
        if model.spec.is_image:
            gif_idx = list(range(0, T + 1, max(1, T // 50))) + [T]
            written.append(save_gif(out.trajectory[gif_idx], figs / "reverse.gif"))
    sched = {k: DiscreteSchedule.from_config(ScheduleConfig(kind=k, T=T)) for k in ("linear", "cosine")}
    written.append(save_schedule_plot({k: (s.alphas_cumprod, s.logsnr) for k, s in sched.items()},
                                      figs / "schedule.png"))
    if (run / "metrics.jsonl").is_file():
        written.append(save_loss_curve(run / "metrics.jsonl", figs / "loss.png"))
    return [str(p) for p in written]


# ---------------------------------------------------------------------------------------------- commands


@app.command()
@_friendly
def train(
    model: str = typer.Argument("ddpm", help="Model family (see `genmodels models`): ddpm."),
    data: str = typer.Option("", "--data", "-d", help="Dataset name or idx:DIR / folder:DIR / npz:FILE."),
    out: Path = typer.Option(Path("runs/ddpm"), "--out", "-o", help="Run folder (config.json, weights, metrics)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps in total [default 10000]."),
    minutes: Optional[float] = typer.Option(None, help="Stop cleanly (with a checkpoint) after this many minutes."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size [default 64]."),
    lr: Optional[float] = typer.Option(None, help="Peak AdamW learning rate [default 2e-4]."),
    ema_halflife_kimg: Optional[float] = typer.Option(None, help="EMA half-life in thousands of images."),
    seed: Optional[int] = typer.Option(None, help="Seed of weights, data order and noise [default 0]."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Steps between checkpoints."),
    sample_every: Optional[int] = typer.Option(None, help="Steps between sample grids (0: none)."),
    log_every: Optional[int] = typer.Option(None, help="Steps between metrics.jsonl lines."),
    threads: Optional[int] = typer.Option(None, help="torch threads for this process."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    parameterization: Optional[str] = typer.Option(None, help="Network output: eps | x0 | v [default eps]."),
    loss: Optional[str] = typer.Option(None, help="simple | x0 | v | elbo | min_snr [default simple]."),
    variance: Optional[str] = typer.Option(None, help="Reverse variance: fixed_small | fixed_large."),
    schedule: Optional[str] = typer.Option(None, help="Noise schedule: linear | cosine [default linear]."),
    T: Optional[int] = typer.Option(None, "--T", help="Diffusion steps [default 1000]."),
    channels: Optional[int] = typer.Option(None, help="UNet base width [default 32]."),
    channel_mult: Optional[str] = typer.Option(None, help="UNet widths per level, e.g. 1,2,2."),
    num_res_blocks: Optional[int] = typer.Option(None, help="UNet residual blocks per level [default 2]."),
    attn_levels: Optional[str] = typer.Option(None, help="UNet levels with self-attention, e.g. 2."),
) -> None:
    """Train a model on a dataset; a run folder holds everything needed to resume, sample and evaluate."""
    from .diffusion.schedules import ScheduleConfig

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train_overrides = dict(steps=steps, batch_size=batch_size, lr=lr, ema_halflife_kimg=ema_halflife_kimg, seed=seed,
                           checkpoint_every=checkpoint_every, sample_every=sample_every, log_every=log_every,
                           time_limit_minutes=minutes, num_threads=threads, progress=progress)
    model_overrides: dict[str, Any] = dict(parameterization=parameterization, loss=loss, variance=variance)
    if schedule or T:
        model_overrides["schedule"] = ScheduleConfig(kind=schedule or "linear", T=T or 1000)
    unet_overrides = dict(channels=channels, channel_mult=_ints(channel_mult) if channel_mult else None,
                          num_res_blocks=num_res_blocks, attn_levels=_ints(attn_levels) if attn_levels else None)
    result = run_train(model, data, out, resume, train_overrides, model_overrides, unet_overrides)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one summary line (rank 0)
        return
    typer.echo(json.dumps({"run": str(result.run_dir), "steps": result.steps, "images_seen": result.images_seen,
                           "minutes": round(result.seconds / 60, 2), "final_loss": result.final_loss,
                           "stop_reason": result.stop_reason}))


@app.command()
@_friendly
def sample(
    run: Path = typer.Argument(..., help="Run folder."),
    n: int = typer.Option(64, help="Number of samples."),
    sampler: str = typer.Option("ancestral", help="ancestral | ddim | dpm++ | heun | euler_maruyama | ode."),
    steps: Optional[int] = typer.Option(None, help="Steps / noise levels (Heun: 2N−1 NFE) [default: all T]."),
    eta: float = typer.Option(0.0, help="DDIM η (0: deterministic, 1: ancestral)."),
    seed: int = typer.Option(0, help="Seed of the sampler's noise."),
    out: Optional[Path] = typer.Option(None, help="PNG path [default RUN/samples/SAMPLER_STEPS.png]."),
    raw: bool = typer.Option(False, "--raw", help="Use the raw weights instead of the EMA weights."),
    batch_size: int = typer.Option(100, help="Samples drawn at once (≈100 is fastest on CPU)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Draw samples from a run into a PNG grid and an .npz file; prints what it wrote as JSON."""
    typer.echo(json.dumps(run_sample(run, n, sampler, steps, eta, seed, out, raw, progress, batch_size)))


@app.command()
@_friendly
def evaluate(
    run: Path = typer.Argument(..., help="Run folder."),
    split: str = typer.Option("test", help="test | train."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N examples."),
    t_samples: int = typer.Option(4, help="DDPM: stratified importance-sampled steps per example."),
    exact: bool = typer.Option(False, "--exact", help="DDPM: sum all T steps (T evaluations per example)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="DDPM: fit the step proposal on 128 training examples first."),
    batch_size: int = typer.Option(100, help="Examples per batch (≈100 is fastest on CPU)."),
    seed: int = typer.Option(0),
    raw: bool = typer.Option(False, "--raw", help="Use the raw weights instead of the EMA weights."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    out: Optional[Path] = typer.Option(None, help="Also write the JSON here [default RUN/eval_SPLIT.json]."),
    likelihood: str = typer.Option("bound", help="bound (the ELBO, DDPM Eq. 5) | ode (probability-flow ODE, "
                                                 "Song et al. 2021, App. D; slow: use --limit)."),
    rtol: float = typer.Option(1e-5, help="ODE likelihood: solver rtol."),
    atol: float = typer.Option(1e-5, help="ODE likelihood: solver atol."),
    hutchinson_samples: int = typer.Option(1, help="ODE likelihood: probe vectors per image (images only)."),
    sampler: Optional[str] = typer.Option(None, help="Sample quality instead of likelihood: comma-separated "
                                                      "samplers (ancestral,ddim,dpm++,heun,euler_maruyama,ode), "
                                                      "options in brackets: 'ddim[eta=0.5],heun[s_churn=40]'."),
    nfe: str = typer.Option("5,10,20,50", help="Sample quality: NFE budgets, e.g. 5,10,20,50,1000; per sampler "
                                             "after ';', e.g. '5,10,20,50;ancestral=20,1000'."),
    n: int = typer.Option(500, help="Sample quality: samples per point (the floor uses as many real images)."),
    tol: str = typer.Option("1e-2,1e-3", help="Sample quality: rtol=atol values of the adaptive 'ode' sampler."),
    inception_weights: Optional[Path] = typer.Option(None, help="Sample quality: also FID with this Inception "
                                                                "weights file (needs genmodels[inception])."),
) -> None:
    """Evaluate a run, printing JSON.

    Default: the split's NLL (an upper bound for DDPM) in bits/dim: bpd, bpd_stderr, terms_bpd (prior = L_T,
    diffusion = Σ L_t, reconstruction = L_0), examples, seconds. ``--likelihood ode``: bits/dim through the
    probability-flow ODE. ``--sampler``: the NFE sweep of sample quality (Fréchet distance on the dataset's own
    classifier, KID, precision/recall, with the test-vs-train floor), written to RUN/nfe_sweep/.
    """
    from .checkpoint import atomic_write_text

    if sampler:
        names, depth, cur = [], 0, ""
        for ch in sampler + ",":  # split on commas outside brackets: "ddim,heun[s_churn=40,s_noise=1]"
            depth += (ch == "[") - (ch == "]")
            if ch == "," and depth == 0:
                names += [cur.strip()] if cur.strip() else []
                cur = ""
            else:
                cur += ch
        try:
            tols = [float(v) for v in tol.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--tol expects comma-separated numbers like 1e-2,1e-3, got {tol!r}") from None
        result = run_sweep(run, names, _nfe_spec(nfe), n, seed, tols, batch_size, raw, progress, inception_weights)
        typer.echo(json.dumps(result, indent=2, default=float))
        return
    if likelihood == "ode":
        result = run_evaluate_ode(run, split, limit, batch_size, seed, raw, progress, rtol, atol, hutchinson_samples)
        name = f"eval_{split}_ode.json"
    elif likelihood == "bound":
        result = run_evaluate(run, split, limit, t_samples, exact, calibrate, batch_size, seed, raw, progress)
        name = f"eval_{split}.json"
    else:
        raise ValueError(f"--likelihood must be 'bound' or 'ode', got {likelihood!r}")
    text = json.dumps(result, indent=2)
    atomic_write_text(out or run / name, text + "\n")
    typer.echo(text)


@app.command()
@_friendly
def pictures(run: Path = typer.Argument(..., help="Run folder."), seed: int = typer.Option(0)) -> None:
    """Write the forward-process strip, the reverse trajectory (PNG and GIF), the schedule plot and the loss
    curve to RUN/figures."""
    typer.echo(json.dumps(write_pictures(run, seed)))


@app.command()
def datasets() -> None:
    """List the datasets and the patterns for your own data."""
    from .data import list_datasets

    for name, desc in list_datasets():
        typer.echo(f"{name:16s} {desc}")


@app.command()
def models() -> None:
    """List the model families."""
    import genmodels  # noqa: F401
    from .registry import MODELS

    for name in MODELS.names():
        typer.echo(name)


@app.command()
@_friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder."),
    data: str = typer.Option("digits", help="An embedded dataset."),
    minutes: float = typer.Option(6.0, help="Training time budget."),
    steps: int = typer.Option(6000, help="Step budget (whichever of the two ends first)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """The main job: train DDPM on an embedded dataset, sample a grid, write the pictures, and print the
    test-set bits/dim. Re-running it resumes the run in --out."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resume = (out / "train_state.pt").is_file()
    res = run_train("ddpm", "" if resume else data, out, resume,
                    dict(steps=steps, time_limit_minutes=minutes, batch_size=64, lr=1e-3, warmup_steps=200,
                         ema_halflife_kimg=20.0, checkpoint_every=1000, log_every=100, progress=progress),
                    {}, {})
    grid = run_sample(out, 64, "ancestral", None, 0.0, 0, out / "samples.png", False, progress)
    figs = write_pictures(out)
    ev = run_evaluate(out, "test", None, 4, False, True, 100, 0, False, progress)
    summary = {"run": str(out), "data": ev["data"], "train_steps": res.steps, "train_minutes": round(res.seconds / 60, 2),
               "samples": grid["picture"], "figures": figs, "test_bpd": round(ev["bpd"], 4),
               "test_bpd_stderr": round(ev["bpd_stderr"], 4), "terms_bpd": {k: round(v, 4) for k, v in ev["terms_bpd"].items()},
               "nll_kind": ev["nll_kind"], "examples": ev["examples"], "eval_seconds": round(ev["seconds"], 1)}
    typer.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app()
