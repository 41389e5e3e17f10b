"""The ``genmodels`` command line: a thin typed layer over the library.

    genmodels demo                                   # the main job on an embedded dataset
    genmodels train ddpm --data fashion-mnist --minutes 30 --out runs/fmnist
    genmodels sample runs/fmnist --n 64 --sampler ddim --steps 50
    genmodels evaluate runs/fmnist --split test      # JSON: bits/dim with its parts and standard error
    genmodels evaluate runs/fmnist --likelihood ode --limit 200     # bits/dim through the probability-flow ODE
    genmodels evaluate runs/fmnist --sampler dpm++,heun --nfe 5,10,20,50   # sample quality against NFE
    genmodels pictures runs/fmnist                   # forward strip, reverse trajectory, schedule, loss curve
    genmodels train ncsn --data moons --out runs/ncsn && genmodels sample runs/ncsn --sampler annealed
    genmodels evaluate runs/ncsn --sampler annealed --nfe 101,1001   # score models: sample quality, no likelihood
    genmodels train realnvp --data mnist5k --out runs/realnvp && genmodels evaluate runs/realnvp   # exact bits/dim
    genmodels datasets
"""

from __future__ import annotations

import functools
import json
import math
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


DIFFUSION_FAMILIES = ("ddpm", "vdm")
"""Model families the diffusion samplers, the NFE sweep and the ODE likelihood apply to."""


def _is_exact(model) -> bool:
    """True for a family with an exact likelihood (flows, autoregressive models): one sampler, exact bits/dim."""
    return getattr(model, "nll_kind", None) == "exact"


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
    """The DDPM preset for a dataset (:func:`genmodels.diffusion.ddpm.default_config`) with ``overrides`` replacing
    top-level fields."""
    from .diffusion.ddpm import default_config

    return replace(default_config(spec), **{k: v for k, v in overrides.items() if v is not None})


