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
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from .checkpoint import RunConfig, config_from_dict, config_to_dict, from_pretrained, load_run_config
from .core import EvalOptions, GenerativeModel, NoLikelihoodError, Progress, nats_to_bpd
from .data import DataError, Dataset, load_dataset
from .families import MODELS
from .fileio import atomic_path, atomic_write_text, json_dumps
from .precision import accelerate_mixed_precision, autocast, resolve_precision
from .sampling import draw_in_batches

__all__ = ["parse_value", "apply_overrides", "model_config", "run_train", "run_sample", "run_evaluate",
           "run_evaluate_ode", "run_sweep", "run_guidance_sweep", "run_inpaint", "parse_classes", "write_pictures",
           "describe_models", "progress_bar", "run_demo", "train_precision", "DEMO_MODEL", "DEMO_DATA"]

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


def model_config(model_name: str, spec, settings: list[str] | None = None, conditional: bool = False) -> Any:
    """The config ``genmodels train MODEL`` builds for data ``spec``: the family's preset
    (:meth:`~genmodels.registry.ModelEntry.preset`) with the ``--set key=value`` assignments applied, and with
    ``conditional`` its :class:`~genmodels.core.Conditioning` set to the data's classes (``cond.num_classes``;
    ``--set cond.p_uncond=…`` sets the label dropout).

    Raises:
        KeyError: unknown model (lists the known ones). ValueError: a bad assignment (:func:`apply_overrides`);
            ``conditional`` for unlabelled data, for a family without conditioning, or against a different
            ``cond.num_classes``.
    """
    cfg = apply_overrides(MODELS.get(model_name).preset(spec), settings or [])
    if not conditional:
        return cfg
    if not hasattr(cfg, "cond"):
        raise ValueError(f"a {model_name!r} model has no class conditioning; drop --conditional")
    if spec.num_classes is None:
        raise ValueError(f"--conditional needs labelled data, and {spec.name!r} has no labels (a folder: one "
                         f"subfolder per class; an npz file: key y)")
    if cfg.cond.num_classes not in (0, spec.num_classes):
        raise ValueError(f"--set cond.num_classes={cfg.cond.num_classes} differs from the data's "
                         f"{spec.num_classes} classes; drop one of them")
    return replace(cfg, cond=replace(cfg.cond, num_classes=spec.num_classes))


def parse_classes(text: str | None, spec, n: int | None = None) -> Any:
    """The labels ``--class`` asks for: None (none given), ``"all"`` (returned as is: every class, one grid row
    each), a class number or a class name (``Sandal``), or several separated by commas; a list of ints otherwise.

    Raises:
        ValueError: a class that is neither a number nor one of the data's class names (the message lists them).
    """
    if text is None or text == "all":
        return text
    names = list(spec.class_names or ())
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lstrip("-").isdigit():
            out.append(int(part))
        elif part in names:
            out.append(names.index(part))
        else:
            known = f"0..{spec.num_classes - 1}" if spec.num_classes else "none: the data has no labels"
            named = f" or a name: {', '.join(names)}" if names else ""
            raise ValueError(f"--class {part!r} is not a class of {spec.name!r} (classes {known}{named})")
    return out


