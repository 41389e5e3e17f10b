"""The contract every registered model family keeps: the checklist of a new family (issue 14).

Each check is one test, parametrized over every name in ``MODELS.names()`` and over three small data specs (an 8×8
image with 17 levels, a 2-D continuous toy, a (1, 64) sequence with 256 levels). A family is built from its registry
entry (``entry.build(entry.preset(spec), spec)``); a spec its build rejects with ``ValueError`` is skipped for that
family, but every family must build on at least one of them. Nothing here asks which family a model is: what a test
does follows from what the model declares (``samplers``, ``sampler_options``, ``default_steps``, ``nfe``,
``has_likelihood``, ``num_classes``, ...; see :class:`genmodels.core.GenerativeModel`).
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from genmodels.core import DataSpec, EvalOptions, NLLOutput, NoLikelihoodError, SampleOutput


def _registry():
    """The filled model registry: ``genmodels.families`` (the one place that fills it), else the older
    self-registering layout (``import genmodels``)."""
    if importlib.util.find_spec("genmodels.families") is not None:
        from genmodels.families import MODELS
    else:  # pragma: no cover - the layout before genmodels.families
        import genmodels  # noqa: F401  (registers the families)
        from genmodels.registry import MODELS
    return MODELS


def _model_cls(family: str):
    entry = MODELS.get(family)
    return getattr(entry, "model_cls", entry.build)


def _is_package_family(family: str) -> bool:
    """A family of genmodels itself: its model class lives in the package. (Test modules register toy models in the
    same registry, e.g. ``tests/_toy_model.py``; whether they are registered when this module is collected depends on
    the collection order, so they are left out.)"""
    cls = _model_cls(family)
    return isinstance(cls, type) and cls.__module__.split(".")[0] == "genmodels"


MODELS = _registry()
FAMILIES = [f for f in MODELS.names() if _is_package_family(f)]
SPECS = {
    "image": DataSpec("digits", (1, 8, 8), 17),
    "toy": DataSpec("moons", (2,), None, (float("-inf"), float("inf"))),
    "seq": DataSpec("seq", (1, 64), 256),
}
B = 4  # batch size of every check
RANGE_TOL = 1e-4  # samples of discrete data may leave value_range by this much (float rounding), no more
GRAD_EXEMPT: dict[str, set[str]] = {}
"""family -> names of parameters ``loss`` may leave without a gradient, each with its reason. Empty: every
parameter that requires a gradient must get one from the training objective."""


CASES = [(f, s) for f in FAMILIES for s in SPECS]
SAMPLER_CASES = [(f, s, name) for f in FAMILIES for s in SPECS for name in _model_cls(f).samplers]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(spec: DataSpec, n: int = B, seed: int = 1) -> torch.Tensor:
    """``[n, *event_shape]`` fixed data: levels on [−1, 1] for discrete specs, standard normal otherwise."""
    g = _gen(seed)
    if spec.n_bins is None:
        return torch.randn((n, *spec.event_shape), generator=g)
    k = torch.randint(0, spec.n_bins, (n, *spec.event_shape), generator=g)
    return 2 * k.float() / (spec.n_bins - 1) - 1


def _build(family: str, spec_key: str):
    """``(model, config, spec)`` from the registry entry's preset, seeded; skips a spec the family rejects."""
    entry = MODELS.get(family)
    spec = SPECS[spec_key]
    torch.manual_seed(0)
    try:
        config = entry.preset(spec)
        model = entry.build(config, spec)
    except ValueError as e:
        pytest.skip(f"{family} does not build on the {spec_key} spec {spec.event_shape}: {e}")
    return model, config, spec


def _cheap(model, sampler: str) -> dict:
    """Keywords of ``draw`` for a cheap but valid run of ``sampler``: the steps that spend about 4 network
    evaluations (more where 4 is too few for one step), and loose tolerances for an adaptive solver."""
    kw: dict = {}
    if model.default_steps(sampler) is not None:
        steps = None
        for budget in (4, 16, 64, 256, 1024):
            steps = model.steps_for_nfe(sampler, budget)
            if steps is None or steps >= 1:
                break
        kw["steps"] = steps if steps else model.default_steps(sampler)
    options = model.sampler_options.get(sampler, ())
    for tol in ("rtol", "atol"):
        if tol in options:
            kw[tol] = 1e-2
    return kw


