"""Samplers for Gaussian diffusion models: plain functions that take the model as an argument.

Each runs on an S-step process *derived* from the model's ``alphas_cumprod`` (``DiscreteSchedule.respace``),
so S = T is the training process and S < T a faster one. Both use the continuous logSNR core of
:mod:`.gaussian`: a step goes from λ_t = ``logsnr[j]`` to λ_s = ``logsnr_prev[j]`` of the respaced process.

=============  ===============================================================================
ancestral      x_s ~ p_θ(x_s | x_t) = N(μ̃(x_t, x̂_0), σ²_j)  (DDPM Algorithm 2; seed 003's update)
ddim           x_s = α_s x̂_0 + √(σ_s² − η² σ̃²) ε̂ + η σ̃ z,  σ̃² = r σ_s²  (Song et al. 2021, Eq. 12);
               η = 0 is deterministic, η = 1 is the ancestral update with σ²_j = β̃_j
=============  ===============================================================================

The continuous-time samplers run the network at any λ through :meth:`DDPM.denoise` (the fractional step
index whose logSNR is λ). They visit a grid λ_0 < … < λ_{N−1} from ``logsnr_min`` (x ~ N(0, I)) to
``logsnr_max`` and return x̂_0 at the last point (the step to σ = 0 of EDM Algorithm 1 and of DPM-Solver's
``lower_order_final``, which costs no extra evaluation):

==============  ===========================================================  ==========  ================
dpm++           DPM-Solver++(2M), data prediction (Lu et al. 2022b, Alg. 2)  N NFE       λ-uniform grid
heun            Heun on the PF-ODE, EDM Algorithm 1 (Karras et al. 2022)     2N − 1 NFE  EDM ρ = 7 grid
euler_maruyama  Euler–Maruyama on the reverse SDE (Song et al. 2021, Eq. 6)  N NFE       DDPM's steps
ode             the PF-ODE with an adaptive solver (torchdiffeq dopri5)      adaptive    —
pc              predictor–corrector (score SDE §4.2, App. G; M corrector     N(M + 1)    DDPM's steps
                steps per level, :func:`genmodels.diffusion.pc.predictor_corrector`)
==============  ===========================================================  ==========  ================

``steps`` is N, the number of noise levels; :func:`~.grids.steps_for_nfe` gives the N that spends a budget of NFE.

Every sampler reads the network only through ``model.model_output`` and ``model.denoise``, so it takes a
:class:`~genmodels.diffusion.guidance.Guided` in place of the model unchanged: class labels and classifier-free
guidance (Ho & Salimans 2022, Eq. 6) in every sampler, with no code of their own here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from ..core import Progress, SampleOutput
from ..registry import Registry
from . import gaussian as G
from .grids import Spacing, logsnr_grid, steps_for_nfe
from .pc import predictor_corrector
from .schedules import DiscreteSchedule

if TYPE_CHECKING:
    from .base import DiffusionModel

__all__ = ["Sampler", "ancestral", "ddim", "dpm_solver_pp", "heun", "euler_maruyama", "pf_ode",
           "predictor_corrector", "logsnr_grid", "steps_for_nfe", "SAMPLERS"]


class Sampler(Protocol):
    """The signature every sampler has."""

    def __call__(self, model: DiffusionModel, n: int, *, steps: int, generator: torch.Generator | None = None,
                 progress: Progress | None = None,
                 keep_trajectory: bool = False) -> SampleOutput: ...


def _run(model: DiffusionModel, n: int, sched: DiscreteSchedule, generator: torch.Generator | None,
         progress: Progress | None, keep_trajectory: bool,
         update: Callable[[Tensor, G.Prediction, int, Tensor, Tensor], Tensor]) -> SampleOutput:
    """Shared loop over the respaced process ``sched``: x_T ~ N(0, I), then for j = S−1 … 0 evaluate the
    network and apply ``update``."""
    dev = model.device
    x = torch.randn((n, *model.spec.event_shape), generator=generator, device=dev)
    traj = [x] if keep_trajectory else None
    order = range(sched.num_steps - 1, -1, -1)
    for j in progress(order) if progress else order:
        i = sched.timesteps[j].expand(n)
        pred = model.model_output(x, i, clip_x0=model.config.clip_x0).pred
        lt = sched.logsnr[j].expand(n)
        ls = sched.logsnr_prev[j].expand(n)
        x = update(x, pred, j, ls, lt)
        if traj is not None:
            traj.append(x)
    return SampleOutput(x0=x, nfe=sched.num_steps, trajectory=torch.stack(traj) if traj else None,
                         timesteps=sched.timesteps.flip(0).tolist())


@torch.no_grad()
def ancestral(model: DiffusionModel, n: int, *, steps: int, generator: torch.Generator | None = None,
              progress: Progress | None = None, keep_trajectory: bool = False) -> SampleOutput:
    """Ancestral sampling of p_θ(x_{0:T}) (DDPM Algorithm 2) on an S-step respaced process.

    The reverse variance is the model's (``fixed_small`` β̃ or ``fixed_large`` β) of the respaced process;
    no noise is added at the last step (Algorithm 2, line 4: z = 0 for t = 1).

    Args:
        model: a :class:`~genmodels.diffusion.ddpm.DDPM`. n: number of samples. steps: S, 1 ≤ S ≤ T.
    Returns:
        :class:`SampleOutput` with S network evaluations.
    """
    sched = model.schedule.respace(steps)
    log_var = G.reverse_log_variance(sched.betas, sched.alphas_cumprod_prev, sched.alphas_cumprod,
                                     model.config.variance) if sched.num_steps > 1 else sched.betas.log()

    def update(x: Tensor, pred: G.Prediction, j: int, ls: Tensor, lt: Tensor) -> Tensor:
        """One ancestral step x_t -> x_s (``[n, ...]``)."""
        mean, _ = G.q_posterior(pred.x0, x, ls, lt)  # μ̃(x_t, x̂_0), DDPM Eq. 7
        if j == 0:
            return mean
        z = torch.randn(x.shape, generator=generator, device=x.device)
        return mean + torch.exp(0.5 * log_var[j]).to(x.dtype) * z

    return _run(model, n, sched, generator, progress, keep_trajectory, update)


@torch.no_grad()
def ddim(model: DiffusionModel, n: int, *, steps: int, eta: float = 0.0, generator: torch.Generator | None = None,
         progress: Progress | None = None, keep_trajectory: bool = False) -> SampleOutput:
    """DDIM (Song et al. 2021, Eq. 12) on an S-step respaced process.

    x_s = α_s x̂_0 + √(σ_s² − η²σ̃²) ε̂ + η σ̃ z with σ̃² = r σ_s² the true posterior variance; η = 0 is the
    deterministic sampler, η = 1 equals :func:`ancestral` with ``fixed_small`` variance.

    Args:
        eta: η ≥ 0.
    Raises:
        ValueError: if ``eta`` < 0.
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")

    def update(x: Tensor, pred: G.Prediction, j: int, ls: Tensor, lt: Tensor) -> Tensor:
        """One DDIM step x_t -> x_s (``[n, ...]``), Eq. 12."""
        alpha_s, sigma_s = G.alpha_sigma(ls.double())
        var_post = -torch.expm1(lt.double() - ls.double()) * sigma_s**2  # σ̃² = r σ_s²
        noise_std = eta * var_post.sqrt()
        dir_coef = (sigma_s**2 - noise_std**2).clamp(min=0).sqrt()
        x_s = G._expand(alpha_s, x) * pred.x0 + G._expand(dir_coef, x) * pred.eps
        if j == 0 or eta == 0:
            return x_s
        z = torch.randn(x.shape, generator=generator, device=x.device)
        return x_s + G._expand(noise_std, x) * z

    return _run(model, n, model.schedule.respace(steps), generator, progress, keep_trajectory, update)


