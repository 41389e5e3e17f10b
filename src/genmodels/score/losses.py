"""Score-matching objectives: explicit (exact trace or Hutchinson), sliced and denoising, one value per example.

A score model s(x) ≈ ∇_x log p(x) never needs the normalizing constant of p (seed 003: for p_θ = e^{−f_θ}/Z_θ,
s = −∇f_θ). Each loss below is, in expectation over the data (and its own noise), the Fisher divergence
½ E_p‖s(x) − ∇log p(x)‖² up to a constant that does not depend on s, so the minimizer is the true score.

Notation (Hyvärinen 2005; Vincent 2011; Song et al. 2019 "SSM"; Song & Ermon 2019 "NCSN"):

=====================  ============================================================================================
``x``                  ``[B, ...]`` data; D = number of dimensions of one example (every dimension but the first)
``score_fn``           s(x) ``[B, ...] -> [B, ...]``, or s(x, σ) with σ ``[B]`` for a noise-conditional model
``J``                  ∂s/∂x, the D×D Jacobian of one example; tr J = Σ_d ∂s_d/∂x_d
``v``                  a probe with E[v vᵀ] = I: Rademacher (±1) or standard normal; vᵀ J v = v · ∇_x(vᵀ s)
ESM                    J_ESM = E_p[½‖s(x)‖² + tr J(x)]                              (Hyvärinen 2005, Theorem 1)
Hutchinson             tr J = E_v[vᵀ J v]                                           (Hutchinson 1989)
SSM                    J_SSM = E_p E_v[vᵀ J v + ½ (vᵀ s)²]                          (Song et al. 2019, §3)
SSM-VR                 E_p E_v[vᵀ J v] + ½ E_p‖s‖², since E_v[(vᵀ s)²] = sᵀ E[vvᵀ] s = ‖s‖²  (same, "variance
                       reduction"; holds for every probe with E[vvᵀ] = I, Gaussian or Rademacher)
``sigma``              σ, the std of the Gaussian noise; x̃ = x + σ z, z ~ N(0, I), so ∇_x̃ log q(x̃|x) = −z/σ
DSM                    J_DSM = E ½‖s(x̃) + z/σ‖²                   (Vincent 2011, §4; seed 003; NCSN Eq. 2)
                       = E_q_σ ½‖s(x̃) − ∇log q_σ(x̃)‖² + C, q_σ = p ∗ N(0, σ²I): its optimum is the noised score
``sigmas``             a ladder σ_1 > … > σ_L, geometric (NCSN §4.1)
multi-σ DSM            (1/L) Σ_i λ(σ_i) ℓ(σ_i), ℓ(σ) = E ½‖s(x̃, σ) + z/σ‖², λ(σ) = σ²       (NCSN Eq. 5–6)
                       = E ½‖σ s(x̃, σ) + z‖², estimated with one σ per example drawn uniformly from the ladder
=====================  ============================================================================================

Relations: J_ESM and J_SSM have the same expectation (and the SSM-VR estimate with the same probes *is* the
Hutchinson estimate of J_ESM); J_DSM on data x equals J_ESM on the noised data x̃ plus D/(2σ²) (Vincent 2011,
§4 and Appendix: E[s(x̃)·z/σ] = E[tr J(x̃)] by Stein's lemma).

The explicit and sliced losses differentiate the score with respect to x through ``torch.autograd`` with
``create_graph=True`` when gradients are enabled, so the losses can be trained; under ``torch.no_grad()`` they
still work (autograd is switched on inside for the x-derivatives) and return values without a graph.
All functions are pure: they draw only from the ``generator`` they are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

from ..divergence import ProbeNoise, draw_probes, exact_divergence, hutchinson_divergence

__all__ = [
    "ScoreFn",
    "NoiseConditionalScoreFn",
    "TraceMethod",
    "ProbeNoise",
    "SigmaWeighting",
    "draw_probes",
    "jacobian_trace",
    "hutchinson_trace",
    "explicit_score_matching",
    "sliced_score_matching",
    "denoising_score_matching",
    "multiscale_denoising_score_matching",
    "geometric_sigmas",
]

ScoreFn = Callable[[Tensor], Tensor]
"""s(x): ``[B, ...] -> [B, ...]`` (same shape), ≈ ∇_x log p(x). Examples must not interact."""
NoiseConditionalScoreFn = Callable[[Tensor, Tensor], Tensor]
"""s(x, σ): ``[B, ...]``, ``[B]`` (σ per example, x's dtype) ``-> [B, ...]``, ≈ ∇_x log q_σ(x)."""
TraceMethod = Literal["exact", "hutchinson"]
"""tr(∂s/∂x): ``exact`` (D backward passes; low dimensions) or ``hutchinson`` (one backward pass per probe)."""
SigmaWeighting = Literal["sigma2", "none"]
"""λ(σ) of multi-σ DSM: ``sigma2`` λ = σ² (NCSN; every level contributes O(1)), or ``none`` λ = 1."""


def _sum_dims(x: Tensor) -> Tensor:
    """[B, ...] -> [B], summing every dimension but the first."""
    return x.flatten(1).sum(1)


def _check_score(s: Tensor, x: Tensor) -> None:
    """Raise ValueError unless the score has x's shape."""
    if s.shape != x.shape:
        raise ValueError(f"the score function must return a tensor of the input's shape {tuple(x.shape)}, "
                         f"got {tuple(s.shape)}")


def jacobian_trace(fx: Tensor, x: Tensor, create_graph: bool = True) -> Tensor:
    """tr(∂f/∂x) = Σ_d ∂f_d/∂x_d per example, exactly, with D backward passes (examples must not interact in f).

    Args:
        fx: ``[B, ...]`` f(x), computed from ``x`` with autograd recording. x: ``[B, ...]`` (same shape),
            requires grad.
        create_graph: record the passes, so the trace can itself be differentiated (training a loss that
            contains it). The graph of ``fx`` is always retained.
    Returns:
        ``[B]`` in fx's dtype.
    Raises:
        ValueError: if ``fx`` and ``x`` differ in shape.
    """
    _check_score(fx, x)
    return exact_divergence(fx, x, retain_graph=True, create_graph=create_graph)


def hutchinson_trace(fx: Tensor, x: Tensor, probes: Tensor, create_graph: bool = True) -> Tensor:
    """Hutchinson estimate of tr(∂f/∂x): (1/K) Σ_k v_kᵀ (∂f/∂x) v_k, one vector–Jacobian product per probe.

    Unbiased when E[v vᵀ] = I (Hutchinson 1989); the variance per probe is 2‖J_sym‖_F² − 2Σ_d J_dd² for
    Rademacher probes and 2‖J_sym‖_F² for Gaussian ones (J_sym = (J + Jᵀ)/2).

    Args:
        fx: ``[B, ...]`` f(x), computed from ``x`` with autograd recording. x: ``[B, ...]``, requires grad.
        probes: ``[K, B, ...]`` (:func:`draw_probes`). create_graph: as in :func:`jacobian_trace`.
    Returns:
        ``[B]`` in fx's dtype.
    Raises:
        ValueError: if the shapes disagree.
    """
    _check_score(fx, x)
    if probes.shape[1:] != x.shape:
        raise ValueError(f"probes must have shape [K, {', '.join(map(str, x.shape))}], got {tuple(probes.shape)}")
    return hutchinson_divergence(fx, x, probes, retain_graph=True, create_graph=create_graph)


def _score_with_grad(score_fn: Callable[..., Tensor], x: Tensor, *args: Tensor) -> tuple[Tensor, Tensor, bool]:
    """(x as a leaf requiring grad, s(x, *args), create_graph): autograd is on whatever the caller's mode, and
    ``create_graph`` is whether the caller records gradients (so the loss can be trained)."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        s = score_fn(xg, *args)
    _check_score(s, xg)
    return xg, s, create_graph


def explicit_score_matching(score_fn: ScoreFn, x: Tensor, *, trace: TraceMethod = "exact", n_probes: int = 1,
                            probe: ProbeNoise = "rademacher",
                            generator: torch.Generator | None = None) -> Tensor:
    """Hyvärinen's score-matching loss per example: ½‖s(x)‖² + tr(∂s/∂x) (Hyvärinen 2005, Theorem 1).

    Its mean over data x ~ p equals ½ E_p‖s − ∇log p‖² − ½ E_p‖∇log p‖² (the Fisher divergence up to a constant
    independent of s), provided s(x) p(x) → 0 at infinity. The trace is exact (D backward passes, for low
    dimensions) or the Hutchinson estimate with ``n_probes`` probes (unbiased; the loss stays an unbiased estimate
    of J_ESM; with these probes it equals :func:`sliced_score_matching` with ``variance_reduction=True``).

    Args:
        score_fn: s(x), ``[B, ...] -> [B, ...]``. x: ``[B, ...]`` data (no gradient flows to it).
        trace: ``exact`` or ``hutchinson``. n_probes: K ≥ 1 probes per example (Hutchinson only).
        probe: ``rademacher`` or ``gaussian`` (Hutchinson only). generator: draws the probes.
    Returns:
        ``[B]`` in the score's dtype (units of log-density per unit of x², summed over dimensions).
    Raises:
        ValueError: for an unknown ``trace`` or ``probe``, ``n_probes`` < 1, or a score of the wrong shape.
    """
    if trace not in get_args(TraceMethod):
        raise ValueError(f"trace must be one of {', '.join(get_args(TraceMethod))}; got {trace!r}")
    xg, s, create_graph = _score_with_grad(score_fn, x)
    with torch.enable_grad():
        if trace == "exact":
            tr = jacobian_trace(s, xg, create_graph=create_graph)  # tr ∇_x s
        else:
            v = draw_probes(xg, n_probes, probe, generator)  # [K, B, ...]
            tr = hutchinson_trace(s, xg, v, create_graph=create_graph)  # E_v[vᵀ ∇_x s v]
    loss = 0.5 * _sum_dims(s**2) + tr  # Hyvärinen 2005, Theorem 1
    return loss if create_graph else loss.detach()


def sliced_score_matching(score_fn: ScoreFn, x: Tensor, *, n_probes: int = 1, probe: ProbeNoise = "gaussian",
                          variance_reduction: bool = False,
                          generator: torch.Generator | None = None) -> Tensor:
    """Sliced score matching per example (Song et al. 2019, §3), averaged over ``n_probes`` projections v.

    Plain (SSM): (1/K) Σ_k [v_kᵀ (∂s/∂x) v_k + ½ (v_kᵀ s)²]. With ``variance_reduction`` (SSM-VR):
    (1/K) Σ_k v_kᵀ (∂s/∂x) v_k + ½‖s‖², replacing (vᵀ s)² by its expectation ‖s‖². Both have the expectation of
    :func:`explicit_score_matching` for any probe with E[vvᵀ] = I; the paper states SSM-VR for Gaussian (and
    Rademacher) v, and Gaussian v is the default here, as in the paper's experiments. The plain form with
    Rademacher probes is also unbiased. vᵀ (∂s/∂x) v costs one backward pass per probe, independent of D.

    Args:
        score_fn: s(x). x: ``[B, ...]``. n_probes: K ≥ 1. probe: ``gaussian`` or ``rademacher``.
        variance_reduction: use SSM-VR. generator: draws the probes.
    Returns:
        ``[B]`` in the score's dtype.
    Raises:
        ValueError: for an unknown ``probe``, ``n_probes`` < 1, or a score of the wrong shape.
    """
    xg, s, create_graph = _score_with_grad(score_fn, x)
    v = draw_probes(xg, n_probes, probe, generator)  # [K, B, ...]
    with torch.enable_grad():
        vjv = hutchinson_trace(s, xg, v, create_graph=create_graph)  # (1/K) Σ_k vᵀ ∇_x s v
    if variance_reduction:
        quad = 0.5 * _sum_dims(s**2)  # SSM-VR: E_v[(vᵀ s)²] = ‖s‖²
    else:
        quad = 0.5 * (v * s.unsqueeze(0)).flatten(2).sum(2).pow(2).mean(0)  # (1/K) Σ_k ½ (v_kᵀ s)²
    loss = vjv + quad
    return loss if create_graph else loss.detach()


def denoising_score_matching(score_fn: ScoreFn, x: Tensor, sigma: float, *, eps: Tensor | None = None,
                             generator: torch.Generator | None = None) -> Tensor:
    """Denoising score matching at one noise level per example: ½‖s(x + σz) + z/σ‖² (Vincent 2011; seed 003).

    Its expectation is ½ E_{q_σ}‖s(x̃) − ∇log q_σ(x̃)‖² plus a constant, q_σ = p ∗ N(0, σ²I), so the optimal s is
    the score of the *noised* data. It also equals :func:`explicit_score_matching` on x̃ plus D/(2σ²) in
    expectation (Vincent 2011, §4). No derivative of s with respect to x is taken.

    Args:
        score_fn: s(x̃) at this σ (for a noise-conditional model pass ``lambda x: model(x, sigma)``).
        x: ``[B, ...]`` clean data. sigma: σ > 0, in the units of x.
        eps: ``[B, ...]`` the standard normal z to use (to share noise between calls); drawn from
            ``generator`` when None.
    Returns:
        ``[B]`` in the score's dtype.
    Raises:
        ValueError: for σ ≤ 0, an ``eps`` of the wrong shape, or a score of the wrong shape.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    z = _noise(x, eps, generator)
    x_tilde = x + sigma * z  # x̃ ~ q_σ(x̃|x) = N(x, σ²I)
    s = score_fn(x_tilde)
    _check_score(s, x)
    return 0.5 * _sum_dims((s + z / sigma) ** 2)  # ∇_x̃ log q_σ(x̃|x) = −(x̃ − x)/σ² = −z/σ


def multiscale_denoising_score_matching(score_fn: NoiseConditionalScoreFn, x: Tensor, sigmas: Tensor, *,
                                        weighting: SigmaWeighting = "sigma2", eps: Tensor | None = None,
                                        index: Tensor | None = None,
                                        generator: torch.Generator | None = None) -> Tensor:
    """NCSN's denoising score matching over a ladder of noise levels, one level per example (NCSN Eq. 5–6).

    Per example, draw i uniformly from 1..L and z ~ N(0, I), and return λ(σ_i) · ½‖s(x + σ_i z, σ_i) + z/σ_i‖²;
    the batch mean is an unbiased estimate of (1/L) Σ_i λ(σ_i) ℓ(θ; σ_i). With λ(σ) = σ² (NCSN's choice, since
    ‖∇log q_σ‖ ∝ 1/σ) the term is ½‖σ s + z‖² and every level contributes O(D).

    Args:
        score_fn: s(x̃, σ) with σ ``[B]`` in x's dtype. x: ``[B, ...]`` clean data.
        sigmas: ``[L]`` noise levels (e.g. :func:`geometric_sigmas`), all > 0.
        weighting: ``sigma2`` (λ = σ²) or ``none`` (λ = 1).
        eps: ``[B, ...]`` the noise z (drawn when None). index: ``[B]`` int64 level indices into ``sigmas``
            (drawn uniformly when None). generator: draws what is not given (index first, then z).
    Returns:
        ``[B]`` in the score's dtype.
    Raises:
        ValueError: for an empty or non-positive ``sigmas``, an unknown ``weighting``, or wrong shapes.
    """
    if sigmas.ndim != 1 or len(sigmas) == 0 or not bool((sigmas > 0).all()):
        raise ValueError(f"sigmas must be a non-empty 1-D tensor of positive noise levels, got {sigmas}")
    if weighting not in get_args(SigmaWeighting):
        raise ValueError(f"weighting must be one of {', '.join(get_args(SigmaWeighting))}; got {weighting!r}")
    B = x.shape[0]
    if index is None:
        index = torch.randint(0, len(sigmas), (B,), generator=generator, device=x.device)  # σ ~ U{σ_1..σ_L}
    elif index.shape != (B,):
        raise ValueError(f"index must have shape [{B}], got {tuple(index.shape)}")
    z = _noise(x, eps, generator)
    sigma = sigmas.to(x.device)[index].to(x.dtype)  # [B]
    sig = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    s = score_fn(x + sig * z, sigma)  # x̃ = x + σ_i z
    _check_score(s, x)
    if weighting == "sigma2":
        return 0.5 * _sum_dims((sig * s + z) ** 2)  # σ² · ½‖s + z/σ‖², NCSN Eq. 6 with λ(σ) = σ²
    return 0.5 * _sum_dims((s + z / sig) ** 2)  # ℓ(θ; σ), NCSN Eq. 5


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> Tensor:
    """A geometric ladder σ_1 = σ_max > … > σ_n = σ_min, σ_{i+1}/σ_i constant (NCSN §4.1), ``[n]`` float64.

    ``n = 1`` gives ``[σ_max]`` (as ``numpy.geomspace``).

    Raises:
        ValueError: unless σ_max ≥ σ_min > 0 and n ≥ 1.
    """
    if not (sigma_max >= sigma_min > 0) or n < 1:
        raise ValueError(f"need sigma_max ≥ sigma_min > 0 and n ≥ 1, got sigma_max={sigma_max}, "
                         f"sigma_min={sigma_min}, n={n}")
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    return torch.exp(math.log(sigma_max) + t * (math.log(sigma_min) - math.log(sigma_max)))


def _noise(x: Tensor, eps: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """The given standard normal noise (checked against x's shape) or a fresh draw ``[B, ...]``."""
    if eps is None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if eps.shape != x.shape:
        raise ValueError(f"eps must have the data's shape {tuple(x.shape)}, got {tuple(eps.shape)}")
    return eps