def _labels(model: GenerativeModel, classes: Any, n: int) -> tuple[torch.Tensor | None, int | None]:
    """``[n]`` labels for ``--class`` (:func:`parse_classes`) and the grid's row length (one row per class for
    ``all``); ``(None, None)`` when no class is asked."""
    if classes is None:
        return None, None
    if model.num_classes is None:
        model.check_label(torch.zeros(1, dtype=torch.long))  # the one-line "unconditional" error
    if classes == "all":
        per = max(1, -(-n // model.num_classes))
        return torch.arange(model.num_classes).repeat_interleave(per)[:n], per
    y = torch.tensor(classes, dtype=torch.long).repeat(-(-n // len(classes)))[:n]
    if int(y.max()) >= model.num_classes or int(y.min()) < 0:
        bad = int(y.max()) if int(y.max()) >= model.num_classes else int(y.min())
        raise ValueError(f"--class {bad} is out of range: this model has classes 0..{model.num_classes - 1}")
    return y, None


def entry_config(name: str) -> type:
    """The config dataclass of a registered family."""
    return MODELS.get(name).config_cls


def describe_models() -> list[dict[str, Any]]:
    """Every registered family with what it declares: description, samplers (default first), likelihood, whether it
    can be class-conditional (its config has ``cond``), the samplers with guidance and the inpainting methods."""
    rows = []
    for name in MODELS.names():
        cls = MODELS.get(name).model_cls
        likelihood = cls.nll_kind if cls.has_likelihood else "none"
        rows.append({"name": name, "description": cls.description, "samplers": list(cls.samplers),
                     "likelihood": likelihood + (" + ode" if cls.has_ode_likelihood else ""),
                     "conditional": "cond" in {f.name for f in fields(entry_config(name))},
                     "guidance": list(cls.guidance_samplers), "inpainting": list(cls.inpainters)})
    return rows


# ---------------------------------------------------------------------------------------------- train


def _curve_fn(dataset: Dataset, n: int, seed: int = 0):
    """The learning curve's ``curve_fn`` (:class:`~genmodels.train.Trainer`): ``{"bpd", "bpd_stderr"}`` of the first
    ``n`` test examples (given their labels for a conditional model), with the default evaluation options and the
    same noise at every point."""
    from .metrics.likelihood import evaluate_nll

    x = dataset.test[:n]

    def curve(model: GenerativeModel) -> dict:
        """One learning-curve point of ``model`` (the EMA copy): its bits/dim, or None with the error."""
        y = None if model.num_classes is None or dataset.test_labels is None else dataset.test_labels[:n]
        kwargs = model.nll_kwargs(EvalOptions(), dataset.train, _generator(seed + 1), len(x))
        try:
            report = evaluate_nll(model, x.to(model.device), batch_size=100, generator=_generator(seed), y=y,
                                  **kwargs)
        except ValueError as e:  # a non-finite NLL (an untrained model's): a missing point, not a failed run
            return {"bpd": None, "error": str(e).splitlines()[0]}
        return {"bpd": report.bpd, "bpd_stderr": report.bpd_stderr, "examples": report.examples}

    return curve


def _device() -> torch.device:
    """Where a command runs its model: the GPU when one is visible (accelerate's choice too), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_precision(precision: str | None, resume: bool) -> str | None:
    """``TrainConfig.mixed_precision`` of ``--precision`` (:mod:`genmodels.precision`): None on a resume keeps the
    run's own; a new run's None is ``auto``.

    Raises:
        ValueError: an unknown precision, or fp16 without a GPU.
    """
    if precision is None and resume:
        return None
    return accelerate_mixed_precision(resolve_precision(precision or "auto", _device()))


def run_train(model_name: str | None, data: str, out: Path | None, resume: bool, train_overrides: dict[str, Any],
              settings: list[str] | None = None, *, refuse_finished: bool = False, conditional: bool = False,
              curve_examples: int = 200):
    """Build (or reload, with ``resume``) a run and train it. Returns the :class:`~genmodels.train.TrainResult`.

    ``out`` None is ``runs/MODEL``; a resumed run keeps its family (``model_name`` None, or the same). On resume,
    ``train_overrides`` (the TrainConfig fields given, None for the others) replace the run's saved settings; the
    trainer applies and records each change, and refuses a different ``seed`` or ``batch_size``.
    ``refuse_finished``: refuse a resume that has nothing left to train (already at ``steps`` or its time limit).
    ``conditional``: a class-conditional model of the data's labels (:func:`model_config`). With
    ``curve_every_minutes`` set, a family with a likelihood logs the learning curve: the test bits/dim of the first
    ``curve_examples`` test examples (:func:`_curve_fn`).

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
        if settings or conditional:
            raise ValueError("--set and --conditional change the model, which a resumed run keeps; start a new run "
                             "(another --out) to train a different configuration")
        run_config = saved
        train_cfg = replace(saved.train or TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
        dataset = saved.load_data()  # through the stored source, checked against its fingerprint
    else:
        if not data:
            raise ValueError("--data is required (see `genmodels datasets`)")
        dataset = load_dataset(data)
        cfg = model_config(model_name, dataset.spec, settings, conditional)
        run_config = RunConfig.for_dataset(model_name, cfg, data, dataset)  # + the data's source and fingerprint
        train_cfg = replace(TrainConfig(), **{k: v for k, v in train_overrides.items() if v is not None})
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = MODELS.get(run_config.model).build(run_config.model_config, run_config.spec)
    sample_fn = model_sample_fn(train_cfg.n_sample, **model.preview()) if train_cfg.sample_every else None
    if model.num_classes is not None and train_cfg.sample_every:  # the training grids: K × K, one row per class
        k = model.num_classes
        y = torch.arange(k).repeat_interleave(k) if k <= 16 else torch.arange(train_cfg.n_sample) % k
        sample_fn = model_sample_fn(len(y), y=y, **model.preview())
    curve = (_curve_fn(dataset, curve_examples) if train_cfg.curve_every_minutes and model.has_likelihood
             and model.nll_per_curve_point else None)
    trainer = Trainer(model, dataset.train, dataset.spec, train_cfg, out, run_config, sample_fn,
                      train_labels=dataset.train_labels, curve_fn=curve, hflip=dataset.hflip)
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
               progress: bool, batch_size: int = 100, options: dict[str, Any] | None = None,
               classes: str | None = None, guidance_scale: float = 0.0, precision: str = "auto") -> dict:
    """Sample ``n`` examples from a run into a picture (:func:`genmodels.viz.save_samples`: a grid, or waveforms and,
    for audio, WAV files) and an ``.npz`` (``x`` on the model's scale and, for series the loader quantized, ``x_user``
    in the user's units, ``[n, L]``). Returns what was written, with the sampler, steps, NFE and seconds.

    ``sampler`` None is the family's default (``model.samplers[0]``); ``steps`` None its default step count;
    ``options`` the sampler's own (``eta``, ``temperature``, …; ``model.sampler_options``). ``classes``: ``--class``
    of a conditional model (:func:`parse_classes`: a class, several, or ``all``, one grid row per class);
    ``guidance_scale``: classifier-free guidance w (Ho & Salimans 2022, Eq. 6; 0: the conditional model alone).
    ``precision``: the network's (:mod:`genmodels.precision`; ``auto``: bf16 where the device computes it natively).

    Raises:
        KeyError: a sampler the family does not have. ValueError: an option or ``--steps`` that does not apply; a
            class out of range or given to an unconditional model; guidance that does not apply; an unknown
            precision, or fp16 without a GPU.
    """
    from .viz import save_samples

    options = dict(options or {})
    if "temperature" in options and not options["temperature"] > 0:
        raise ValueError(f"--temperature must be > 0, got {options['temperature']}")
    model, run_config = _load(run, raw)
    y, per_row = _labels(model, parse_classes(classes, model.spec), n)
    model.check_guidance(sampler, guidance_scale, y)
    if guidance_scale:
        options["guidance_scale"] = guidance_scale
    sampler = model.check_sampler(sampler, options)
    if steps is None:
        steps = model.default_steps(sampler)
    elif model.default_steps(sampler) is None:
        raise ValueError(f"--steps does not apply to the {sampler!r} sampler of a {type(model).__name__} "
                         f"(it has no step count)")
    precision = resolve_precision(precision, model.device)
    start = time.perf_counter()
    desc = f"{sampler}{f' {steps} steps' if steps is not None else ''}, batches of {batch_size}"
    res = draw_in_batches(model, n, sampler, steps=steps, generator=_generator(seed), batch_size=batch_size,
                          progress=progress_bar(progress, desc), y=y, precision=precision, **options)
    seconds = time.perf_counter() - start
    tag = f"_t{options['temperature']:g}" if options.get("temperature", 1.0) != 1.0 else ""
    tag += "" if classes is None else f"_class{classes.replace(',', '-')}"
    tag += f"_w{guidance_scale:g}" if guidance_scale else ""
    out = out or run / "samples" / (f"{sampler}_{steps}{tag}.png" if steps is not None else f"{sampler}{tag}.png")
    written = save_samples(res.x0, model.spec, out, nrow=per_row)
    import numpy as np

    arrays = {"x": res.x0.numpy()}  # the model's scale; x_user: the user's units, for series the loader quantized
    if y is not None:
        arrays["y"] = y.numpy()
    if run_config.data_quantization is not None:
        arrays["x_user"] = run_config.data_quantization.to_user(res.x0)
    with atomic_path(out.with_suffix(".npz"), parents=True) as tmp:  # a full disk leaves no half-written file
        np.savez_compressed(tmp, **arrays)
    result = {"picture": str(out), "samples": str(out.with_suffix(".npz")), "n": n, "sampler": sampler,
              "steps": steps, "nfe": res.nfe, "seconds": round(seconds, 2), "weights": "raw" if raw else "ema",
              "precision": precision,
              **{k: options.get(k, 1.0 if k == "temperature" else 0.0)
                 for k in ("eta", "temperature") if k in model.sampler_options.get(sampler, ())}}
    if y is not None:
        result.update(classes=classes if classes == "all" else parse_classes(classes, model.spec),
                      guidance_scale=guidance_scale)
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
    return model, dataset, x[:limit] if limit else x[:]  # a tensor (a split held as levels is read here)


def _split_labels(dataset: Dataset, split: str, n: int) -> torch.Tensor | None:
    """The first ``n`` labels of a split, or None for unlabelled data."""
    y = dataset.test_labels if split == "test" else dataset.train_labels
    return None if y is None else y[:n]


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
                 raw: bool, progress: bool, per_example: Path | None = None, data: str | None = None,
                 classify: bool = False, precision: str = "fp32") -> dict:
    """The NLL (or bound) of a split in bits/dim, as a JSON-ready dict with the same keys for every family, plus the
    entries the family adds (``model.eval_extras``: a VAE's ELBO beside its IWAE bound, …). ``per_example``: also
    save each example's NLL in nats there (``.npy``, float64), for paired comparisons on the same examples.
    ``data``: evaluate on that dataset instead of the run's (out-of-distribution; same event shape and levels).

    A class-conditional model reports −log p(x | y) of the true labels as ``bpd`` (its ``nll_kind``; the marginal
    where the data has no labels) and, under ``conditional``, every class's score (K + 1 passes: each class and the
    null label, :mod:`genmodels.metrics.conditional`): the marginal −log Σ_y p(y) p(x | y), −log p(x | ∅), the
    information the label carries and the generative classifier's accuracy and confusion matrix; ``per_example``
    then also writes ``STEM_classes.npy`` (``[N, K + 1]`` nats). ``classify`` adds the dataset's feature
    classifier's accuracy on the same examples beside the generative classifier's. ``precision``: the network's
    (:mod:`genmodels.precision`; default fp32, as the numbers are the product; the likelihood sums stay float32/64).

    Raises:
        NoLikelihoodError: for a family without a likelihood. ValueError: an option the family does not honour;
            ``classify`` for an unconditional model or unlabelled data; an unknown precision, or fp16 without a GPU.
    """
    from .metrics.likelihood import evaluate_nll

    run_config = _likelihood_run(run)
    model, dataset, x = _load_split(run, raw, split, limit, run_config, data)
    _check_eval_options(model, options, run_config)
    precision = resolve_precision(precision, model.device)
    labels = _split_labels(dataset, split, len(x)) if model.num_classes is not None else None
    if classify and (model.num_classes is None or labels is None):
        raise ValueError("--classify needs a class-conditional model (train with --conditional) and labelled data"
                         if model.num_classes is None else f"--classify needs labels; {dataset.spec.name!r} has none")
    kwargs = model.nll_kwargs(options, dataset.train, _generator(seed + 1), len(x))  # pilot draws: their own stream
    conditional = None
    if model.num_classes is not None:
        from .metrics.conditional import class_nll_matrix, conditional_report, label_log_prior

        start = time.perf_counter()
        with autocast(precision, model.device):
            matrix = class_nll_matrix(model, x, batch_size=batch_size, seed=seed,
                                      progress=progress_bar(progress, f"evaluate {model.num_classes} classes + ∅"),
                                      **kwargs)
        prior = label_log_prior(run_config.load_data().train_labels if data else dataset.train_labels,
                                model.num_classes)
        truth = labels if labels is not None else torch.zeros(len(x), dtype=torch.long)
        conditional = conditional_report(matrix, truth, prior, model.spec.dim, seconds=time.perf_counter() - start)
        if labels is None:  # no labels: no conditional NLL, no accuracy
            conditional.accuracy, conditional.confusion = None, []
    with autocast(precision, model.device):
        report = evaluate_nll(model, x, batch_size=batch_size, generator=_generator(seed),
                              progress=progress_bar(progress, "evaluate"), y=labels, **kwargs)
    result = {"model": run_config.model, "data": data or run_config.data, "split": split,
              "weights": "raw" if raw else "ema", "precision": precision,
              **({"trained_on": run_config.data} if data else {}),
              **report.to_json(), **_true_nll(data or run_config.data, x)}
    if conditional is not None:
        result["given"] = "the true labels: −log p(x | y)" if labels is not None else "the null label: −log p(x | ∅)"
        result["conditional"] = conditional.to_json()
        if classify:
            result["conditional"]["feature_classifier_accuracy"] = _feature_accuracy(dataset, x, labels)
    if per_example is not None:
        import numpy as np

        with atomic_path(per_example, parents=True) as tmp:
            np.save(tmp, report.per_example_nats.numpy())
        result["per_example_nats"] = str(per_example)
        if conditional is not None:
            classes = per_example.with_name(per_example.stem + "_classes.npy")
            with atomic_path(classes, parents=True) as tmp:
                np.save(tmp, matrix.numpy())
            result["per_example_class_nats"] = str(classes)
    result.update(model.eval_extras(x, report, options))
    return result


def _feature_accuracy(dataset: Dataset, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The dataset's feature classifier's top-1 accuracy on ``x`` (:mod:`genmodels.metrics.features`)."""
    from .metrics.features import feature_extractor

    fe = feature_extractor(dataset)
    with torch.no_grad():
        pred = torch.cat([fe.classifier(b.float()).argmax(dim=1) for b in x.split(500)])
    return (pred == labels).double().mean().item()


def run_evaluate_ode(run: Path, split: str, limit: int | None, batch_size: int, seed: int, raw: bool,
                     progress: bool, rtol: float, atol: float, hutchinson_samples: int,
                     data: str | None = None) -> dict:
    """Bits/dim through the probability-flow ODE (:func:`genmodels.metrics.likelihood.evaluate_ode_nll`); of a
    conditional model, −log p_ODE(x | y) given the split's labels (the null label for unlabelled data).

    Raises:
        ValueError: for a family without an ODE likelihood (``has_ode_likelihood``).
    """
    from .metrics.likelihood import evaluate_ode_nll

    run_config = _likelihood_run(run)
    if not MODELS.get(run_config.model).model_cls.has_ode_likelihood:
        raise ValueError(f"--likelihood ode needs a family with an ODE likelihood (diffusion, flow matching); "
                         f"this run is a {run_config.model!r} model")
    model, dataset, x = _load_split(run, raw, split, limit, run_config, data)
    labels = _split_labels(dataset, split, len(x)) if model.num_classes is not None else None
    report = evaluate_ode_nll(model, x, batch_size=batch_size, generator=_generator(seed), rtol=rtol, atol=atol,
                              hutchinson_samples=hutchinson_samples,
                              progress=progress_bar(progress, "ODE likelihood"), y=labels)
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


def run_guidance_sweep(run: Path, scales: list[float], n_per_class: int, sampler: str | None, steps: int | None,
                       seed: int, batch_size: int, raw: bool, progress: bool) -> dict:
    """Sample quality and class fidelity against the guidance scale (:func:`genmodels.metrics.guidance.guidance_sweep`);
    writes RUN/guidance_sweep/{sweep.json, sweep.md, sweep.png, grid_w{w}.png (one row per class)}.

    Raises:
        ValueError: an unconditional model, a sampler without guidance, data without a feature classifier.
    """
    from .metrics.guidance import guidance_sweep, guidance_table
    from .viz import save_guidance_sweep

    model, run_config = _load(run, raw)
    dataset = run_config.load_data()
    out_dir = run / "guidance_sweep"
    grids = []

    def on_row(row):
        """Write the finished row's grid (one row per class)."""
        grids.append(str(save_samples_grid(row.samples, model.spec, out_dir / f"grid_w{row.guidance_scale:g}.png",
                                           n_per_class)))

    rows = guidance_sweep(model, dataset, scales, n_per_class=n_per_class, sampler=sampler, steps=steps, seed=seed,
                          batch_size=batch_size, progress=progress_bar(progress, "batches"), on_row=on_row)
    accuracy = rows[0].quality.get("classifier_test_accuracy")
    picture = save_guidance_sweep([r.guidance_scale for r in rows], [r.class_accuracy for r in rows],
                                  [r.quality["fd"] for r in rows], out_dir / "sweep.png",
                                  fd_floor=rows[0].quality["fd_floor"], classifier_accuracy=accuracy)
    result = {"run": str(run), "data": run_config.data, "sampler": model.check_sampler(sampler),
              "steps": steps if steps is not None else model.default_steps(sampler), "n_per_class": n_per_class,
              "seed": seed, "weights": "raw" if raw else "ema", "classifier_test_accuracy": accuracy,
              "rows": [r.to_json() for r in rows], "picture": str(picture), "grids": grids}
    atomic_write_text(out_dir / "sweep.md", guidance_table(rows, accuracy) + "\n")
    atomic_write_text(out_dir / "sweep.json", json_dumps(result, indent=2) + "\n")
    return result


def save_samples_grid(x: torch.Tensor, spec, path: Path, nrow: int | None = None) -> Path:
    """The sample picture of :func:`genmodels.viz.save_samples` (its first file), ``nrow`` per row."""
    from .viz import save_samples

    return save_samples(x, spec, path, nrow=nrow)[0]


def _parse_images(text: str) -> tuple[str, list[int]]:
    """``test:0-15`` / ``train:3,7,9`` / ``test:5`` → (split, indices).

    Raises:
        ValueError: another form (the message shows the accepted ones).
    """
    split, sep, rest = text.partition(":")
    try:
        if not sep or split not in ("test", "train"):
            raise ValueError
        idx: list[int] = []
        for part in rest.split(","):
            a, dash, b = part.strip().partition("-")
            idx.extend(range(int(a), int(b) + 1) if dash else [int(a)])
        if not idx or min(idx) < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"--images {text!r}: write SPLIT:RANGE, e.g. test:0-15, test:3,7,9 or train:0") from None
    return split, idx


def run_inpaint(run: Path, images: str, mask: str, method: str | None, seed: int, out: Path | None, raw: bool,
                progress: bool, classes: str | None = None, samples: int = 1,
                options: dict[str, Any] | None = None) -> dict:
    """Fill in the unknown part of data images (``model.inpaint``: RePaint or replacement for diffusion models,
    exact raster-order completion for PixelCNN): a picture with one column per image and the rows *observed* (the
    unknown pixels grey), ``samples`` completions, *original*; and an ``.npz`` (``x``, ``known``, ``filled``
    ``[samples, B, …]``).

    ``images``: ``test:0-15`` (:func:`_parse_images`); ``mask``: ``top``, ``bottom``, ``left``, ``right`` (the half
    that is known), ``center``, ``random:F`` or a PNG (:func:`genmodels.masks.parse_mask`); ``classes``: ``true``
    (each image's own label) or a class (:func:`parse_classes`), for a conditional model.

    Raises:
        ValueError: a family without inpainting, a bad ``--images``, mask or class (one line each).
    """
    from .masks import parse_mask
    from .viz import save_grid

    run_config = load_run_config(run)
    split, idx = _parse_images(images)
    dataset = run_config.load_data()
    data = dataset.test if split == "test" else dataset.train
    if max(idx) >= len(data):
        raise ValueError(f"--images {images!r}: the {split} split has {len(data)} images (0..{len(data) - 1})")
    if samples < 1:
        raise ValueError(f"--samples must be ≥ 1, got {samples}")
    model, _ = _load(run, raw, run_config)
    x = data[idx]
    g = _generator(seed)
    known = parse_mask(mask, tuple(model.spec.event_shape), g)
    if classes == "true":
        labels = dataset.test_labels if split == "test" else dataset.train_labels
        if labels is None:
            raise ValueError(f"--class true: the {split} split of {run_config.data!r} has no labels")
        y = labels[idx]
        model.check_label(y, len(idx))
    else:
        y, _ = _labels(model, parse_classes(classes, model.spec), len(idx))
    name = model.check_inpaint(method, x, known)
    start = time.perf_counter()
    with torch.no_grad():
        outs = [model.inpaint(x, known, g, method=name, y=y, progress=progress_bar(progress, name),
                              **(options or {})) for _ in range(samples)]
    seconds = time.perf_counter() - start
    filled = torch.stack([o.x0 for o in outs])
    shown = torch.where(known.expand_as(x), x, torch.zeros_like(x))
    out = out or run / "inpaint" / f"{name}_{mask.replace('/', '_').replace(':', '')}_{split}.png"
    picture = save_grid(torch.cat([shown, *filled, x]), out, len(idx), scale=max(1, 64 // x.shape[-1])) \
        if model.spec.is_image else save_samples_grid(filled[0], model.spec, out)
    import numpy as np

    with atomic_path(out.with_suffix(".npz"), parents=True) as tmp:
        np.savez_compressed(tmp, x=x.numpy(), known=known.numpy(), filled=filled.numpy())
    return {"picture": str(picture), "arrays": str(out.with_suffix(".npz")), "method": name, "mask": mask,
            "images": images, "samples": samples, "nfe": outs[0].nfe, "seconds": round(seconds, 2),
            "known_fraction": round(known.float().mean().item(), 4), **({"options": options} if options else {}),
            **({"classes": classes} if classes else {})}


# ---------------------------------------------------------------------------------------------- pictures


def write_pictures(run: Path, seed: int = 0, sampler: str | None = None, steps: int | None = None,
                   precision: str = "auto") -> list[str]:
    """A run's pictures in RUN/figures: the family's own (``model.figures``: e.g. for diffusion the forward strip,
    the reverse trajectory and the schedule plot), a sample grid where the family has none, and the loss curve.
    ``sampler``/``steps``: how pictures that sample do it (None: the family's few-step default); ``precision``: the
    network's (:mod:`genmodels.precision`).

    Raises:
        KeyError: a sampler the family does not have. ValueError: ``steps`` for a sampler without a step count.
    """
    from .viz import save_loss_curve, save_samples

    model, run_config = _load(run, raw=False)
    if sampler is not None:
        model.check_sampler(sampler, {})
    if steps is not None and model.default_steps(sampler or model.fast_sampler or model.samplers[0]) is None:
        raise ValueError(f"--steps does not apply to the pictures of a {type(model).__name__} "
                         f"({sampler or model.samplers[0]!r} has no step count)")
    data: Dataset = run_config.load_data()  # the run's own data, checked against its fingerprint
    figs = run / "figures"
    g = _generator(seed)
    precision = resolve_precision(precision, model.device)
    no_records = torch.no_grad if model.samples_need_grad else torch.inference_mode
    with no_records(), autocast(precision, model.device):
        written = list(model.figures(data, figs, g, sampler=sampler, steps=steps))
        if not written:
            preview = model.preview() if sampler is None else {"sampler": sampler, "steps": steps}
            written = save_samples(model.draw(64, g, **preview).x0.float(), model.spec, figs / "samples.png")
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
                         num_threads=threads, mixed_precision=train_precision(None, resume)))
    grid = run_sample(out, 64, None, None, 0, out / "samples.png", False, progress)
    figs = write_pictures(out)
    ev = run_evaluate(out, "test", None, EvalOptions(), 100, 0, False, progress)
    return {"run": str(out), "data": ev["data"], "train_steps": res.steps, "train_minutes": round(res.seconds / 60, 2),
            "samples": grid["picture"], "figures": figs, "test_bpd": round(ev["bpd"], 4),
            "test_bpd_stderr": round(ev["bpd_stderr"], 4),
            "terms_bpd": {k: round(v, 4) for k, v in ev["terms_bpd"].items()}, "nll_kind": ev["nll_kind"],
            "examples": ev["examples"], "eval_seconds": round(ev["seconds"], 1)}