# ============================================================================ continuous-time samplers


def _x0(model: DiffusionModel, x: Tensor, lam: Tensor, clip_x0: bool) -> Tensor:
    """x̂_0(x, λ) for a batch ``[n, ...]`` at one level λ (0-d)."""
    return model.denoise(x, lam.expand(len(x)), clip_x0=clip_x0).pred.x0


def _clip(model: DiffusionModel, clip_x0: bool | None) -> bool:
    return model.config.clip_x0 if clip_x0 is None else clip_x0


def _prior(model: DiffusionModel, n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn((n, *model.spec.event_shape), generator=generator, device=model.device)


@torch.no_grad()
def dpm_solver_pp(model: DiffusionModel, n: int, *, steps: int, generator: torch.Generator | None = None,
                  progress: Progress | None = None, keep_trajectory: bool = False,
                  spacing: Spacing = "logsnr", clip_x0: bool | None = None) -> SampleOutput:
    """DPM-Solver++(2M): second-order multistep, data prediction (Lu et al. 2022b, Algorithm 2).

    With h_i = (λ_i − λ_{i−1})/2 (the paper's λ is half our logSNR) and D the data prediction,

        x_i = (σ_i/σ_{i−1}) x_{i−1} + α_i (1 − e^{−h_i}) D_i,
        D_1 = x̂_0^{(0)},  D_i = (1 + 1/(2r_i)) x̂_0^{(i−1)} − 1/(2r_i) x̂_0^{(i−2)},  r_i = h_{i−1}/h_i,

    then x̂_0 at λ_{N−1} (the first-order final step to σ = 0). N network evaluations.

    Args:
        steps: N ≥ 1 noise levels. spacing: grid of :func:`logsnr_grid` (``logsnr`` by default, the paper's
            choice for small images). clip_x0: clamp x̂_0 to [−1, 1] (default: the model's ``clip_x0``).
    """
    clip = _clip(model, clip_x0)
    lam = logsnr_grid(model, steps, spacing)
    alpha, sigma = G.alpha_sigma(lam)
    x = _prior(model, n, generator)
    traj = [x] if keep_trajectory else None
    x0_prev, h_prev = None, None
    order = range(steps)
    for i in progress(order) if progress else order:
        x0 = _x0(model, x, lam[i], clip)
        if i == steps - 1:
            x = x0
        else:
            h = (lam[i + 1] - lam[i]) / 2
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)).item() * x0 - (1 / (2 * r)).item() * x0_prev
            x = (sigma[i + 1] / sigma[i]).item() * x + (alpha[i + 1] * -torch.expm1(-h)).item() * d
            x0_prev, h_prev = x0, h
        if traj is not None:
            traj.append(x)
    return SampleOutput(x0=x, nfe=steps, trajectory=torch.stack(traj) if traj else None)


