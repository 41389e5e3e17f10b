"""The jobs behind the command line: train, sample, evaluate, sweep and draw the pictures of a run.

Each job reads a run folder (or builds one), talks to the model only through the interface of
:class:`~genmodels.core.GenerativeModel` and the capabilities its family declares in :mod:`genmodels.families`, and
returns a JSON-ready dict. No job asks which family a model is: a family added to the registry works here without
a line of change. :mod:`genmodels.cli` parses the commands and prints what these return.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .checkpoint import RunConfig, config_from_dict, config_to_dict, from_pretrained, load_run_config
from .core import EvalOptions, GenerativeModel, NoLikelihoodError, Progress, nats_to_bpd
from .data import DataError, Dataset, load_dataset
from .families import MODELS
from .fileio import atomic_path, atomic_write_text, json_dumps
from .sampling import draw_in_batches

__all__ = ["parse_value", "apply_overrides", "model_config", "run_train", "run_sample", "run_evaluate",
           "run_evaluate_ode", "run_sweep", "write_pictures", "describe_models", "progress_bar", "run_demo",
           "DEMO_MODEL", "DEMO_DATA"]

DEMO_MODEL, DEMO_DATA = "ddpm", "digits"
"""What ``genmodels demo`` trains, and on which embedded dataset (8×8 digits: about 6 minutes on 2 CPU cores)."""


def progress_bar(enabled: bool, desc: str) -> Progress | None:
    """A tqdm wrapper on stderr for a loop, or None when disabled."""
    if not enabled:
        return None
    import functools
    import sys

    from tqdm.auto import tqdm

    return functools.partial(tqdm, desc=desc, leave=False, file=sys.stderr)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- configs


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON (numbers, true/false, null, [lists], "strings"), else the bare string; '32,16' is a
    list of numbers."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(v.strip()) for v in text.split(",") if v.strip()]
    return text


def apply_overrides(config: Any, assignments: list[str]) -> Any:
    """A copy of the config dataclass ``config`` with ``key=value`` assignments applied; dotted keys reach nested
    configs (``coder.backbone=conv``, ``unet.channels=64``). Types are checked as when a run's config.json is read.

    Raises:
        ValueError: for an assignment without '=', an unknown field (the message lists the known ones at that
            level) or a value of the wrong type.
    """
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
        parsed = parse_value(value.strip())
        if isinstance(node[parts[-1]], list) and not isinstance(parsed, list):
            parsed = [parsed]  # latent_dims=32: a one-element tuple
        node[parts[-1]] = parsed
    try:
        return config_from_dict(type(config), d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--set: {e}") from None


def model_config(model_name: str, spec, settings: list[str] | None = None) -> Any:
    """The config ``genmodels train MODEL`` builds for data ``spec``: the family's preset
    (:meth:`~genmodels.registry.ModelEntry.preset`) with the ``--set key=value`` assignments applied.

    Raises:
        KeyError: unknown model (lists the known ones). ValueError: a bad assignment (:func:`apply_overrides`).
    """
    return apply_overrides(MODELS.get(model_name).preset(spec), settings or [])


def describe_models() -> list[dict[str, Any]]:
    """Every registered family with what it declares: description, samplers (default first), likelihood."""
    rows = []
    for name in MODELS.names():
        cls = MODELS.get(name).model_cls
        likelihood = cls.nll_kind if cls.has_likelihood else "none"
        rows.append({"name": name, "description": cls.description, "samplers": list(cls.samplers),
                     "likelihood": likelihood + (" + ode" if cls.has_ode_likelihood else "")})
    return rows


# ---------------------------------------------------------------------------------------------- train


def run_train(model_name: str | None, data: str, out: Path | None, resume: bool, train_overrides: dict[str, Any],
              settings: list[str] | None = None, *, refuse_finished: bool = False):
    """Build (or reload, with ``resume``) a run and train it. Returns the :class:`~genmodels.train.TrainResult`.

    ``out`` None is ``runs/MODEL``; a resumed run keeps its family (``model_name`` None, or the same). On resume,
    ``train_overrides`` (the TrainConfig fields given, None for the others) replace the run's saved settings; the
    trainer applies and records each change, and refuses a different ``seed`` or ``batch_size``.
    ``refuse_finished``: refuse a resume that has nothing left to train (already at ``steps`` or its time limit).

    Raises:
        ValueError: no family or no ``--data`` for a new run; a family or ``--data`` differing from a resumed
            run's; ``--set`` on resume; a TrainConfig value out of range; a resume that changes ``seed`` or
            ``batch_size``, or (``refuse_finished``) has nothing to train.
        genmodels.train.NonFiniteError: (a ValueError) the loss or gradient norm went non-finite; the run folder
            keeps its last finite checkpoint.
    """
    from .train import TrainConfig, Trainer, model_sample_fn

    if not resume and not model_name:
        raise ValueError(f"name a model family to train (one of: {', '.join(MODELS.names())}; `genmodels models`)")
    if out is None:
        if resume:
            raise ValueError("--resume needs --out RUN, the run folder to continue")
        out = Path("runs") / model_name
    if resume:
        saved = load_run_config(out)
        if model_name and model_name != saved.model:
            raise ValueError(f"{out} is a {saved.model!r} run, not {model_name!r}; resume it as "
                             f"`genmodels train --out {out} --resume`, or train {model_name!r} in another --out")
        if data and data != saved.data:
            raise ValueError(f"--data {data!r} differs from the run's dataset {saved.data!r}; omit --data to resume")
        if settings:
            raise ValueError("--set changes the model, which a resumed run keeps; start a new run (another --out) "
                             "to train a different configuration")
        run_config = saved
        train_cfg = replace(saved.train or TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
        dataset = saved.load_data()  # through the stored source, checked against its fingerprint
    else:
        if not data:
            raise ValueError("--data is required (see `genmodels datasets`)")
        dataset = load_dataset(data)
        cfg = model_config(model_name, dataset.spec, settings)
        run_config = RunConfig.for_dataset(model_name, cfg, data, dataset)  # + the data's source and fingerprint
        train_cfg = replace(TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = MODELS.get(run_config.model).build(run_config.model_config, run_config.spec)
    sample_fn = model_sample_fn(train_cfg.n_sample, **model.preview()) if train_cfg.sample_every else None
    trainer = Trainer(model, dataset.train, dataset.spec, train_cfg, out, run_config, sample_fn)
    try:
        return trainer.fit(resume=resume, refuse_finished=refuse_finished)
    finally:
        # the program owns the process group (under torchrun): destroy it before exit, or gloo can abort at
        # interpreter shutdown ("terminate called without an active exception") after a successful run
        trainer.accelerator.end_training()


# ---------------------------------------------------------------------------------------------- sample


def _load(run: Path, raw: bool, run_config: RunConfig | None = None) -> tuple[GenerativeModel, RunConfig]:
    model, run_config = from_pretrained(run, ema=not raw, run_config=run_config)
    model.eval()
    return model, run_config


def run_sample(run: Path, n: int, sampler: str | None, steps: int | None, seed: int, out: Path | None, raw: bool,
               progress: bool, batch_size: int = 100, options: dict[str, Any] | None = None) -> dict:
    """Sample ``n`` examples from a run into a picture (:func:`genmodels.viz.save_samples`: a grid, or waveforms and,
    for audio, WAV files) and an ``.npz`` (``x`` on the model's scale and, for series the loader quantized, ``x_user``
    in the user's units, ``[n, L]``). Returns what was written, with the sampler, steps, NFE and seconds.

    ``sampler`` None is the family's default (``model.samplers[0]``); ``steps`` None its default step count;
    ``options`` the sampler's own (``eta``, ``temperature``, …; ``model.sampler_options``).

    Raises:
        KeyError: a sampler the family does not have. ValueError: an option or ``--steps`` that does not apply.
    """
    from .viz import save_samples

    options = dict(options or {})
    if "temperature" in options and not options["temperature"] > 0:
        raise ValueError(f"--temperature must be > 0, got {options['temperature']}")
    model, run_config = _load(run, raw)
    sampler = model.check_sampler(sampler, options)
    if steps is None:
        steps = model.default_steps(sampler)
    elif model.default_steps(sampler) is None:
        raise ValueError(f"--steps does not apply to the {sampler!r} sampler of a {type(model).__name__} "
                         f"(it has no step count)")
    start = time.perf_counter()
    desc = f"{sampler}{f' {steps} steps' if steps is not None else ''}, batches of {batch_size}"
    res = draw_in_batches(model, n, sampler, steps=steps, generator=_generator(seed), batch_size=batch_size,
                          progress=progress_bar(progress, desc), **options)
    seconds = time.perf_counter() - start
    tag = f"_t{options['temperature']:g}" if options.get("temperature", 1.0) != 1.0 else ""
    out = out or run / "samples" / (f"{sampler}_{steps}{tag}.png" if steps is not None else f"{sampler}{tag}.png")
    written = save_samples(res.x0, model.spec, out)
    import numpy as np

    arrays = {"x": res.x0.numpy()}  # the model's scale; x_user: the user's units, for series the loader quantized
    if run_config.data_quantization is not None:
        arrays["x_user"] = run_config.data_quantization.to_user(res.x0)
    with atomic_path(out.with_suffix(".npz"), parents=True) as tmp:  # a full disk leaves no half-written file
        np.savez_compressed(tmp, **arrays)
    result = {"picture": str(out), "samples": str(out.with_suffix(".npz")), "n": n, "sampler": sampler,
              "steps": steps, "nfe": res.nfe, "seconds": round(seconds, 2), "weights": "raw" if raw else "ema",
              **{k: options.get(k, 1.0 if k == "temperature" else 0.0)
                 for k in ("eta", "temperature") if k in model.sampler_options.get(sampler, ())}}
    if run_config.data_quantization is not None:
        result["units"] = f"x_user in {out.with_suffix('.npz').name}: {run_config.data_quantization.describe()}"
    if model.spec.is_sequence:
        result["wav"] = [str(p) for p in written]  # the waveform picture, then the WAV files of audio data
    return result


# ---------------------------------------------------------------------------------------------- evaluate


def _likelihood_run(run: Path) -> RunConfig:
    """The run's config, after checking (before any weights or data are loaded) that its family has a likelihood.

    Raises:
        NoLikelihoodError: (a ValueError: one line, exit status 2) saying what to run instead.
    """
    run_config = load_run_config(run)
    cls = MODELS.get(run_config.model).model_cls
    if not cls.has_likelihood:
        raise NoLikelihoodError(f"a {run_config.model!r} run has no likelihood: {cls.no_likelihood_reason}; so no "
                                f"bits/dim are reported. Measure sample quality instead: genmodels evaluate {run} "
                                f"--sampler {cls.samplers[0]} --nfe 1000")
    return run_config


def _load_split(run: Path, raw: bool, split: str, limit: int | None, run_config: RunConfig, data: str | None = None):
    """(model, dataset, x): a run and the first ``limit`` examples of its ``split``: of the run's own data (through
    its stored source, refused if it changed since training: :meth:`RunConfig.load_data`), or of ``data``
    (``--data``, out-of-distribution: same event shape and levels)."""
    if split not in ("test", "train"):
        raise ValueError(f"--split must be 'test' or 'train', got {split!r}")
    if limit is not None and limit < 1:  # x[:0] would be everything, x[:-5] all but 5
        raise ValueError(f"--limit must be ≥ 1 (omit it to evaluate the whole split), got {limit}")
    dataset = run_config.load_data(data)
    model, _ = _load(run, raw, run_config)
    x = dataset.test if split == "test" else dataset.train
    return model, dataset, x[:limit] if limit else x


def _check_eval_options(model: GenerativeModel, options: EvalOptions, run_config: RunConfig) -> None:
    """Raise for an evaluation option the family does not honour (``model.eval_options``).

    Raises:
        ValueError: naming the option, the family and the options it takes.
    """
    bad = [f for f in options.changed() if f not in model.eval_options]
    if bad:
        flags = ", ".join("--" + f.replace("_", "-") for f in bad)
        takes = ", ".join("--" + f.replace("_", "-") for f in model.eval_options) or "none"
        raise ValueError(f"{flags} does not apply to a {run_config.model!r} run (its evaluation options: {takes})")


def run_evaluate(run: Path, split: str, limit: int | None, options: EvalOptions, batch_size: int, seed: int,
                 raw: bool, progress: bool, per_example: Path | None = None, data: str | None = None) -> dict:
    """The NLL (or bound) of a split in bits/dim, as a JSON-ready dict with the same keys for every family, plus the
    entries the family adds (``model.eval_extras``: a VAE's ELBO beside its IWAE bound, …). ``per_example``: also
    save each example's NLL in nats there (``.npy``, float64), for paired comparisons on the same examples.
    ``data``: evaluate on that dataset instead of the run's (out-of-distribution; same event shape and levels).

    Raises:
        NoLikelihoodError: for a family without a likelihood. ValueError: an option the family does not honour.
    """
    from .metrics.likelihood import evaluate_nll

    run_config = _likelihood_run(run)
    model, dataset, x = _load_split(run, raw, split, limit, run_config, data)
    _check_eval_options(model, options, run_config)
    kwargs = model.nll_kwargs(options, dataset.train, _generator(seed + 1), len(x))  # pilot draws: their own stream
    report = evaluate_nll(model, x, batch_size=batch_size, generator=_generator(seed),
                          progress=progress_bar(progress, "evaluate"), **kwargs)
    result = {"model": run_config.model, "data": data or run_config.data, "split": split,
              "weights": "raw" if raw else "ema", **({"trained_on": run_config.data} if data else {}),
              **report.to_json(), **_true_nll(data or run_config.data, x)}
    if per_example is not None:
        import numpy as np

        with atomic_path(per_example, parents=True) as tmp:
            np.save(tmp, report.per_example_nats.numpy())
        result["per_example_nats"] = str(per_example)
    result.update(model.eval_extras(x, report, options))
    return result


def run_evaluate_ode(run: Path, split: str, limit: int | None, batch_size: int, seed: int, raw: bool,
                     progress: bool, rtol: float, atol: float, hutchinson_samples: int,
                     data: str | None = None) -> dict:
    """Bits/dim through the probability-flow ODE (:func:`genmodels.metrics.likelihood.evaluate_ode_nll`).

    Raises:
        ValueError: for a family without an ODE likelihood (``has_ode_likelihood``).
    """
    from .metrics.likelihood import evaluate_ode_nll

    run_config = _likelihood_run(run)
    if not MODELS.get(run_config.model).model_cls.has_ode_likelihood:
        raise ValueError(f"--likelihood ode needs a diffusion model; this run is a {run_config.model!r} model")
    model, _, x = _load_split(run, raw, split, limit, run_config, data)
    report = evaluate_ode_nll(model, x, batch_size=batch_size, generator=_generator(seed), rtol=rtol, atol=atol,
                              hutchinson_samples=hutchinson_samples,
                              progress=progress_bar(progress, "ODE likelihood"))
    return {"model": run_config.model, "data": data or run_config.data, "split": split, "likelihood": "ode",
            "weights": "raw" if raw else "ema", **({"trained_on": run_config.data} if data else {}),
            **report.to_json(), **_true_nll(data or run_config.data, x)}


def _true_nll(data: str, x) -> dict:
    """For a toy whose density is known: the true data NLL of the same points, bits/dim (else {})."""
    from .data.toys import toy_has_density, toy_log_density

    try:
        if not toy_has_density(data):
            return {}
    except DataError:
        return {}
    bpd = nats_to_bpd(-toy_log_density(data, x).double(), x.shape[1])
    return {"true_data_bpd": bpd.mean().item(), "true_data_bpd_stderr": (bpd.std() / math.sqrt(len(bpd))).item()}


# ---------------------------------------------------------------------------------------------- sweep


def run_sweep(run: Path, samplers: list[str], nfes: dict[str, list[int]], n: int, seed: int, tolerances: list[float],
              batch_size: int, raw: bool, progress: bool, inception_weights: Path | None = None,
              on_row=None) -> dict:
    """Sample quality against NFE and wall time for each sampler (:func:`genmodels.metrics.nfe_sweep.nfe_sweep`);
    writes RUN/nfe_sweep/{sweep.json, sweep.md, sweep.png} and returns the JSON. ``on_row(row, key)`` is called
    with each finished row and the name of the headline metric.

    Raises:
        ValueError: for a family whose samplers have no step count, or budgets no sampler fits.
    """
    from .metrics.nfe_sweep import nfe_sweep, sweep_table
    from .metrics.sample_quality import sample_quality
    from .viz import save_quality_vs_cost

    model, run_config = _load(run, raw)
    if not any(model.steps_for_nfe(s, 1) is not None for s in model.samplers):
        raise ValueError(f"--sampler/--nfe sweep the samplers of diffusion and score-based models; this run is a "
                         f"{run_config.model!r} model (its samplers have a fixed cost: `genmodels sample` reports it)")
    dataset = run_config.load_data()  # the run's own data, checked against its fingerprint
    out_dir = run / "nfe_sweep"

    def quality(x):
        """Scores of samples ``x`` against the test split, with their floors."""
        return sample_quality(x, dataset, generator=_generator(seed), inception_weights=inception_weights)

    image = model.spec.is_image and inception_weights is None
    key = "fd" if model.spec.is_image else "sliced_w2"
    metrics = ("fd", "kid", "precision", "recall") if model.spec.is_image else ("sliced_w2", "w2", "mmd2")
    rows = nfe_sweep(model, samplers, nfes, quality, n=n, seed=seed, batch_size=batch_size,
                     ode_tolerances=tolerances, cache_dir=out_dir / "samples",
                     progress=progress_bar(progress, "batches"),
                     on_row=None if on_row is None else (lambda row: on_row(row, key)))
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
    atomic_write_text(out_dir / "sweep.json", json_dumps(result, indent=2) + "\n")  # NaN scores as null
    return result


# ---------------------------------------------------------------------------------------------- pictures


def write_pictures(run: Path, seed: int = 0) -> list[str]:
    """A run's pictures in RUN/figures: the family's own (``model.figures``: e.g. for diffusion the forward strip,
    the reverse trajectory and the schedule plot), a sample grid where the family has none, and the loss curve."""
    from .viz import save_loss_curve, save_samples

    model, run_config = _load(run, raw=False)
    data: Dataset = run_config.load_data()  # the run's own data, checked against its fingerprint
    figs = run / "figures"
    g = _generator(seed)
    written = list(model.figures(data, figs, g))
    if not written:
        with torch.no_grad():
            written = save_samples(model.draw(64, g, **model.preview()).x0, model.spec, figs / "samples.png")
    if (run / "metrics.jsonl").is_file():
        written.append(save_loss_curve(run / "metrics.jsonl", figs / "loss.png"))
    return [str(p) for p in written]


# ---------------------------------------------------------------------------------------------- demo


def run_demo(out: Path, data: str | None, minutes: float, steps: int, threads: int | None, progress: bool) -> dict:
    """The main job: train :data:`DEMO_MODEL` on an embedded dataset (:data:`DEMO_DATA` by default) for ``minutes``
    or ``steps``, whichever ends first, draw 64 samples with the family's default sampler, write the pictures and
    evaluate the test split. Re-running it resumes the run in ``out``. Returns the summary printed by ``demo``."""
    resume = (out / "train_state.pt").is_file()
    res = run_train(DEMO_MODEL, "" if resume else data or DEMO_DATA, out, resume,
                    dict(steps=steps, time_limit_minutes=minutes, batch_size=64, lr=1e-3, warmup_steps=200,
                         ema_halflife_kimg=20.0, checkpoint_every=1000, log_every=100, progress=progress,
                         num_threads=threads))
    grid = run_sample(out, 64, None, None, 0, out / "samples.png", False, progress)
    figs = write_pictures(out)
    ev = run_evaluate(out, "test", None, EvalOptions(), 100, 0, False, progress)
    return {"run": str(out), "data": ev["data"], "train_steps": res.steps, "train_minutes": round(res.seconds / 60, 2),
            "samples": grid["picture"], "figures": figs, "test_bpd": round(ev["bpd"], 4),
            "test_bpd_stderr": round(ev["bpd_stderr"], 4),
            "terms_bpd": {k: round(v, 4) for k, v in ev["terms_bpd"].items()}, "nll_kind": ev["nll_kind"],
            "examples": ev["examples"], "eval_seconds": round(ev["seconds"], 1)}