def _parse_value(text: str) -> Any:
    """A ``--set`` value: JSON (numbers, true/false, null, [lists], "strings"), else the bare string; '32,16' is a
    list of numbers."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [_parse_value(v.strip()) for v in text.split(",") if v.strip()]
    return text


def apply_overrides(config: Any, assignments: list[str]) -> Any:
    """A copy of the config dataclass ``config`` with ``key=value`` assignments applied; dotted keys reach nested
    configs (``coder.backbone=conv``, ``unet.channels=64``). Types are checked as when a run's config.json is read.

    Raises:
        ValueError: for an assignment without '=', an unknown field (the message lists the known ones at that
            level) or a value of the wrong type.
    """
    from .checkpoint import config_from_dict, config_to_dict

    d = config_to_dict(config)
    for a in assignments:
        key, sep, value = a.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value (e.g. latent_dim=16 or coder.backbone=conv), got {a!r}")
        parts = key.strip().split(".")
        node = d
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:i]) or type(config).__name__
                known = ", ".join(sorted(node)) if isinstance(node, dict) else "(none: it is a value)"
                raise ValueError(f"--set {key}: {where} has no field {part!r}; its fields: {known}")
            if i < len(parts) - 1:
                node = node[part]
        parsed = _parse_value(value.strip())
        if isinstance(node[parts[-1]], list) and not isinstance(parsed, list):
            parsed = [parsed]  # latent_dims=32: a one-element tuple
        node[parts[-1]] = parsed
    try:
        return config_from_dict(type(config), d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--set: {e}") from None


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


def model_config(model_name: str, spec, settings: list[str] | None = None,
                 model_overrides: dict[str, Any] | None = None, unet_overrides: dict[str, Any] | None = None):
    """The config ``genmodels train MODEL`` builds for data ``spec``: the family's preset
    (:meth:`~genmodels.registry.ModelEntry.preset`), DDPM's own flags, then the ``--set key=value`` assignments.

    Raises:
        KeyError: unknown model (lists the known ones). ValueError: DDPM flags given for another family, or a bad
            assignment (:func:`apply_overrides`).
    """
    import genmodels  # noqa: F401  (registers the model families)

    from .registry import MODELS

    cfg = MODELS.get(model_name).preset(spec)
    flags = {k: v for k, v in {**(model_overrides or {}), **(unet_overrides or {})}.items() if v is not None}
    if model_name == "ddpm":
        cfg = replace(cfg, **{k: v for k, v in (model_overrides or {}).items() if v is not None})
        unet = {k: v for k, v in (unet_overrides or {}).items() if v is not None}
        if unet:
            cfg = replace(cfg, unet=replace(cfg.unet, **unet))
    elif flags:
        names = ", ".join("--schedule/--T" if k == "schedule" else "--" + k.replace("_", "-") for k in sorted(flags))
        raise ValueError(f"{names}: DDPM options; a {model_name!r} model is configured with --set key=value "
                         f"(its fields: `genmodels config {model_name} --data DATA`)")
    return apply_overrides(cfg, settings or [])


def run_train(model_name: str, data: str, out: Path, resume: bool, train_overrides: dict[str, Any],
              model_overrides: dict[str, Any], unet_overrides: dict[str, Any], settings: list[str] | None = None):
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
        if settings:
            raise ValueError("--set changes the model, which a resumed run keeps; start a new run (another --out) "
                             "to train a different configuration")
        run_config = saved
        train_cfg = replace(saved.train or TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
        dataset = load_dataset(saved.data)
    else:
        if not data:
            raise ValueError("--data is required (see `genmodels datasets`)")
        dataset = load_dataset(data)
        cfg = model_config(model_name, dataset.spec, settings, model_overrides, unet_overrides)
        run_config = RunConfig(model=model_name, model_config=cfg, data=data, spec=dataset.spec)
        train_cfg = replace(TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
    entry = MODELS.get(run_config.model)
    import torch

    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = entry.build(run_config.model_config, run_config.spec)
    from .score.base import ScoreModel
    from .vae.vae import LatentVariableModel

    if isinstance(model, LatentVariableModel):
        grid_kw: dict[str, Any] = {"mean": True}  # the decoder's mean, as VAE papers show
    elif isinstance(model, ScoreModel):
        grid_kw = model.preview_kwargs()  # its own sampler, shortened (EBM: 200 steps; NCSN: ≈ 50 evaluations)
    elif _is_exact(model):
        grid_kw = {}  # a flow inverts once; an autoregressive model samples step by step (its full cost)
    else:
        grid_kw = {"sampler": "ddim", "steps": 50}
    sample_fn = model_sample_fn(train_cfg.n_sample, **grid_kw) if train_cfg.sample_every else None
    trainer = Trainer(model, dataset.train, dataset.spec, train_cfg, out, run_config, sample_fn)
    try:
        return trainer.fit(resume=resume)
    finally:
        # the program owns the process group (under torchrun): destroy it before exit, or gloo can abort at
        # interpreter shutdown ("terminate called without an active exception") after a successful run
        trainer.accelerator.end_training()


def run_sample(run: Path, n: int, sampler: Optional[str], steps: Optional[int], eta: float, seed: int,
               out: Optional[Path], raw: bool, progress: bool, batch_size: int = 100,
               temperature: float = 1.0) -> dict:
    """Sample ``n`` images from a run into a PNG grid (and ``.npz``). Returns what was written.

    ``sampler`` None is the family's default: ``ancestral`` for diffusion models, VAEs and autoregressive models,
    ``inverse`` for a flow, ``langevin`` for an EBM, ``annealed`` for an NCSN. ``steps`` None: all T steps
    (diffusion), the config's chain (score models). ``temperature`` (flows: the base distribution's std; autoregressive
    models: the softmax temperature) applies to exact-likelihood families only. 1-D sequences get a waveform picture,
    and ``speech`` also WAV files beside it."""
    import time

    import numpy as np

    from .diffusion.samplers import sample_in_batches
    from .viz import save_grid

    model, _ = _load(run, raw)
    start = time.perf_counter()
    from .score.base import ScoreModel
    from .vae.vae import LatentVariableModel

    if temperature != 1.0 and not _is_exact(model):
        raise ValueError("--temperature applies to flows and autoregressive models; drop it for this run")
    if not temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {temperature}")
    if _is_exact(model):
        own = _exact_sampler(model)
        sampler = sampler or own
        if sampler != own:
            raise ValueError(f"a {type(model).__name__} samples with --sampler {own} only; got {sampler!r}")
        if steps is not None:
            raise ValueError(f"--steps does not apply to a {type(model).__name__} (its sampler has no step count)")
        x = _sample_batches(model, n, batch_size, _generator(seed),
                            _progress(progress, f"{sampler}, batches of {batch_size}"), temperature=temperature)
        steps, nfe = None, _exact_nfe(model)
    elif isinstance(model, ScoreModel):
        sampler = model.check_sampler(sampler)
        steps = model.default_steps(sampler) if steps is None else steps
        res = sample_in_batches(model, n, sampler, steps=steps, generator=_generator(seed), batch_size=batch_size,
                                progress=_progress(progress, f"{sampler} {steps} steps, batches of {batch_size}"))
        x, nfe = res.x0, res.nfe
    elif isinstance(model, LatentVariableModel):
        sampler = sampler or "ancestral"
        # ancestral: z ~ p(z), x ~ p(x | z); mean: the decoder's mean E[x | z] (one network pass either way)
        if sampler not in ("ancestral", "mean"):
            raise ValueError(f"a VAE samples with --sampler ancestral (x ~ p(x|z)) or mean (E[x|z]); got {sampler!r}")
        x = _sample_batches(model, n, batch_size, _generator(seed),
                            _progress(progress, f"{sampler}, batches of {batch_size}"), mean=sampler == "mean")
        steps, nfe = 1, 1
    else:
        sampler = sampler or "ancestral"
        steps = steps or model.T
        kwargs = {"eta": eta} if sampler == "ddim" else {}
        res = sample_in_batches(model, n, sampler, steps=steps, generator=_generator(seed), batch_size=batch_size,
                                progress=_progress(progress, f"{sampler} {steps} steps, batches of {batch_size}"),
                                **kwargs)
        x, nfe = res.x0, res.nfe
    seconds = time.perf_counter() - start
    tag = f"_t{temperature:g}" if temperature != 1.0 else ""
    out = out or run / "samples" / (f"{sampler}_{steps}{tag}.png" if steps is not None else f"{sampler}{tag}.png")
    extra: dict[str, Any] = {}
    if model.spec.is_image:
        save_grid(x, out, scale=max(1, 64 // x.shape[-1]))  # small images upscaled to ~64 px tiles
    elif _is_sequence(model.spec):
        extra["wav"] = [str(p) for p in _write_sequences(x, model.spec, out)]
    else:
        save_grid(x, out)
    np.savez_compressed(out.with_suffix(".npz"), x=x.numpy())
    return {"picture": str(out), "samples": str(out.with_suffix(".npz")), "n": n, "sampler": sampler,
            "steps": steps, "eta": eta, "nfe": nfe, "seconds": round(seconds, 2), "weights": "raw" if raw else "ema",
            **({"temperature": temperature} if _is_exact(model) else {}), **extra}


def _sample_batches(model, n: int, batch_size: int, generator, progress=None, **kw):
    """``[n, *event_shape]``: ``model.sample(…, generator, **kw)`` on batches of at most ``batch_size``, one generator
    for all of them; ``progress`` (see :func:`_progress`) wraps the batch iterator."""
    import torch

    starts = range(0, n, batch_size)
    return torch.cat([model.sample(min(batch_size, n - i), generator, **kw)
                      for i in (progress(starts) if progress else starts)])


def _exact_sampler(model) -> str:
    """The one sampler of an exact-likelihood family: ``inverse`` for a flow (z ~ N(0, I), x = f⁻¹(z)),
    ``ancestral`` for an autoregressive model (x_i ~ p(x_i | x_<i), one step per dimension)."""
    return getattr(model, "sampler_name", "ancestral")


def _exact_nfe(model) -> int:
    """Network evaluations per sample of an exact-likelihood family (a flow: 1 inverse pass; an autoregressive
    model: one pass per position, e.g. 784 for a 28×28 PixelCNN, L for WaveNet)."""
    return int(getattr(model, "sample_nfe", 1))


def _is_sequence(spec) -> bool:
    """1-D sequences: events ``(C, L)`` (e.g. ``speech``, (1, 2048))."""
    return len(spec.event_shape) == 2


def _write_sequences(x, spec, out: Path, n_wav: int = 8) -> list[Path]:
    """A waveform picture of the first sequences at ``out`` and, for the μ-law-coded ``speech`` dataset, the first
    ``n_wav`` as WAV files beside it (``out`` stem + ``_K.wav``, decoded to linear amplitude at its sample rate).
    Other sequence data gets the picture only: its values are not known to be audio."""
    from .viz import save_waveforms

    save_waveforms(x[:8], out, title=f"{len(x)} samples of {spec.name}")
    written = [out]
    if spec.name != "speech":
        return written
    from .data.speech import SAMPLE_RATE, save_wav

    for i in range(min(n_wav, len(x))):
        written.append(save_wav(x[i], out.with_name(f"{out.stem}_{i}.wav"), SAMPLE_RATE))
    return written


def _require_likelihood(run: Path) -> None:
    """Raise :class:`~genmodels.core.NoLikelihoodError` (a ValueError: one line, exit status 2) for a run of a
    score-based family, before any weights or data are loaded: it has no likelihood to evaluate, and the error says
    what to run instead."""
    import genmodels  # noqa: F401  (registers the model families)

    from .checkpoint import load_run_config
    from .core import NoLikelihoodError
    from .registry import MODELS
    from .score.base import ScoreModel

    family = load_run_config(run).model
    cls = MODELS.get(family).build
    if isinstance(cls, type) and issubclass(cls, ScoreModel):
        raise NoLikelihoodError(f"a {family!r} run has no likelihood: {cls.no_likelihood_reason}; so no bits/dim are "
                                f"reported. Measure sample quality instead: genmodels evaluate {run} --sampler "
                                f"{cls.samplers[0]} --nfe 1000")


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
                 batch_size: int, seed: int, raw: bool, progress: bool, k: int = 1,
                 per_example: Optional[Path] = None) -> dict:
    """The NLL (bound) of a split in bits/dim, as a JSON-ready dict (same keys for every family). For a VAE, ``k``
    importance samples give the IWAE bound (k = 1: the ELBO), reported with the ELBO of the same samples
    (``elbo_bpd``, ``elbo_nats``) and the active latent units of each layer. ``per_example``: also save each
    example's NLL in nats there (``.npy``, float64), for paired comparisons of models on the same examples."""
    from .metrics.likelihood import evaluate_nll
    from .vae.vae import LatentVariableModel

    _require_likelihood(run)
    model, run_config, dataset, x = _load_split(run, raw, split, limit)
    g = _generator(seed)
    kwargs: dict[str, Any] = {}
    if run_config.model == "ddpm":
        kwargs = {"exact": True} if exact else {"t_samples": t_samples}
        if calibrate and not exact:
            # pilot on training examples (never the evaluated ones), so the estimate stays unbiased
            kwargs["proposal"] = model.calibrate_proposal(dataset.train[:128], _generator(seed + 1), grid=32)
    elif run_config.model == "vdm":
        kwargs = {"exact": True} if exact else {"t_samples": t_samples}
    elif isinstance(model, LatentVariableModel):
        kwargs = {"k": k}
    elif k != 1:
        raise ValueError(f"--k (importance samples) applies to VAEs; this run is a {run_config.model!r} model")
    report = evaluate_nll(model, x, batch_size=batch_size, generator=g, progress=_progress(progress, "evaluate"),
                          **kwargs)
    result = {"model": run_config.model, "data": run_config.data, "split": split, "weights": "raw" if raw else "ema",
              **report.to_json(), **_true_nll(run_config.data, x)}
    if per_example is not None:
        import numpy as np

        per_example.parent.mkdir(parents=True, exist_ok=True)
        np.save(per_example, report.per_example_nats.numpy())
        result["per_example_nats"] = str(per_example)
    if "proposal" in kwargs:
        result["estimator"]["proposal"] = "calibrated on 128 training examples, 32 steps"
    if isinstance(model, LatentVariableModel):
        gap = report.terms_bpd.get("iwae_gap", 0.0)
        result["bound"] = f"IWAE-{k}" if k > 1 else "ELBO"
        result["elbo_bpd"] = report.bpd - gap
        result["elbo_nats"] = report.nats - gap * model.spec.dim * math.log(2)
        result["terms_nats"] = {n: v * model.spec.dim * math.log(2) for n, v in report.terms_bpd.items()}
        result["active_units"] = model.active_units(x.to(model.device))
        result["latent_dims"] = list(model.latent_dims)
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
    from .score.base import ScoreModel
    from .viz import save_quality_vs_cost

    model, run_config = _load(run, raw)
    if run_config.model not in DIFFUSION_FAMILIES and not isinstance(model, ScoreModel):
        raise ValueError(f"--sampler/--nfe sweep the samplers of diffusion and score-based models; this run is a "
                         f"{run_config.model!r} model")
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
    if not rows:
        raise ValueError(f"no NFE budget in {nfes} fits these samplers (each needs enough evaluations for one step: "
                         "an NCSN's annealed sampler at least L + 1, one per noise level and the final denoising)")
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

    _require_likelihood(run)
    model, run_config, _, x = _load_split(run, raw, split, limit)
    if run_config.model not in DIFFUSION_FAMILIES:
        raise ValueError(f"--likelihood ode needs a diffusion model; this run is a {run_config.model!r} model")
    report = evaluate_ode_nll(model, x, batch_size=batch_size, generator=_generator(seed), rtol=rtol, atol=atol,
                              hutchinson_samples=hutchinson_samples, progress=_progress(progress, "ODE likelihood"))
    return {"model": run_config.model, "data": run_config.data, "split": split, "likelihood": "ode",
            "weights": "raw" if raw else "ema", **report.to_json(), **_true_nll(run_config.data, x)}


