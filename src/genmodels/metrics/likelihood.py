"""NLL of a dataset split in bits/dim, with its standard error: the same report for every model family.

Each example's NLL (or bound, or estimate) comes from ``model.nll_terms``; the split's mean is reported
with the standard error of the mean over examples, ``std/√N``, which is honest for any per-example
estimator that is unbiased and independent across examples (the DDPM bound's stratified importance
sampling of steps is; see :meth:`genmodels.diffusion.ddpm.DDPM.nll_terms`).

:func:`evaluate_ode_nll` gives the same report for the probability-flow ODE likelihood of a diffusion model
(:func:`genmodels.diffusion.ode.ode_log_likelihood`), with the project's uniform dequantization for discrete data.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..core import GenerativeModel, discrete_nll_from_density, log_bin_width, nats_to_bpd, uniform_dequantize
from ..threads import tuned

__all__ = ["NLLReport", "evaluate_nll", "evaluate_ode_nll"]


@dataclass
class NLLReport:
    """A split's NLL in bits/dim.

    Attributes:
        nll_kind: ``exact``, ``bound`` or ``estimate`` (the model's ``nll_kind``).
        bpd: mean NLL over the examples, bits/dim.
        bpd_stderr: its standard error (std over examples / √N), bits/dim.
        terms_bpd: the named parts of ``bpd`` (for DDPM ``prior`` = L_T, ``diffusion`` = Σ L_t,
            ``reconstruction`` = L_0), bits/dim; they sum to ``bpd``.
        terms_nats: the same parts in nats per example; they sum to ``nats``.
        nats: the mean NLL in nats per example (the unit of binarized-image results, e.g. 86.8 nats on
            binarized MNIST). nats_stderr: its standard error.
        examples: N, the number of examples evaluated.
        seconds: wall time of the evaluation.
        estimator: how the per-example values were computed (keyword arguments of ``nll_terms``).
        per_example_nats: ``[N]`` float64, each example's NLL in nats (for paired comparisons of two models on
            the same examples); not part of :meth:`to_json`.
    """

    nll_kind: str
    bpd: float
    bpd_stderr: float
    terms_bpd: dict[str, float]
    terms_nats: dict[str, float]
    nats: float
    nats_stderr: float
    examples: int
    seconds: float
    estimator: dict[str, Any] = field(default_factory=dict)
    per_example_nats: Tensor | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """A JSON-serializable dict with the attributes as keys (without ``per_example_nats``)."""
        d = asdict(self)
        d.pop("per_example_nats")
        return d


@torch.no_grad()
def evaluate_nll(model: GenerativeModel, x: Tensor, *, batch_size: int = 100,
                 generator: torch.Generator | None = None,
                 progress: Callable[[Iterable], Iterable] | None = None, y: Tensor | None = None,
                 **nll_kwargs: Any) -> NLLReport:
    """Mean NLL of ``x`` under ``model`` in bits/dim, with its standard error and parts (of ``x`` given its labels
    ``y``, ``[N]``, for a conditional model: −log p(x | y); :mod:`genmodels.metrics.conditional` for the rest).

    Args:
        model: any :class:`GenerativeModel`.
        x: ``[N, *event_shape]`` examples on the data scale.
        batch_size: examples per call to ``nll_terms`` (about 100 is fastest on CPU: measured 208 img/s at 100
            against 125 img/s at 500 for the 28×28 UNet, 2 threads).
        progress: optional wrapper of the batch iterator (e.g. ``tqdm``); on the CPU the batches are also timed for
            the process's thread tuner (:func:`genmodels.threads.tuned`; nothing without one).
        **nll_kwargs: passed to ``model.nll_terms`` (e.g. ``t_samples``, ``proposal``, ``exact`` for DDPM).
    Raises:
        ValueError: if ``x`` is empty or the model returns non-finite values.
    """
    if len(x) == 0:
        raise ValueError("no examples to evaluate: the split is empty")
    model.eval()
    start = time.perf_counter()
    nll, terms = [], {}
    batches = x.split(batch_size)
    labels = [None] * len(batches) if y is None else y.split(batch_size)
    pairs = list(zip(batches, labels, strict=True))
    timed = tuned if model.device.type == "cpu" else iter  # batches of the same work: timed for the thread tuner
    for xb, yb in timed(progress(pairs) if progress else pairs):
        label = {} if yb is None else {"y": yb.to(model.device)}  # an unconditional model's call is unchanged
        out = model.nll_terms(xb.to(model.device), generator, **nll_kwargs, **label)
        nll.append(out.nll.double().cpu())
        for k, v in out.terms.items():
            terms.setdefault(k, []).append(v.double().cpu())
    estimator = {k: (v if isinstance(v, (int, float, bool, str)) else type(v).__name__) for k, v in nll_kwargs.items()}
    return _report(model.nll_kind, torch.cat(nll), {k: torch.cat(v).mean().item() for k, v in terms.items()},
                   model.spec, start, estimator, "the model")


def _report(nll_kind: str, nll: Tensor, terms_nats: dict[str, float], spec, start: float,
            estimator: dict[str, Any], source: str) -> NLLReport:
    """An :class:`NLLReport` from per-example NLLs ``[N]`` (nats) and the mean of each part (nats).

    Raises:
        ValueError: if any per-example NLL is not finite (``source`` names who returned it).
    """
    if not torch.isfinite(nll).all():
        raise ValueError(f"{source} returned non-finite NLL for {int((~torch.isfinite(nll)).sum())} examples")
    n = len(nll)
    stderr = nll.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return NLLReport(
        nll_kind=nll_kind,
        bpd=float(nats_to_bpd(nll.mean().item(), spec)),
        bpd_stderr=float(nats_to_bpd(stderr, spec)),
        terms_bpd={k: float(nats_to_bpd(v, spec)) for k, v in terms_nats.items()},
        terms_nats=dict(terms_nats),
        nats=nll.mean().item(),
        nats_stderr=stderr,
        examples=n,
        seconds=time.perf_counter() - start,
        estimator=estimator,
        per_example_nats=nll,
    )


@torch.no_grad()
def evaluate_ode_nll(model: GenerativeModel, x: Tensor, *, batch_size: int | None = None,
                     generator: torch.Generator | None = None,
                     progress: Callable[[Iterable], Iterable] | None = None, y: Tensor | None = None,
                     **ode_kwargs: Any) -> NLLReport:
    """NLL of ``x`` under a model's ODE (a diffusion model's probability-flow ODE, a flow-matching model's flow),
    bits/dim, with standard error and parts (given the
    labels ``y`` ``[N]`` of a conditional model: −log p_ODE(x | y); None: its null label).

    Per example (Song et al. 2021, Appendix D.2; :func:`genmodels.diffusion.ode.ode_log_likelihood`):

    - continuous data: ``nll = −log p_ODE(x)``, nll_kind ``estimate``: with the exact trace it is exact up to
      the solver's error (``rtol``/``atol``); with Hutchinson's trace it is unbiased up to that error (the
      estimate of log p, not of p, is unbiased, so no Jensen gap arises from the probes).
    - discrete data (``n_bins`` levels): uniform dequantization x̃ = x + Δ(u − ½), u ~ U[0, 1)^D, Δ the bin
      width (:mod:`genmodels.core`'s convention, Theis et al. 2016, Eq. 6), then
      ``nll = −log p_ODE(x̃) − D log Δ`` (:func:`~genmodels.core.discrete_nll_from_density`). nll_kind
      ``bound``: its expectation over u (and the probes) is an upper bound on −log P(k) of the discrete model
      P(k) = ∫_bin(k) p_ODE (Jensen over u only), again up to the solver's error, which has no sign. It is
      a bound for the ODE's own density p_ODE, a different model from the DDPM's variational bound.

    ``terms_bpd``: ``prior`` = −log N(x(λ_min); 0, I), ``divergence`` = −∫_{λ_max}^{λ_min} ∇·f dλ and, for
    discrete data, ``dequantization`` = −D log Δ (a constant, log2((n_bins − 1)/2) bits/dim); they sum to
    ``bpd``. Each batch is one ODE solve (the solver's step sizes are shared by its examples); every example
    has its own u and probes, so the standard error over examples is honest.

    Args:
        model: a family with :attr:`~genmodels.core.GenerativeModel.has_ode_likelihood` (its
            :meth:`~genmodels.core.GenerativeModel.ode_log_likelihood`), e.g. a DDPM or a flow-matching model.
        x: ``[N, *event_shape]`` examples on the data scale (the bin centres, for discrete data).
        batch_size: examples per solve (default 1000 for vector data, 100 for images).
        generator: draws the dequantization noise and the probes (in that order, per batch).
        progress: optional wrapper of the batch iterator (e.g. ``tqdm``).
        **ode_kwargs: passed to ``model.ode_log_likelihood``: ``trace``, ``hutchinson_samples``, ``noise``,
            ``rtol``, ``atol``, ``method``, ``dtype`` and, for a diffusion model, ``logsnr_max``, ``logsnr_min``.
    Returns:
        :class:`NLLReport` whose ``estimator`` records the settings, ``nfe_mean`` (drift evaluations per
        example's solve, averaged over examples) and the dequantization.
    Raises:
        ValueError: empty ``x``, bad ODE options (see ``ode_log_likelihood``), or non-finite values.
    """
    if len(x) == 0:
        raise ValueError("no examples to evaluate: the split is empty")
    settings = {name: p.default for name, p in inspect.signature(model.ode_log_likelihood).parameters.items()
                if p.kind is p.KEYWORD_ONLY and name not in ("generator", "y")}
    unknown = sorted(set(ode_kwargs) - set(settings))
    if unknown:
        raise ValueError(f"unknown ODE option(s) {', '.join(unknown)}; known: {', '.join(settings)}")
    settings.update(ode_kwargs)
    spec = model.spec
    if batch_size is None:
        batch_size = 100 if spec.is_image else 1000
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    model.eval()
    start = time.perf_counter()
    nll, prior, divergence, nfe = [], [], [], []
    trace = None
    batches = x.split(batch_size)
    labels = [None] * len(batches) if y is None else y.split(batch_size)
    pairs = list(zip(batches, labels, strict=True))
    for xb, yb in progress(pairs) if progress else pairs:
        xb = xb.to(model.device)
        if spec.is_discrete:
            xb = uniform_dequantize(xb, spec, generator, torch.float64)  # x̃ = x + Δ(u − ½)
        label = {} if yb is None else {"y": yb.to(model.device)}
        out = model.ode_log_likelihood(xb, generator, **ode_kwargs, **label)
        trace = out.trace
        nll_b = -out.log_p
        if spec.is_discrete:
            nll_b = discrete_nll_from_density(nll_b, spec)
        nll.append(nll_b.cpu())
        prior.append(-out.log_p_prior.cpu())
        divergence.append(-out.divergence.cpu())
        nfe.append(torch.full((len(xb),), float(out.nfe), dtype=torch.float64))
    terms = {"prior": torch.cat(prior).mean().item(), "divergence": torch.cat(divergence).mean().item()}
    if spec.is_discrete:
        terms["dequantization"] = -spec.dim * log_bin_width(spec)
    estimator: dict[str, Any] = {"likelihood": "probability-flow ODE"}
    estimator.update({k: (v if isinstance(v, (int, float, bool, str)) or v is None else str(v))
                      for k, v in settings.items()})
    estimator.update({"trace": trace, "dequantization": "uniform" if spec.is_discrete else "none",
                      "batch_size": batch_size, "nfe_mean": torch.cat(nfe).mean().item()})
    return _report("bound" if spec.is_discrete else "estimate", torch.cat(nll), terms, spec, start, estimator,
                   "the ODE")