def _check_samples(out, n: int, spec: DataSpec, what: str) -> None:
    assert isinstance(out, SampleOutput), f"{what}: draw returned a {type(out).__name__}, not a SampleOutput"
    assert tuple(out.x0.shape) == (n, *spec.event_shape), f"{what}: samples of shape {tuple(out.x0.shape)}"
    assert torch.isfinite(out.x0).all(), f"{what}: non-finite samples"
    if spec.is_discrete:
        lo, hi = spec.value_range
        x_lo, x_hi = out.x0.min().item(), out.x0.max().item()
        assert lo - RANGE_TOL <= x_lo and x_hi <= hi + RANGE_TOL, (
            f"{what}: samples in [{x_lo:.4g}, {x_hi:.4g}], outside the data range [{lo}, {hi}]")


@pytest.fixture(params=CASES, ids=[f"{f}-{s}" for f, s in CASES])
def case(request):
    family, spec_key = request.param
    model, config, spec = _build(family, spec_key)
    return family, model, config, spec


# ---------------------------------------------------------------------------------------------------- building


@pytest.mark.parametrize("family", FAMILIES)
def test_builds_on_some_spec(family):
    """Every family builds from its preset on at least one of the small specs."""
    errors = {}
    entry = MODELS.get(family)
    for key, spec in SPECS.items():
        try:
            entry.build(entry.preset(spec), spec)
        except ValueError as e:
            errors[key] = str(e)
    assert len(errors) < len(SPECS), f"{family} builds on none of the specs: {errors}"


def test_registry_is_not_empty():
    assert FAMILIES, f"no genmodels family is registered (MODELS.names() = {MODELS.names()})"


# ---------------------------------------------------------------------------------------------------- the checks


def test_loss(case):
    """``loss`` is ``[B]`` and finite, and its backward reaches every parameter that requires a gradient."""
    family, model, _, spec = case
    model.train()
    loss = model.loss(_data(spec), _gen(0))
    assert tuple(loss.shape) == (B,), f"{family}: loss of shape {tuple(loss.shape)}, expected ({B},)"
    assert torch.isfinite(loss).all(), f"{family}: non-finite loss {loss}"
    loss.mean().backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None and n not in GRAD_EXEMPT.get(family, set())]
    assert not missing, f"{family}: the loss does not reach {len(missing)} parameter(s): {missing[:10]}"


def test_nll(case):
    """A model with a likelihood returns ``[B]`` finite nats of its declared kind, whose terms sum to it; a model
    without one raises :class:`NoLikelihoodError`."""
    family, model, _, spec = case
    model.eval()
    x = _data(spec)
    if not model.has_likelihood:
        with pytest.raises(NoLikelihoodError):
            model.nll_terms(x, _gen(0))
        return
    out = model.nll_terms(x, _gen(0))
    assert isinstance(out, NLLOutput), f"{family}: nll_terms returned a {type(out).__name__}"
    assert tuple(out.nll.shape) == (B,), f"{family}: nll of shape {tuple(out.nll.shape)}, expected ({B},)"
    assert torch.isfinite(out.nll).all(), f"{family}: non-finite nll {out.nll}"
    assert out.kind == model.nll_kind, f"{family}: nll_terms says {out.kind!r}, the model declares {model.nll_kind!r}"
    assert out.terms, f"{family}: nll_terms names no terms (they must sum to the nll)"
    for name, t in out.terms.items():
        assert tuple(t.shape) == (B,), f"{family}: term {name!r} of shape {tuple(t.shape)}, expected ({B},)"
    total = sum(t.double() for t in out.terms.values())
    torch.testing.assert_close(total, out.nll.double(), rtol=1e-4, atol=1e-6,
                               msg=lambda m: f"{family}: the terms {sorted(out.terms)} do not sum to the nll: {m}")


def test_reproducible(case):
    """The same generator seed gives the same loss and the same samples (eval mode), whatever the global RNG."""
    family, model, _, spec = case
    model.eval()
    x = _data(spec)
    torch.manual_seed(1)
    a = model.loss(x, _gen(7))
    torch.manual_seed(2)
    b = model.loss(x, _gen(7))
    assert torch.equal(a, b), f"{family}: two losses with generators of the same seed differ: {a} vs {b}"
    kw = _cheap(model, model.samplers[0])
    torch.manual_seed(1)
    s1 = model.draw(2, _gen(8), **kw).x0
    torch.manual_seed(2)
    s2 = model.draw(2, _gen(8), **kw).x0
    assert torch.equal(s1, s2), f"{family}: two draws ({kw}) with generators of the same seed differ"


