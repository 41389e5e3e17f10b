"""The ``genmodels`` command line: it parses commands and prints what :mod:`genmodels.jobs` returns.

    genmodels demo                                   # the main job on an embedded dataset
    genmodels models; genmodels datasets             # the families (samplers, likelihood); the data
    genmodels train MODEL --data DATA --minutes 30 --out RUN
    genmodels sample RUN --n 64 --sampler SAMPLER --steps 50
    genmodels evaluate RUN --split test              # JSON: bits/dim with its parts and standard error
    genmodels evaluate RUN --sampler S1,S2 --nfe 5,10,20,50   # sample quality against NFE
    genmodels train MODEL --data DATA --conditional; genmodels sample RUN --class all --guidance 2
    genmodels inpaint RUN --images test:0-15 --mask top; genmodels guidance RUN --scales 0,1,2,4
    genmodels compare --data DATA --minutes 10 --jobs 2 --threads 1 --out DIR   # every family, one report

Nothing here knows the families: what a run can do (samplers, options, likelihood) comes from its family's
declarations, so a new family needs no line here. Importing this module loads neither torch nor any family, so
``genmodels --help`` answers at once; every command imports the library when it runs.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from .errors import at_least, one_line, positive_numbers
from .fileio import json_dumps
from .threads import configure_threads
from .train_config import TrainConfig as _TC  # its defaults, for the help texts (no torch)

app = typer.Typer(help="Train, sample and evaluate likelihood-based generative models, in bits/dim.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)  # help texts are plain: "[default 64]" is text, not a rich markup tag

_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError)

SHORTCUTS = {"parameterization": "parameterization", "loss": "loss", "variance": "variance",
             "schedule": "schedule.kind", "T": "schedule.T", "channels": "unet.channels",
             "channel_mult": "unet.channel_mult", "num_res_blocks": "unet.num_res_blocks",
             "attn_levels": "unet.attn_levels"}
"""``train`` flags that are shortcuts for ``--set`` assignments (flag -> config field); a family whose config has no
such field says so, as for any ``--set``."""


def _default(text: str, field: str) -> str:
    """A train option's help with its default, read from :class:`~genmodels.train_config.TrainConfig`."""
    return f"{text} [default {getattr(_TC, field):g}]."


PRECISION_HELP = ("Network precision: fp32 | bf16 | fp16 (GPU) | auto (bf16 where the CPU or GPU computes it "
                  "natively, else fp32).")
THREADS_HELP = ("torch threads for this process, fixed [default: OMP_NUM_THREADS, else the cores it may use, "
                "lowered while fewer run faster (a busy machine)].")