@torch.no_grad()
def heun(model: DiffusionModel, n: int, *, steps: int, generator: torch.Generator | None = None,
         progress: Progress | None = None, keep_trajectory: bool = False,
         rho: float = 7.0, spacing: Spacing = "edm", clip_x0: bool | None = None, s_churn: float = 0.0,
         s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> SampleOutput:
    """Heun's second-order method on the probability-flow ODE: EDM Algorithm 1 (Karras et al. 2022), or with
    ``s_churn`` > 0 the stochastic sampler of EDM Algorithm 2.

    In EDM's variables x̃ = x/α and σ̃ = σ/α = e^{−λ/2} the PF-ODE is dx̃/dσ̃ = (x̃ − D(x̃; σ̃))/σ̃ with
    D(x̃; σ̃) = x̂_0(α x̃, λ) (EDM Eq. 3–4 with s = α). On the grid σ̃_0 > … > σ̃_{N−1} > σ̃_N = 0 (EDM Eq. 5,
    ρ = 7), each step is an Euler step plus a trapezoidal correction, except the last (to σ̃ = 0), which is
    Euler and gives x̂_0. 2N − 1 network evaluations. Algorithm 2 first raises the noise of x̃ from σ̃_i to
    σ̂ = σ̃_i(1 + γ_i), γ_i = min(S_churn/N, √2 − 1) for σ̃_i ∈ [S_tmin, S_tmax] (else 0), by adding
    N(0, (σ̂² − σ̃_i²) S_noise² I), then takes the Heun step from σ̂ (same NFE).

    Args:
        steps: N ≥ 1 noise levels. rho: ρ of the EDM grid. clip_x0: as in :func:`dpm_solver_pp`.
        s_churn, s_tmin, s_tmax, s_noise: EDM Algorithm 2's stochasticity (S_churn = 0: deterministic).
    Raises:
        ValueError: for negative ``s_churn``.
    """
    if s_churn < 0:
        raise ValueError(f"s_churn must be ≥ 0, got {s_churn}")
    clip = _clip(model, clip_x0)
    lam = logsnr_grid(model, steps, spacing, rho)
    t = torch.cat([(-lam / 2).exp(), lam.new_zeros(1)]).tolist()  # σ̃_0 > … > σ̃_{N−1} > σ̃_N = 0
    x = _prior(model, n, generator)
    traj = [x] if keep_trajectory else None
    x_tilde = x * math.sqrt(1 + t[0] ** 2)  # x/α with α = 1/√(1 + σ̃²)
    nfe = 0

    def slope(xt: Tensor, sig: float) -> Tensor:
        """dx̃/dσ̃ = (x̃ − D(x̃; σ̃))/σ̃ at σ̃ = ``sig``."""
        lam_s = torch.tensor(-2 * math.log(sig), dtype=torch.float64, device=xt.device)
        d = _x0(model, xt / math.sqrt(1 + sig**2), lam_s, clip)
        return (xt - d) / sig

    order = range(steps)
    for i in progress(order) if progress else order:
        t_cur = t[i]
        if s_churn > 0 and s_tmin <= t_cur <= s_tmax:
            t_hat = min(t_cur * (1 + min(s_churn / steps, math.sqrt(2) - 1)), t[0])
            z = torch.randn(x_tilde.shape, generator=generator, device=x_tilde.device)
            x_tilde = x_tilde + math.sqrt(max(t_hat**2 - t_cur**2, 0.0)) * s_noise * z
            t_cur = t_hat
        d_i = slope(x_tilde, t_cur)
        nfe += 1
        x_next = x_tilde + (t[i + 1] - t_cur) * d_i
        if i < steps - 1:
            d_next = slope(x_next, t[i + 1])
            nfe += 1
            x_next = x_tilde + (t[i + 1] - t_cur) * (0.5 * d_i + 0.5 * d_next)
        x_tilde = x_next
        if traj is not None:
            traj.append(x_tilde / math.sqrt(1 + t[i + 1] ** 2))
    return SampleOutput(x0=x_tilde, nfe=nfe, trajectory=torch.stack(traj) if traj else None)


@torch.no_grad()
def euler_maruyama(model: DiffusionModel, n: int, *, steps: int, generator: torch.Generator | None = None,
                   progress: Progress | None = None, keep_trajectory: bool = False,
                   spacing: Spacing = "time", clip_x0: bool | None = None) -> SampleOutput:
    """Euler–Maruyama on the reverse-time SDE (Song et al. 2021, Eq. 6), written in λ.

    The VP forward SDE in λ has drift ½σ²x and squared diffusion −σ² per unit dλ (see :mod:`.ode`), so the
    reverse SDE dx = [f − g²∇log p] dt + g dw̄ with ∇log p = −ε̂/σ, stepped from λ_i to λ_{i+1}
    (Δλ = λ_{i+1} − λ_i > 0), is

        x ← x (1 + ½σ_i²Δλ) − σ_i Δλ ε̂ + σ_i √Δλ z,

    followed by x̂_0 at λ_{N−1} (Song et al.'s final denoising step). N network evaluations.

    Args:
        steps: N ≥ 1 noise levels. spacing: ``time`` (DDPM's kept steps) by default.
    """
    clip = _clip(model, clip_x0)
    lam = logsnr_grid(model, steps, spacing)
    _, sigma = G.alpha_sigma(lam)
    x = _prior(model, n, generator)
    traj = [x] if keep_trajectory else None
    order = range(steps)
    for i in progress(order) if progress else order:
        out = model.denoise(x, lam[i].expand(n), clip_x0=clip)
        if i == steps - 1:
            x = out.pred.x0
        else:
            dl, s = (lam[i + 1] - lam[i]).item(), sigma[i].item()
            z = torch.randn(x.shape, generator=generator, device=x.device)
            x = x * (1 + 0.5 * s**2 * dl) - s * dl * out.pred.eps + s * math.sqrt(dl) * z
        if traj is not None:
            traj.append(x)
    return SampleOutput(x0=x, nfe=steps, trajectory=torch.stack(traj) if traj else None)


@torch.no_grad()
def pf_ode(model: DiffusionModel, n: int, *, steps: int | None = None, generator: torch.Generator | None = None,
           progress: Progress | None = None, keep_trajectory: bool = False,
           rtol: float = 1e-3, atol: float = 1e-3, method: str = "dopri5",
           clip_x0: bool | None = None) -> SampleOutput:
    """The probability-flow ODE (Song et al. 2021, Eq. 13) from λ_min to λ_max with an adaptive solver
    (torchdiffeq's ``dopri5`` by default; score SDE uses RK45 with tolerances 1e-5), then x̂_0 at λ_max.

    The NFE follows from ``rtol``/``atol`` and is counted. ``steps`` is ignored (kept for the common signature);
    with ``keep_trajectory`` the solution is also reported at 8 levels evenly spaced in λ.

    Args:
        rtol, atol: solver tolerances (> 0). method: a torchdiffeq method name.
        clip_x0: clamp x̂_0 inside the drift (default: the model's ``clip_x0``).
    Raises:
        ValueError: for non-positive tolerances.
    """
    from torchdiffeq import odeint

    from .ode import probability_flow_drift

    if rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    clip = _clip(model, clip_x0)
    nfe = 0

    def f(lam: Tensor, x: Tensor) -> Tensor:
        """The PF-ODE drift dx/dλ at λ = ``lam`` (0-d), counting evaluations."""
        nonlocal nfe
        nfe += 1
        return probability_flow_drift(model, x, lam.double().expand(n), clip_x0=clip)

    x = _prior(model, n, generator)
    k = 8 if keep_trajectory else 2
    lams = torch.linspace(model.logsnr_min, model.logsnr_max, k, dtype=torch.float32, device=x.device)
    xs = odeint(f, x, lams, rtol=rtol, atol=atol, method=method)
    x0 = _x0(model, xs[-1], lams[-1].double(), clip)
    nfe += 1
    traj = torch.cat([xs, x0[None]]) if keep_trajectory else None
    return SampleOutput(x0=x0, nfe=nfe, trajectory=traj)


SAMPLERS: Registry[Sampler] = Registry("sampler")
SAMPLERS.register("ancestral", ancestral)
SAMPLERS.register("ddim", ddim)
SAMPLERS.register("dpm++", dpm_solver_pp)
SAMPLERS.register("heun", heun)
SAMPLERS.register("euler_maruyama", euler_maruyama)
SAMPLERS.register("ode", pf_ode)
SAMPLERS.register("pc", predictor_corrector)