@pytest.mark.parametrize("family,spec_key,sampler", SAMPLER_CASES,
                         ids=[f"{f}-{s}-{n}" for f, s, n in SAMPLER_CASES])
def test_draw(family, spec_key, sampler):
    """Every declared sampler draws ``[n, *event_shape]`` finite samples in the data range, and reports its NFE
    (what :meth:`nfe` predicts, where it can); under ``torch.inference_mode`` unless the family declares that its
    samplers differentiate the network (``samples_need_grad``), as :func:`~genmodels.sampling.draw_in_batches` runs
    them."""
    model, _, spec = _build(family, spec_key)
    model.eval()
    kw = _cheap(model, sampler)
    with torch.no_grad() if model.samples_need_grad else torch.inference_mode():
        out = model.draw(2, _gen(0), sampler=sampler, **kw)
    what = f"{family} {sampler} {kw}"
    _check_samples(out, 2, spec, what)
    assert isinstance(out.nfe, int) and out.nfe >= 1, f"{what}: reported nfe {out.nfe!r}"
    expected = model.nfe(sampler, kw.get("steps"))
    if expected is not None:
        assert out.nfe == expected, f"{what}: reported nfe {out.nfe}, but model.nfe says {expected}"


def test_draw_rejects_what_it_does_not_take(case):
    """An unknown sampler raises KeyError, an option no sampler takes ValueError, and so does a class label given
    to an unconditional model (to ``draw`` and to ``loss``)."""
    family, model, _, spec = case
    model.eval()
    with pytest.raises(KeyError):
        model.draw(2, _gen(0), sampler="no-such-sampler")
    with pytest.raises(ValueError):
        model.draw(2, _gen(0), no_such_option=1, **_cheap(model, model.samplers[0]))
    y = torch.zeros(2, dtype=torch.long)
    if model.num_classes is None:
        with pytest.raises(ValueError):
            model.draw(2, _gen(0), y=y, **_cheap(model, model.samplers[0]))
        with pytest.raises(ValueError):
            model.loss(_data(spec, 2), _gen(0), y=y)
    else:
        _check_samples(model.draw(2, _gen(0), y=y, **_cheap(model, model.samplers[0])), 2, spec, f"{family} y=0")


def test_save_load(case, tmp_path):
    """``save_pretrained`` then ``from_pretrained`` gives the same config and the same loss for the same seed
    (after one training call, so that data-dependent initializations have run)."""
    from genmodels.checkpoint import RunConfig, from_pretrained, save_pretrained

    family, model, config, spec = case
    x = _data(spec)
    model.train()
    model.loss(x, _gen(0)).mean().backward()
    model.eval()
    before = model.loss(x, _gen(3))
    run_config = RunConfig(model=family, model_config=config, data=spec.name, spec=spec)
    save_pretrained(tmp_path / "run", model, run_config)
    loaded, loaded_config = from_pretrained(tmp_path / "run")
    assert type(loaded) is type(model)
    assert loaded_config.model == family and loaded_config.model_config == config and loaded_config.spec == spec
    after = loaded.loss(x, _gen(3))
    assert torch.equal(before, after), f"{family}: the loaded model's loss {after} differs from {before}"


def test_capabilities_are_declared(case):
    """The model says what it is and what it can do, and its preview keywords are a valid ``draw``."""
    family, model, _, spec = case
    assert isinstance(model.description, str) and model.description.strip(), f"{family}: no description"
    assert model.samplers and all(isinstance(s, str) for s in model.samplers), f"{family}: no samplers"
    unknown = set(model.sampler_options) - set(model.samplers)
    assert not unknown, f"{family}: options for samplers it does not have: {sorted(unknown)}"
    assert model.nll_kind in ("exact", "bound", "estimate"), f"{family}: nll_kind {model.nll_kind!r}"
    fields = {f.name for f in dataclasses.fields(EvalOptions)}
    assert set(model.eval_options) <= fields, (
        f"{family}: eval_options {sorted(set(model.eval_options) - fields)} are not fields of EvalOptions")
    assert model.fast_sampler is None or (model.fast_sampler in model.samplers and
                                          model.steps_for_nfe(model.fast_sampler, 10)), (
        f"{family}: fast_sampler {model.fast_sampler!r} is not one of its samplers with a step count")
    model.eval()
    preview = model.preview()
    _check_samples(model.draw(2, _gen(0), **preview), 2, spec, f"{family} preview {preview}")