def write_vae_pictures(run: Path, model, run_config, seed: int = 0, n: int = 8) -> list[str]:
    """A VAE's pictures in RUN/figures: samples (the decoder's mean), test images over their reconstructions,
    latent interpolations between pairs of test images (linear in the posterior means of z_1, decoded), the latent
    space coloured by label for every 2-D layer, and the loss curve."""
    import torch

    from .data import load_dataset
    from .viz import save_grid, save_latent_scatter, save_loss_curve

    figs, written = run / "figures", []
    data = load_dataset(run_config.data)
    g = _generator(seed)
    if model.spec.is_image:
        scale = max(1, 32 // model.spec.event_shape[-1])
        written.append(save_grid(model.sample(64, g, mean=True), figs / "samples_mean.png", scale=scale))
        written.append(save_grid(model.sample(64, g), figs / "samples.png", scale=scale))
        x = data.test[torch.randperm(len(data.test), generator=g)[:2 * n]]  # a fixed random pick of test images
        written.append(save_grid(torch.cat([x, model.reconstruct(x)]), figs / "reconstructions.png", nrow=2 * n,
                                 scale=scale))
        with torch.no_grad():
            za, zb = model.latent_means(x[:n])[0], model.latent_means(x[n:2 * n])[0]
            w = torch.linspace(0, 1, 10)[:, None, None]  # [10, 1, 1]
            zs = ((1 - w) * za + w * zb).transpose(0, 1).flatten(0, 1)  # [n·10, d_1], row by row
            from .vae.likelihoods import decoder_mean

            mid = decoder_mean(model.decode(zs), model.likelihood).view(n, 10, *model.spec.event_shape)
        rows = torch.cat([x[:n, None], mid, x[n:2 * n, None]], 1).flatten(0, 1)
        written.append(save_grid(rows, figs / "interpolation.png", nrow=12, scale=scale))
    else:
        written.append(save_grid(model.sample(2000, g), figs / "samples.png"))
    with torch.no_grad():
        means = [torch.cat(m) for m in zip(*(model.latent_means(xb) for xb in data.test[:5000].split(500)))]
    for i, m in enumerate(means):
        if m.shape[1] == 2:
            name = "latent.png" if len(means) == 1 else f"latent_z{i + 1}.png"
            labels = data.test_labels[:len(m)] if data.test_labels is not None else None
            written.append(save_latent_scatter(m, figs / name, labels, title=f"E_q[z{'' if len(means) == 1 else i + 1}"
                                                                             f" | x], {len(m)} test examples"))
    if (run / "metrics.jsonl").is_file():
        written.append(save_loss_curve(run / "metrics.jsonl", figs / "loss.png"))
    return [str(p) for p in written]


def write_exact_pictures(run: Path, model, run_config, seed: int = 0) -> list[str]:
    """A flow's or autoregressive model's pictures in RUN/figures. Images: ``samples.png`` (64 samples) and
    ``samples_t0.7.png`` (temperature 0.7: the base std for a flow, as in Glow §5; the softmax temperature for an
    autoregressive model). 2-D data: ``density.png``, the learned log-density as a heat map with held-out data on top
    beside the true density where the toy has one, and ``samples.png`` (2000 samples). 1-D sequences: a waveform
    picture and WAV files. All: the loss curve."""
    import torch

    from .data import load_dataset
    from .viz import save_density_maps, save_grid, save_loss_curve

    figs, written = run / "figures", []
    g = _generator(seed)
    if model.spec.is_image:
        scale = max(1, 32 // model.spec.event_shape[-1])
        with torch.no_grad():
            written.append(save_grid(model.sample(64, g), figs / "samples.png", scale=scale))
            written.append(save_grid(model.sample(64, g, temperature=0.7), figs / "samples_t0.7.png", scale=scale))
    elif _is_sequence(model.spec):
        with torch.no_grad():
            written += _write_sequences(model.sample(8, g), model.spec, figs / "samples.png")
    elif model.spec.event_shape == (2,):
        from .data.toys import toy_has_density, toy_log_density

        test = load_dataset(run_config.data).test[:1000]
        lo, hi = test.min(0).values, test.max(0).values
        pad = 0.15 * (hi - lo)
        extent = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
        H = 200
        xs, ys = torch.linspace(extent[0], extent[1], H), torch.linspace(extent[2], extent[3], H)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)  # row 0 at the bottom
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            log_p = torch.cat([model.log_prob(b.to(model.device, dtype)).double().cpu() for b in grid.split(5000)])
        panels = [(f"{run_config.model}: log p_θ, test data on top", log_p.reshape(H, H), test)]
        try:
            if toy_has_density(run_config.data):
                panels.insert(0, ("true log p", toy_log_density(run_config.data, grid).double().reshape(H, H), None))
        except ValueError:
            pass
        written.append(save_density_maps(panels, extent, figs / "density.png"))
        with torch.no_grad():
            written.append(save_grid(model.sample(2000, g), figs / "samples.png"))
    if (run / "metrics.jsonl").is_file():
        written.append(save_loss_curve(run / "metrics.jsonl", figs / "loss.png"))
    return [str(p) for p in written]


def _kde(points, at, sigma: float, score: bool = False):
    """log q (or ∇log q with ``score``) at ``at`` ``[M, 2]`` of q = (points) ∗ N(0, σ²I), the empirical distribution
    of ``points`` ``[N, 2]`` blurred by Gaussian noise of std σ: exact for the points, so the score of the σ-noised
    training data that denoising score matching targets. ∇log q(x) = (Σ_i w_i x_i − x)/σ²,
    w = softmax(−‖x − x_i‖²/(2σ²)). Returns ``[M]`` or ``[M, 2]``, float64."""
    import torch

    pts, out = points.double(), []
    for chunk in at.double().split(1024):
        logits = -torch.cdist(chunk, pts).pow(2) / (2 * sigma**2)  # [m, N]
        if score:
            out.append((torch.softmax(logits, 1) @ pts - chunk) / sigma**2)
        else:
            out.append(torch.logsumexp(logits, 1) - math.log(len(pts)) - math.log(2 * math.pi * sigma**2))
    return torch.cat(out)


def _true_score(data: str, at):
    """∇ log p of a toy with a closed-form density, by central differences (h = 1e-4) of its log-density (non-finite
    where the density is 0 nearby, e.g. off a checkerboard's squares)."""
    import torch

    from .data.toys import toy_log_density

    h, at = 1e-4, at.double()
    cols = []
    for d in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[d] = h
        cols.append((toy_log_density(data, at + e) - toy_log_density(data, at - e)) / (2 * h))
    return torch.stack(cols, 1)


def write_score_pictures(run: Path, model, run_config, seed: int = 0) -> list[str]:
    """A score-based model's pictures in RUN/figures.

    2-D data: ``score_field.png``, the learned score as arrows over a log-density beside the data's own (an EBM: the
    data at its noise level, σ for DSM or σ = 0 for the other losses, beside −∇f_θ over e^{−f_θ} normalized on the
    window; an NCSN: three levels of its ladder, the σ-noised data above s_θ(x, σ)); the data side is the toy's
    closed-form density and score where it has one and σ = 0, else the σ-noised empirical training distribution
    (:func:`_kde` of 3000 training points, with Scott's bandwidth at σ = 0). ``trajectories.png``, Langevin chains
    from noise to the data; ``langevin.png``, the chains at six times; ``samples.png``, 1000 samples. Images:
    ``samples.png`` (36 samples), ``langevin.png`` (8 chains over time). Both: the loss curve."""
    from .data import load_dataset
    from .score.ncsn import NCSN
    from .viz import save_grid, save_loss_curve, save_strip, save_trajectories

    figs, written = run / "figures", []
    if (run / "metrics.jsonl").is_file():
        written.append(save_loss_curve(run / "metrics.jsonl", figs / "loss.png"))
    if not (model.spec.is_image or model.spec.event_shape == (2,)):
        return [str(p) for p in written]
    data = load_dataset(run_config.data)
    levels = model.config.n_sigmas if isinstance(model, NCSN) else 1
    updates = model.default_steps() * levels  # Langevin updates of one default chain
    stride = max(1, updates // 50)
    out = model.draw(36 if model.spec.is_image else 1000, _generator(seed), keep_trajectory=True,
                     trajectory_stride=stride)
    traj = out.trajectory  # [K, n, ...]: the start, every stride-th update, the end
    keep = sorted({round(k * (len(traj) - 1) / 5) for k in range(6)})
    labels = [f"update {min(k * stride, updates)}" if k < len(traj) - 1 else f"end ({out.nfe} NFE)" for k in keep]
    if model.spec.is_image:
        scale = max(1, 32 // model.spec.event_shape[-1])
        written.append(save_grid(out.x0, figs / "samples.png", scale=scale))
        written.append(save_strip(traj[keep][:, :8].clamp(-1, 1), figs / "langevin.png", labels, scale=scale))
    elif model.spec.event_shape == (2,):
        written.append(save_grid(out.x0, figs / "samples.png"))
        written.append(save_strip(traj[keep], figs / "langevin.png", labels))
        written.append(save_trajectories(traj, figs / "trajectories.png", background=data.test[:2000],
                                         title=f"{run_config.model}: {model.check_sampler(None)} chains from noise "
                                               f"({out.nfe} score evaluations)"))
        written.append(_write_score_field(model, run_config, data, figs / "score_field.png"))
    return [str(p) for p in written]


def _write_score_field(model, run_config, data, path: Path) -> Path:
    """``score_field.png`` of :func:`write_score_pictures` (2-D data)."""
    import torch

    from .data import DataError
    from .data.toys import toy_has_density, toy_log_density
    from .score.ncsn import NCSN
    from .viz import FieldPanel, save_score_fields

    test = data.test[:5000].double()
    lo, hi = test.min(0).values, test.max(0).values
    mid, half = (lo + hi) / 2, float((hi - lo).max()) * 0.6  # a square window, 20% margin
    extent = (mid[0].item() - half, mid[0].item() + half, mid[1].item() - half, mid[1].item() + half)
    H, A = 80, 21  # heatmap and arrow grid sizes

    def grid(k: int):
        """[k·k, 2] points of a k×k grid over the window, row-major from the bottom-left."""
        xs = torch.linspace(extent[0], extent[1], k, dtype=torch.float64)
        ys = torch.linspace(extent[2], extent[3], k, dtype=torch.float64)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy], -1).reshape(-1, 2)

    heat, arrows = grid(H), grid(A)
    try:
        has_density = toy_has_density(run_config.data)
    except DataError:
        has_density = False
    train = data.train[:3000]  # enough for the picture; every KDE costs H²·3000

    def data_panel(sigma: float) -> FieldPanel:
        """The data at noise level σ: closed form at σ = 0 where the toy has it, else the blurred training points."""
        if sigma == 0 and has_density:
            return FieldPanel("data: true log p and ∇log p", toy_log_density(run_config.data, heat).reshape(H, H),
                              _true_score(run_config.data, arrows).reshape(A, A, 2))
        h = sigma or float(train.double().std(0).mean()) * len(train) ** (-1 / 6)  # Scott's bandwidth in 2-D
        name = f"data ∗ N(0, {sigma:.3g}²)" if sigma else f"data (KDE, Scott h={h:.2g})"
        return FieldPanel(f"{name}: log q, ∇log q", _kde(train, heat, h).reshape(H, H),
                          _kde(train, arrows, h, score=True).reshape(A, A, 2))

    dtype = next(model.parameters()).dtype

    def learned(points, sigma: float | None = None):
        """The model's score at ``points`` ``[M, 2]`` (float64 → the model's dtype and back)."""
        x = points.to(model.device, dtype)
        with torch.no_grad():
            s = model.score(x) if sigma is None else model.score(x, sigma)
        return s.double().cpu()

    if isinstance(model, NCSN):
        sig = model.sigmas.cpu()
        idx = sorted({int(torch.argmin((sig.log() - math.log(t)).abs())) for t in (2.0, 0.5, 0.1)})
        top, bottom = [], []
        for i in idx:
            s_i = float(sig[i])
            panel = data_panel(s_i)
            top.append(panel)
            bottom.append(FieldPanel(f"NCSN s_θ(x, σ={s_i:.3g})", panel.log_density,
                                     learned(arrows, s_i).reshape(A, A, 2)))
        rows = [top, bottom]
        title = f"the σ-noised data (top) and the learned noise-conditional score (bottom), at {len(idx)} levels"
    else:
        sigma = model.config.sigma if model.config.loss_type == "dsm" else 0.0
        with torch.no_grad():
            f = model.energy(heat.to(model.device, dtype)).double().cpu()
        cell = ((extent[1] - extent[0]) / (H - 1)) * ((extent[3] - extent[2]) / (H - 1))
        log_p = -f - torch.logsumexp(-f, 0) - math.log(cell)  # e^{−f}/Z with Z summed over the window
        what = f"the σ={sigma:g}-noised data (DSM)" if sigma else f"the data ({model.config.loss_type.upper()})"
        rows = [[data_panel(sigma), FieldPanel("EBM: log e^{−f}/Z (window) and −∇f", log_p.reshape(H, H),
                                               learned(arrows).reshape(A, A, 2))]]
        if sigma and has_density:
            rows[0].insert(0, FieldPanel("true log p", toy_log_density(run_config.data, heat).reshape(H, H)))
        title = f"score of {what}: data (left) and learned (right)"
    return save_score_fields(rows, extent, path, title=title)


def write_pictures(run: Path, seed: int = 0, n: int = 8) -> list[str]:
    """Pictures of a run in RUN/figures. Diffusion: forward-process strip, reverse trajectory (strip and GIF),
    schedule plot and loss curve; VAEs: :func:`write_vae_pictures`; score-based models: :func:`write_score_pictures`."""
    import torch

    from .vae.vae import LatentVariableModel

    from .data import load_dataset
    from .diffusion import gaussian as G
    from .diffusion.samplers import ancestral
    from .diffusion.schedules import DiscreteSchedule, ScheduleConfig
    from .score.base import ScoreModel
    from .viz import save_gif, save_loss_curve, save_schedule_plot, save_strip

    model, run_config = _load(run, raw=False)
    if isinstance(model, LatentVariableModel):
        return write_vae_pictures(run, model, run_config, seed, n)
    if isinstance(model, ScoreModel):
        return write_score_pictures(run, model, run_config, seed)
    if _is_exact(model):
        return write_exact_pictures(run, model, run_config, seed)
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
    T_ref = T if run_config.model == "ddpm" else 1000  # the plot puts schedules of different T on t/T
    sched = {f"DDPM {k}": DiscreteSchedule.from_config(ScheduleConfig(kind=k, T=T_ref)) for k in ("linear", "cosine")}
    if run_config.model == "vdm":  # the learned γ beside VDM's fixed linear one with the initial end points
        from .diffusion.schedules import FixedLinearGamma

        init = model.config.schedule
        sched = {f"this run ({init.kind})": model.schedule,
                 "VDM fixed linear": FixedLinearGamma(init.gamma_0, init.gamma_1).discrete(T), **sched}
    written.append(save_schedule_plot({k: (s.alphas_cumprod, s.logsnr) for k, s in sched.items()},
                                      figs / "schedule.png"))
    if (run / "metrics.jsonl").is_file():
        written.append(save_loss_curve(run / "metrics.jsonl", figs / "loss.png"))
    return [str(p) for p in written]


# ---------------------------------------------------------------------------------------------- commands


@app.command()
@_friendly
def train(
    model: str = typer.Argument("ddpm", help="Model family (see `genmodels models`): ddpm, vdm, vae, hvae, ebm, "
                                             "ncsn, nice, realnvp, glow, pixelcnn, wavenet."),
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
    settings: Optional[list[str]] = typer.Option(
        None, "--set", help="Model config field=value, repeatable; dotted for nested fields: latent_dim=16, "
                            "latent_dims=32,16, coder.backbone=conv, kl_warmup_steps=2000, free_bits=0.1, "
                            "objective=iwae, train_samples=5. All fields: `genmodels config MODEL --data DATA`."),
) -> None:
    """Train a model (ddpm, vdm, vae, hvae, ebm, ncsn, nice, realnvp, glow, pixelcnn, wavenet) on a dataset; a run
    folder holds everything needed to resume, sample and evaluate."""
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
    result = run_train(model, data, out, resume, train_overrides, model_overrides, unet_overrides, settings)
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
    sampler: Optional[str] = typer.Option(None, help="Diffusion: ancestral | ddim | dpm++ | heun | euler_maruyama | "
                                                     "ode | pc. VAE: ancestral (x ~ p(x|z)) | mean (E[x|z]). EBM: "
                                                     "langevin. NCSN: annealed. Flows: inverse. PixelCNN, WaveNet: "
                                                     "ancestral. [default: the first named]"),
    steps: Optional[int] = typer.Option(None, help="Diffusion: steps / noise levels (Heun: 2N−1 NFE, pc: 2N) "
                                                   "[default: all T]. EBM: Langevin steps. NCSN: Langevin steps per "
                                                   "noise level (NFE = levels × steps + 1) [default: the config's]."),
    eta: float = typer.Option(0.0, help="DDIM η (0: deterministic, 1: ancestral)."),
    seed: int = typer.Option(0, help="Seed of the sampler's noise."),
    out: Optional[Path] = typer.Option(None, help="PNG path [default RUN/samples/SAMPLER_STEPS.png]."),
    raw: bool = typer.Option(False, "--raw", help="Use the raw weights instead of the EMA weights."),
    batch_size: int = typer.Option(100, help="Samples drawn at once (≈100 is fastest on CPU)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    temperature: float = typer.Option(1.0, help="Flows: std of the base distribution (Glow's T, e.g. 0.7); "
                                                "autoregressive models: softmax temperature. 1: the model itself."),
) -> None:
    """Draw samples from a run into a PNG grid and an .npz file; prints what it wrote as JSON."""
    typer.echo(json.dumps(run_sample(run, n, sampler, steps, eta, seed, out, raw, progress, batch_size,
                                     temperature)))


@app.command()
@_friendly
def evaluate(
    run: Path = typer.Argument(..., help="Run folder."),
    split: str = typer.Option("test", help="test | train."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N examples."),
    t_samples: int = typer.Option(4, help="DDPM: stratified importance-sampled steps per example; VDM: "
                                          "stratified times per example."),
    exact: bool = typer.Option(False, "--exact", help="DDPM, discrete-time VDM: sum all T steps (T evaluations "
                                                     "per example)."),
    k: int = typer.Option(1, "--k", help="VAE: importance samples of the IWAE bound (1: the ELBO); e.g. 5000."),
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
                                                      "samplers (ancestral,ddim,dpm++,heun,euler_maruyama,ode,pc; "
                                                      "EBM: langevin; NCSN: annealed), options in brackets: "
                                                      "'ddim[eta=0.5],heun[s_churn=40],annealed[eps=2e-5]'."),
    nfe: str = typer.Option("5,10,20,50", help="Sample quality: NFE budgets, e.g. 5,10,20,50,1000; per sampler "
                                             "after ';', e.g. '5,10,20,50;ancestral=20,1000'."),
    n: int = typer.Option(500, help="Sample quality: samples per point (the floor uses as many real images)."),
    tol: str = typer.Option("1e-2,1e-3", help="Sample quality: rtol=atol values of the adaptive 'ode' sampler."),
    inception_weights: Optional[Path] = typer.Option(None, help="Sample quality: also FID with this Inception "
                                                                "weights file (needs genmodels[inception])."),
) -> None:
    """Evaluate a run, printing JSON.

    Default: the split's NLL (an upper bound for DDPM and VAEs) in bits/dim and nats per example: bpd, bpd_stderr,
    nats, nats_stderr, terms_bpd (DDPM: prior = L_T, diffusion = Σ L_t, reconstruction = L_0; VDM: prior, diffusion
    (L_∞ or L_T) and reconstruction (its discretized decoder); VAE: reconstruction,
    the KL of each layer, and with --k the IWAE gap), examples, seconds; each example's NLL is saved beside the JSON
    (.npy). VAEs also report elbo_bpd, elbo_nats and the active units of each layer. ``--likelihood ode``: bits/dim through the
    probability-flow ODE. ``--sampler``: the NFE sweep of sample quality (Fréchet distance on the dataset's own
    classifier, KID, precision/recall, with the test-vs-train floor), written to RUN/nfe_sweep/. Score-based models
    (ebm, ncsn) have no likelihood: for them only ``--sampler`` applies.
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
        name = f"eval_{split}.json" if k == 1 else f"eval_{split}_iwae{k}.json"
        result = run_evaluate(run, split, limit, t_samples, exact, calibrate, batch_size, seed, raw, progress, k,
                              (out or run / name).with_suffix(".npy"))
    else:
        raise ValueError(f"--likelihood must be 'bound' or 'ode', got {likelihood!r}")
    text = json.dumps(result, indent=2)
    atomic_write_text(out or run / name, text + "\n")
    typer.echo(text)


@app.command()
@_friendly
def pictures(run: Path = typer.Argument(..., help="Run folder."), seed: int = typer.Option(0)) -> None:
    """Write a run's pictures to RUN/figures: for diffusion the forward-process strip, the reverse trajectory (PNG and
    GIF), the schedule plot and the loss curve; for VAEs samples, reconstructions, interpolations, the 2-D latent
    space by label and the loss curve; for EBM and NCSN samples, Langevin chains over time, and on 2-D data the learned
    score field beside the data's and the chains' paths from noise to the data."""
    typer.echo(json.dumps(write_pictures(run, seed)))


@app.command("config")
@_friendly
def show_config(
    model: str = typer.Argument(..., help="Model family: ddpm, vdm, vae, hvae, ebm, ncsn, nice, realnvp, glow, "
                                          "pixelcnn, wavenet."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset name (the preset depends on the data)."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="field=value assignments to apply first."),
) -> None:
    """Print the model config `genmodels train MODEL --data DATA` would use, as JSON: the fields --set can change."""
    from .checkpoint import config_to_dict
    from .data import load_dataset

    cfg = model_config(model, load_dataset(data).spec, settings)
    typer.echo(json.dumps(config_to_dict(cfg), indent=2))


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