def _friendly(fn: Callable) -> Callable:
    """Set the thread count, then turn the library's clear errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        """Run the command; a library error becomes ``error: …`` and exit status 2."""
        try:
            if "threads" in kwargs:  # a command that computes: no --threads: the cores, tuned (genmodels.threads)
                configure_threads(kwargs["threads"])
            return fn(*args, **kwargs)
        except KeyError as e:  # str(KeyError) quotes its message: print the message itself
            _fail(e.args[0] if e.args else e)
        except _ERRORS as e:
            _fail(e)
        except (OSError, MemoryError, RuntimeError) as e:  # a full disk, a read-only folder, no memory (errors.py)
            if one_line(e) is None:  # a RuntimeError that is a bug keeps its traceback
                raise
            _fail(one_line(e))

    return wrapper


def _fail(msg: object) -> None:
    """``error: msg`` on stderr and exit status 2 (no traceback)."""
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2) from None


def _check(rule: Callable[[Any], str | None]) -> Callable:
    """A typer callback: ``rule(value)`` is None, or the error, one line and exit status 2 (not typer's framed box)."""
    def check(param: typer.CallbackParam, value: Any) -> Any:
        """The value, or one error line naming the option (exit status 2)."""
        return value if value is None or rule(value) is None else _fail(f"{param.opts[0]} {rule(value)}")
    return check


_POSITIVE, _ABOVE_ZERO, _TOLS = _check(at_least(1)), _check(at_least(0, strict=True)), _check(positive_numbers)


def _ints(text: str) -> tuple[int, ...]:
    """'1,2,2' -> (1, 2, 2)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers like '1,2,2', got {text!r}") from None


def _nfe_spec(text: str) -> dict[str, list[int]]:
    """'5,10,20;ancestral=20,1000' -> {'*': [5, 10, 20], 'ancestral': [20, 1000]}."""
    spec: dict[str, list[int]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, _, values = part.rpartition("=")
        spec[name.strip() or "*"] = list(_ints(values))
    return spec


def _split_samplers(text: str) -> list[str]:
    """Split on commas outside brackets: 'ddim,heun[s_churn=40,s_noise=1]' -> ['ddim', 'heun[s_churn=40,s_noise=1]']."""
    names, depth, cur = [], 0, ""
    for ch in text + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            names += [cur.strip()] if cur.strip() else []
            cur = ""
        else:
            cur += ch
    return names


def _echo(result: Any, indent: int | None = 2) -> None:
    typer.echo(json_dumps(result, indent=indent))  # valid JSON: a missing or non-finite number is null


# ---------------------------------------------------------------------------------------------- commands


@app.command()
@_friendly
def train(
    model: str | None = typer.Argument(None, help="Model family (see `genmodels models`); a resumed run keeps its "
                                                     "own."),
    data: str = typer.Option("", "--data", "-d", help="Dataset name or idx:DIR / folder:DIR / npz:FILE."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (config.json, weights, metrics) "
                                                                 "[default: runs/MODEL]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    steps: int | None = typer.Option(None, help=_default("Optimizer steps in total", "steps")),
    minutes: float | None = typer.Option(None, help="Stop cleanly (with a checkpoint) after this many minutes."),
    batch_size: int | None = typer.Option(None, help=_default("Global batch size", "batch_size")),
    lr: float | None = typer.Option(None, help=_default("Peak AdamW learning rate", "lr")),
    ema_halflife_kimg: float | None = typer.Option(None, help=_default("EMA half-life, kimg", "ema_halflife_kimg")),
    seed: int | None = typer.Option(None, help=_default("Seed of weights, data order and noise", "seed")),
    checkpoint_every: int | None = typer.Option(None, help=_default("Steps between checkpoints", "checkpoint_every")),
    sample_every: int | None = typer.Option(None, help=_default("Steps between grids (0: none)", "sample_every")),
    log_every: int | None = typer.Option(None, help=_default("Steps between metrics.jsonl lines", "log_every")),
    skip_nonfinite: int | None = typer.Option(None, help="Skip up to N steps in a row with a NaN/inf loss or "
                                                         "gradient norm (skipped_steps) [default 0: stop at one]."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    precision: str | None = typer.Option(None, help=PRECISION_HELP + " A resumed run keeps its own."),
    workers: int | None = typer.Option(None, help="DataLoader workers reading a streamed folder (?stream=true) "
                                                  "[default: one per core beyond the first, at most 4]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    parameterization: str | None = typer.Option(None, help="Network output: eps | x0 | v (--set parameterization)."),
    loss: str | None = typer.Option(None, help="simple | x0 | v | elbo | min_snr (--set loss)."),
    variance: str | None = typer.Option(None, help="Reverse variance: fixed_small | fixed_large (--set variance)."),
    schedule: str | None = typer.Option(None, help="Noise schedule: linear | cosine (--set schedule.kind)."),
    T: int | None = typer.Option(None, "--T", help="Diffusion steps (--set schedule.T)."),
    channels: int | None = typer.Option(None, help="UNet base width (--set unet.channels)."),
    channel_mult: str | None = typer.Option(None, help="UNet widths per level, e.g. 1,2,2 (--set unet.channel_mult)."),
    num_res_blocks: int | None = typer.Option(None, help="UNet residual blocks per level (--set unet.num_res_blocks)."),
    attn_levels: str | None = typer.Option(None, help="UNet levels with self-attention, e.g. 2 "
                                                      "(--set unet.attn_levels)."),
    settings: list[str] | None = typer.Option(
        None, "--set", help="Model config field=value, repeatable; dotted for nested fields: latent_dim=16, "
                            "latent_dims=32,16, coder.backbone=conv, kl_warmup_steps=2000, free_bits=0.1, "
                            "objective=iwae, train_samples=5. All fields: `genmodels config MODEL --data DATA`."),
    conditional: bool = typer.Option(False, "--conditional", help="Model p(x | y) of the data's class labels, with "
                                     "label dropout (--set cond.p_uncond=0.1) so that it is also p(x)."),
) -> None:
    """Train a model family (`genmodels models` lists them) on a dataset; a run folder holds everything needed to
    resume, sample and evaluate. With --resume, the training flags given apply from the checkpoint on (recorded in
    metrics.jsonl and config.json); --seed and --batch-size cannot change."""
    from .jobs import run_train, train_precision

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train_overrides = dict(steps=steps, batch_size=batch_size, lr=lr, ema_halflife_kimg=ema_halflife_kimg, seed=seed,
                           checkpoint_every=checkpoint_every, sample_every=sample_every, log_every=log_every,
                           time_limit_minutes=minutes, num_threads=threads, progress=progress,
                           skip_nonfinite=skip_nonfinite, mixed_precision=train_precision(precision, resume),
                           data_workers=workers)
    flags = dict(parameterization=parameterization, loss=loss, variance=variance, schedule=schedule, T=T,
                 channels=channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks, attn_levels=attn_levels)
    given = {k: ",".join(map(str, _ints(v))) if k in ("channel_mult", "attn_levels") else v
             for k, v in flags.items() if v is not None}
    if resume and given:
        raise ValueError("--" + ", --".join(k.replace("_", "-") for k in given) +
                         " change the model, which a resumed run keeps; start a new run (another --out)")
    try:
        result = run_train(model, data, out, resume, train_overrides,
                           [f"{SHORTCUTS[k]}={v}" for k, v in given.items()] + list(settings or []),
                           refuse_finished=True, conditional=conditional)
    except ValueError as e:  # name the flag the user typed, not the assignment or field it stands for
        msg = str(e)
        for k in given:
            msg = msg.replace(f"--set {SHORTCUTS[k]}:", f"--{k.replace('_', '-')} (--set {SHORTCUTS[k]}):")
        # TrainConfig.steps=0 -> --steps 0
        flag = {"time_limit_minutes": "minutes", "num_threads": "threads", "mixed_precision": "precision",
                "data_workers": "workers"}
        msg = re.sub(r"TrainConfig\.(\w+)=", lambda m: "--" + flag.get(m[1], m[1]).replace("_", "-") + " "
                     if m[1] in train_overrides else m[0], msg)
        raise ValueError(msg) from None
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one summary line (rank 0)
        return
    _echo({"run": str(result.run_dir), "steps": result.steps, "images_seen": result.images_seen,
           "minutes": round(result.seconds / 60, 2), "final_loss": result.final_loss,
           "stop_reason": result.stop_reason}, indent=None)


@app.command()
@_friendly
def sample(
    run: Path = typer.Argument(..., help="Run folder."),
    n: int = typer.Option(64, help="Number of samples.", callback=_POSITIVE),
    sampler: str | None = typer.Option(None, help="A sampler of the run's family (`genmodels models` lists them) "
                                                     "[default: the family's first]."),
    steps: int | None = typer.Option(None, help="The sampler's steps / noise levels, where it has them "
                                                   "[default: the family's].", callback=_POSITIVE),
    eta: float | None = typer.Option(None, help="DDIM η (0: deterministic, 1: ancestral), for samplers that take it."),
    temperature: float | None = typer.Option(None, help="Samplers that take it: the base distribution's std of a "
                                                           "flow (e.g. 0.7), the softmax temperature of an "
                                                           "autoregressive model. 1: the model itself."),
    seed: int = typer.Option(0, help="Seed of the sampler's noise."),
    out: Path | None = typer.Option(None, help="PNG path [default RUN/samples/SAMPLER_STEPS.png]."),
    raw: bool = typer.Option(False, "--raw", help="Use the raw weights instead of the EMA weights."),
    batch_size: int = typer.Option(100, help="Samples drawn at once (≈100 is fastest on CPU).", callback=_POSITIVE),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    classes: str | None = typer.Option(None, "--class", help="Conditional runs: a class (number or name), several "
                                       "(3,5) or all (one grid row per class) [default: unconditional]."),
    guidance: float = typer.Option(0.0, help="Classifier-free guidance scale w (Ho & Salimans 2022; 0: none)."),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
) -> None:
    """Draw samples from a run into a picture and an .npz file; prints what it wrote as JSON."""
    from .jobs import run_sample

    options = {k: v for k, v in {"eta": eta, "temperature": temperature}.items() if v is not None}
    _echo(run_sample(run, n, sampler, steps, seed, out, raw, progress, batch_size, options, classes, guidance,
                     precision), indent=None)


@app.command()
@_friendly
def inpaint(
    run: Path = typer.Argument(..., help="Run folder."),
    images: str = typer.Option("test:0-15", help="Data images to complete: SPLIT:RANGE, e.g. test:0-15, test:3,7."),
    mask: str = typer.Option("top", help="What is known: top | bottom | left | right (that half), center (all but "
                                         "a centre box), random:F (a fraction F unknown) or a PNG (white = known)."),
    method: str | None = typer.Option(None, help="repaint | replace (diffusion), raster (autoregressive) "
                                                    "[default: the family's first]."),
    steps: int | None = typer.Option(None, help="Diffusion: levels of the reverse process.", callback=_POSITIVE),
    jump_length: int | None = typer.Option(None, help="RePaint: steps per jump back (j).", callback=_POSITIVE),
    jump_n_sample: int | None = typer.Option(None, help="RePaint: resamplings per jump (r).", callback=_POSITIVE),
    particles: int | None = typer.Option(None, help="Raster completion: importance-resampled completions per image "
                                                    "(exact as it grows when known pixels follow unknown ones).",
                                         callback=_POSITIVE),
    samples: int = typer.Option(1, help="Completions per image (rows of the picture).", callback=_POSITIVE),
    classes: str | None = typer.Option(None, "--class", help="Conditional runs: true (each image's label) or a "
                                                            "class."),
    seed: int = typer.Option(0), out: Path | None = typer.Option(None, help="PNG path [default RUN/inpaint/…]."),
    raw: bool = typer.Option(False, "--raw", help="Use the raw weights instead of the EMA weights."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fill in the unknown part of data images given the known part; prints what it wrote as JSON."""
    from .jobs import run_inpaint

    options = {k: v for k, v in dict(steps=steps, jump_length=jump_length, jump_n_sample=jump_n_sample,
                                     particles=particles).items() if v is not None}
    _echo(run_inpaint(run, images, mask, method, seed, out, raw, progress, classes, samples, options), indent=None)


@app.command()
@_friendly
def guidance(
    run: Path = typer.Argument(..., help="Run folder of a conditional model."),
    scales: str = typer.Option("0,0.5,1,2,4", help="Guidance scales w."),
    n_per_class: int = typer.Option(50, help="Samples per class at each w.", callback=_POSITIVE),
    sampler: str | None = typer.Option(None, help="A sampler with guidance [default: the family's first]."),
    steps: int | None = typer.Option(None, help="The sampler's steps.", callback=_POSITIVE),
    seed: int = typer.Option(0), batch_size: int = typer.Option(100, callback=_POSITIVE),
    raw: bool = typer.Option(False, "--raw"), threads: int | None = typer.Option(None, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """The guidance sweep: how often the dataset's classifier recognizes the requested class, and the Fréchet
    distance, at each guidance scale; writes RUN/guidance_sweep/ (table, figure, one grid per w)."""
    from .jobs import run_guidance_sweep

    try:
        ws = [float(v) for v in scales.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--scales expects comma-separated numbers like 0,1,2, got {scales!r}") from None
    _echo(run_guidance_sweep(run, ws, n_per_class, sampler, steps, seed, batch_size, raw, progress))


@app.command()
@_friendly
def evaluate(
    run: Path = typer.Argument(..., help="Run folder."),
    split: str = typer.Option("test", help="test | train."),
    limit: int | None = typer.Option(None, help="Evaluate only the first N examples.", callback=_POSITIVE),
    t_samples: int = typer.Option(4, help="Bounds over noise levels: stratified steps or times per example.",
                                  callback=_POSITIVE),
    exact: bool = typer.Option(False, "--exact", help="Bounds over noise levels: sum all T steps (T evaluations per "
                                                     "example)."),
    k: int = typer.Option(1, "--k", help="Latent-variable bounds: importance samples of the IWAE bound (1: the "
                                         "ELBO); e.g. 5000.", callback=_POSITIVE),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                   help="Bounds with a step proposal: fit it on 128 training examples first."),
    batch_size: int = typer.Option(100, help="Examples per batch (≈100 is fastest on CPU).", callback=_POSITIVE),
    seed: int = typer.Option(0),
    raw: bool = typer.Option(False, "--raw", help="Use the raw weights instead of the EMA weights."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    out: Path | None = typer.Option(None, help="Also write the JSON here [default RUN/eval_SPLIT.json]."),
    likelihood: str = typer.Option("bound", help="bound (the family's own NLL or bound) | ode (probability-flow ODE, "
                                                 "Song et al. 2021, App. D; slow: use --limit)."),
    rtol: float = typer.Option(1e-5, help="ODE likelihood: solver rtol.", callback=_ABOVE_ZERO),
    atol: float = typer.Option(1e-5, help="ODE likelihood: solver atol.", callback=_ABOVE_ZERO),
    hutchinson_samples: int = typer.Option(1, help="ODE likelihood: probe vectors per image (images only).",
                                           callback=_POSITIVE),
    sampler: str | None = typer.Option(None, help="Sample quality instead of likelihood: comma-separated samplers "
                                                     "of the run's family, options in brackets: "
                                                     "'ddim[eta=0.5],heun[s_churn=40],annealed[eps=2e-5]'."),
    nfe: str = typer.Option("5,10,20,50", help="Sample quality: NFE budgets, e.g. 5,10,20,50,1000; per sampler "
                                             "after ';', e.g. '5,10,20,50;ancestral=20,1000'."),
    n: int = typer.Option(500, help="Sample quality: samples per point (the floor uses as many real images)."),
    tol: str = typer.Option("1e-2,1e-3", help="Sample quality: rtol=atol values of adaptive samplers.",
                            callback=_TOLS),
    inception_weights: Path | None = typer.Option(None, help="Sample quality: also FID with this Inception "
                                                                "weights file (needs genmodels[inception])."),
    data: str | None = typer.Option(None, "--data", "-d", help="evaluate on another dataset (out-of-distribution); "
                                                               "its event shape and levels must match the run's"),
    classify: bool = typer.Option(False, "--classify", help="Conditional runs: the generative classifier's accuracy "
                                                            "beside the dataset's feature classifier's."),
    precision: str = typer.Option("fp32", help=PRECISION_HELP + " The bound's sums stay float32/float64."),
) -> None:
    """Evaluate a run, printing JSON.

    Default: the split's NLL (exact, or an upper bound) in bits/dim and nats per example: bpd, bpd_stderr, nats,
    nats_stderr, terms_bpd (the family's named parts, e.g. for a diffusion bound prior = L_T, diffusion = Σ L_t,
    reconstruction = L_0), examples, seconds, and what the family adds (e.g. an IWAE bound's ELBO and the active
    units); each example's NLL is saved beside the JSON (.npy). ``--likelihood ode``: bits/dim through the probability-flow ODE.
    A conditional run reports -log p(x | y) and, under "conditional", -log p(x) = -log sum_y p(y) p(x | y), -log p(x | null)
    and the generative classifier's accuracy (K + 1 passes: use --limit).
    ``--sampler``: the NFE sweep of sample quality (Fréchet distance on the dataset's own classifier, KID,
    precision/recall, with the test-vs-train floor), written to RUN/nfe_sweep/. Families without a likelihood
    (score-based models) take ``--sampler`` only.
    """  # noqa: E501  typer prints these lines as they are: a wrap would change `evaluate --help`
    import re

    from .checkpoint import atomic_write_text
    from .core import EvalOptions
    from .jobs import run_evaluate, run_evaluate_ode, run_sweep

    if sampler and data:
        raise ValueError("--data evaluates another dataset's likelihood; --sampler scores samples on the run's data")
    if precision != "fp32" and (sampler or likelihood == "ode"):
        raise ValueError("--precision applies to the bound (--likelihood bound); the ODE likelihood and the sample "
                         "sweep run in fp32: drop --precision")
    if sampler:
        try:
            tols = [float(v) for v in tol.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--tol expects comma-separated numbers like 1e-2,1e-3, got {tol!r}") from None

        def report(row, key: str) -> None:
            """One progress line per finished sweep row, on stderr."""
            typer.echo(f"{row.sampler:15s} NFE {row.nfe:5d}  {key} {row.quality.get(key, float('nan')):.4g}  "
                       f"{row.seconds_per_sample:.3f} s/sample", err=True)

        _echo(run_sweep(run, _split_samplers(sampler), _nfe_spec(nfe), n, seed, tols, batch_size, raw, progress,
                        inception_weights, on_row=report))
        return
    # out-of-distribution (--data npz:/x/other.npz): eval_SPLIT_on_other.json, never the run's own eval_SPLIT.json
    tag = "_on_" + re.sub(r"[^\w.-]+", "_", Path(data.split("?")[0].split(":")[-1]).stem)[:40] if data else ""
    if likelihood == "ode":
        result = run_evaluate_ode(run, split, limit, batch_size, seed, raw, progress, rtol, atol, hutchinson_samples,
                                  data)
        name = f"eval_{split}_ode{tag}.json"
    elif likelihood == "bound":
        name = f"eval_{split}{tag}.json" if k == 1 else f"eval_{split}_iwae{k}{tag}.json"
        options = EvalOptions(t_samples=t_samples, exact=exact, calibrate=calibrate, k=k)
        result = run_evaluate(run, split, limit, options, batch_size, seed, raw, progress,
                              (out or run / name).with_suffix(".npy"), data, classify, precision)
    else:
        raise ValueError(f"--likelihood must be 'bound' or 'ode', got {likelihood!r}")
    text = json_dumps(result, indent=2)
    atomic_write_text(out or run / name, text + "\n")
    typer.echo(text)


@app.command()
@_friendly
def pictures(run: Path = typer.Argument(..., help="Run folder."), seed: int = typer.Option(0),
             sampler: str | None = typer.Option(None, help="The sampler of pictures that sample [default: the "
                                                            "family's fast one, e.g. dpm++ for diffusion]."),
             steps: int | None = typer.Option(None, help="Its steps [default: 20].", callback=_POSITIVE),
             precision: str = typer.Option("auto", help=PRECISION_HELP),
             threads: int | None = typer.Option(None, help=THREADS_HELP)) -> None:
    """Write a run's pictures to RUN/figures: the family's own (e.g. a diffusion model's forward strip, reverse
    trajectory and schedule plot; a latent-variable model's reconstructions, interpolations and latent spaces; a score
    model's Langevin chains and score fields; a flow's density map), or a sample grid, and the loss curve."""
    from .jobs import write_pictures

    _echo(write_pictures(run, seed, sampler, steps, precision), indent=None)


@app.command("config")
@_friendly
def show_config(
    model: str = typer.Argument(..., help="Model family (see `genmodels models`)."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset name (the preset depends on the data)."),
    settings: list[str] | None = typer.Option(None, "--set", help="field=value assignments to apply first."),
) -> None:
    """Print the model config `genmodels train MODEL --data DATA` would use, as JSON: the fields --set can change."""
    from .checkpoint import config_to_dict
    from .data import load_dataset
    from .jobs import model_config

    _echo(config_to_dict(model_config(model, load_dataset(data).spec, settings)))


@app.command()
def datasets() -> None:
    """List the datasets and the patterns for your own data."""
    from .data import list_datasets

    for name, desc in list_datasets():
        typer.echo(f"{name:16s} {desc}")


@app.command()
def models() -> None:
    """List the model families: what each is, its samplers (default first) and its likelihood."""
    from .jobs import describe_models

    for row in describe_models():
        extra = "".join(f"; {k}: {', '.join(row[k])}" for k in ("guidance", "inpainting") if row[k])
        typer.echo(f"{row['name']:9s} {row['description']}\n{'':9s} samplers: {', '.join(row['samplers'])}; "
                   f"likelihood: {row['likelihood']}{'; class-conditional' if row['conditional'] else ''}{extra}")


@app.command()
@_friendly
def compare(
    runs: list[Path] | None = typer.Argument(None, help="Existing run folders to evaluate and report (no training)."),
    data: str = typer.Option("", "--data", "-d", help="Dataset to train every family on."),
    models: str | None = typer.Option(None, help="Families, comma-separated [default: all that fit the data]."),
    minutes: float | None = typer.Option(None, help="Training wall minutes per family."),
    steps: int | None = typer.Option(None, help="Optimizer steps per family (with --minutes: whichever ends first)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the rows' runs and the report; rerun to continue."),
    jobs: int = typer.Option(1, help="Families trained at once (one per GPU on a GPU machine)."),
    threads: int = typer.Option(1, help="torch threads per family."),
    batch_size: int = typer.Option(64, help="Batch size of every family."),
    lr: float = typer.Option(1e-3, help="Peak AdamW learning rate of every family."),
    seed: int = typer.Option(0, help="Seed of every family's training and of the samples."),
    conditional: bool = typer.Option(False, "--conditional", help="Class-conditional models of the data's labels."),
    ood_data: str | None = typer.Option(None, help="Second dataset: its bits/dim and the AUROC of in/out detection."),
    eval_examples: int = typer.Option(1000, help="Test images in the NLL, the same for every family."),
    samples: int = typer.Option(500, help="Samples per sample-quality score."),
    max_nfe: int = typer.Option(100, help="Most network evaluations per sample of a default sampler."),
    fast_nfes: str = typer.Option("10,20", help="NFE budgets of the families' few-step samplers."),
    curve_points: int = typer.Option(10, help="Learning-curve points: one every minutes/N of training (10/N minutes "
                                              "with --steps alone); each scores the curve's test images."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run the failed rows again."),
) -> None:
    """Train every family on one dataset with one budget, evaluate them with one protocol, and write
    OUT/report.html, report.md and results.json; with run folders, evaluate and report those."""
    from .compare import Protocol, plan, run_compare

    data, names, runs_map, skipped = plan(runs or [], data, models)
    protocol = Protocol(data=data, models=tuple(names), minutes=minutes, steps=steps, threads=threads, lr=lr,
                        batch_size=batch_size, seed=seed,
                        conditional=conditional, eval_examples=eval_examples, samples=samples, max_nfe=max_nfe,
                        fast_nfes=_ints(fast_nfes), ood_data=ood_data, runs=runs_map, skipped=skipped,
                        curve_points=curve_points)
    _echo(run_compare(protocol, out, jobs=jobs, retry_failed=retry_failed))


@app.command()
@_friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder."),
    data: str | None = typer.Option(None, help="An embedded dataset [default: the demo's own, "
                                               "genmodels.jobs.DEMO_DATA]."),
    minutes: float = typer.Option(6.0, help="Training time budget."),
    steps: int = typer.Option(6000, help="Step budget (whichever of the two ends first)."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """The main job: train the demo's diffusion model on an embedded dataset, sample a grid, write the pictures, and
    print the test-set bits/dim. Re-running it resumes the run in --out."""
    from .jobs import run_demo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _echo(run_demo(out, data, minutes, steps, threads, progress))


if __name__ == "__main__":
    app()
