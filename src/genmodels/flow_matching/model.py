"""Flow matching (Lipman et al. 2023), rectified flow (Liu et al. 2023) and OT-CFM (Tong et al. 2024): a continuous
normalizing flow dx/dt = v_θ(x, t) from N(0, I) at t = 0 to the data at t = 1, trained without solving the ODE.

Training regresses the conditional velocity of a Gaussian path (:mod:`.paths`): the conditional flow-matching loss

    L_CFM(θ) = E_{t ~ U[0, 1], (x_0, x_1) ~ π} ‖v_θ(x_t, t) − (α̇_t x_1 + σ̇_t x_0)‖²,   x_t = α_t x_1 + σ_t x_0

(Lipman et al. 2023, Eq. 9 and 14; its gradient equals that of the marginal loss, Theorem 2), with the coupling π of
noise and data independent (I-CFM) or the minibatch OT plan (:mod:`.coupling`). The loss is averaged over
dimensions (torchcfm's and facebookresearch/flow_matching's convention), per example.

Sampling solves the ODE from t = 0 to 1 (:mod:`.solvers`: ``euler``, ``midpoint``, ``heun``, adaptive ``ode``).
The log-likelihood is exact up to the solver's error through the instantaneous change of variables
(:func:`genmodels.cnf.cnf_log_likelihood`, the implementation the diffusion models' probability-flow ODE uses),
solved from the data at t = 1 to the prior at t = 0; discrete data is uniformly dequantized first (the project's
convention, :mod:`genmodels.core`), so its NLL is an upper bound in expectation.

A class-conditional model reads the label as the diffusion models do (a learned embedding added to the time
embedding; label dropout ``p_uncond``), and every sampler takes classifier-free guidance on the velocity,
ṽ = (1 + w)·v(x, t, y) − w·v(x, t, ∅) (Ho & Salimans 2022, Eq. 6, applied to the velocity as in Zheng et al. 2023
and facebookresearch/flow_matching).

The network is the diffusion models' backbone (:func:`genmodels.nets.noise_conditional_net`: the same UNet or MLP),
read at c_noise = 1000·t, so a comparison at the same network is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, get_args

import torch
from torch import Tensor, nn

from ..cnf import CNFLikelihood, ProbeNoise, TraceMethod, cnf_log_likelihood
from ..core import (
    Conditioning,
    DataSpec,
    GenerativeModel,
    NLLOutput,
    Progress,
    SampleOutput,
    discrete_nll_from_density,
    log_bin_width,
    uniform_dequantize,
)
from ..nets import noise_conditional_net
from ..nets.mlp import MLPConfig
from ..nets.unet import UNetConfig, unet_preset
from .coupling import CouplingKind, ot_pair
from .paths import PathKind, ProbabilityPath, make_path
from .solvers import NFE_PER_STEP, solve_adaptive, solve_fixed

__all__ = ["FlowMatchingConfig", "FlowMatching", "default_config", "DEFAULT_NFE"]

DEFAULT_NFE = 100
"""Network evaluations per sample of a fixed-step sampler when no step count is given (50 midpoint or Heun steps,
100 Euler steps)."""
IMAGE_ODE_TOL = 1e-4
"""The likelihood's default rtol = atol on images: the diffusion models' Fashion-MNIST UNet gave 2.770 bits/dim at
1e-4 and 2.769 at 1e-5 for 4× the evaluations (:func:`genmodels.diffusion.ode.ode_log_likelihood`); 1e-5 on vectors."""


@dataclass(frozen=True)
class FlowMatchingConfig:
    """A flow-matching model: path, coupling and backbone.

    Attributes:
        path: ``linear`` (the OT path of Lipman et al. 2023 / rectified flow) or ``vp`` (variance preserving, the
            diffusion models' path in logSNR; :mod:`genmodels.flow_matching.paths`).
        sigma_min: σ_min of the linear path (Lipman et al. 2023 use 1e-4 on images; 0: rectified flow).
        logsnr_min, logsnr_max: λ at t = 0 and t = 1 of the ``vp`` path.
        coupling: ``independent`` (I-CFM) or ``ot`` (minibatch optimal transport, OT-CFM, Tong et al. 2024).
        unet: backbone for images. mlp: backbone for vectors. cond: class conditioning
            (:class:`~genmodels.core.Conditioning`).
    """

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"sigma_min": (0.0, 0.5), "logsnr_min": (-30.0, 30.0),
                                                         "logsnr_max": (-30.0, 30.0)}
    path: PathKind = "linear"
    sigma_min: float = 0.0
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0
    coupling: CouplingKind = "independent"
    unet: UNetConfig = field(default_factory=UNetConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        for name, kind in (("path", PathKind), ("coupling", CouplingKind)):
            if getattr(self, name) not in get_args(kind):
                raise ValueError(f"{name} must be one of {', '.join(get_args(kind))}; got {getattr(self, name)!r}")
        make_path(self.path, self.sigma_min, self.logsnr_min, self.logsnr_max)  # raises for a bad λ range


class FlowMatching(GenerativeModel):
    """A continuous normalizing flow trained by conditional flow matching (module docstring).

    Args:
        config: :class:`FlowMatchingConfig`. spec: the data it models.
    Raises:
        ValueError: for an event shape that is neither an image nor a vector.
    """

    description = "flow matching / rectified flow, a continuous normalizing flow (Lipman et al. 2023; Liu et al. 2023)"
    nll_kind = "estimate"
    samplers: ClassVar[tuple[str, ...]] = ("midpoint", "euler", "heun", "ode")
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {
        "euler": ("guidance_scale",), "midpoint": ("guidance_scale",), "heun": ("guidance_scale",),
        "ode": ("rtol", "atol", "method", "guidance_scale")}
    guidance_samplers: ClassVar[tuple[str, ...]] = samplers
    fast_sampler: ClassVar[str | None] = "midpoint"
    has_ode_likelihood = True
    nll_per_curve_point = False  # the NLL is an ODE solve with a divergence: no learning curve of it

    def __init__(self, config: FlowMatchingConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self.set_conditioning(config.cond)
        self.path: ProbabilityPath = make_path(config.path, config.sigma_min, config.logsnr_min, config.logsnr_max)
        labels = self.num_label_embeddings if self.num_classes is not None else None
        self.net: nn.Module = noise_conditional_net(spec, config.unet, config.mlp, "flow matching", num_labels=labels)

    # ------------------------------------------------------------------ the network
    def velocity(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """v_θ(x, t[, y]): ``x`` ``[B, *event_shape]``, ``t`` ``[B]`` in [0, 1], ``y`` ``[B]`` resolved labels of a
        conditional model (None: the null label). The network runs in its parameters' dtype; the result is in
        ``x``'s."""
        if y is None and self.num_classes is not None:
            y = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        dtype = next((p.dtype for p in self.net.parameters() if p.is_floating_point()), x.dtype)
        c_noise = 1000.0 * t.float()  # the DDPM timestep scale of the sinusoidal embedding
        h = x.to(dtype)
        out = self.net(h, c_noise) if y is None else self.net(h, c_noise, y)
        return out.to(x.dtype)

    def field(self, y: Tensor | None, guidance_scale: float = 0.0):
        """The velocity the solvers integrate, ``v(x [n, ...], t [] scalar) -> [n, ...]``, with the labels ``y``
        (``[n]`` resolved, or None) bound in and classifier-free guidance of scale w (module docstring): for w ≠ 0
        one network call on the doubled batch [x, x] with labels [y, ∅], counted as two evaluations. ``t`` is
        clamped to [0, 1]: an adaptive solver's last step may overshoot the end and interpolate back."""
        w = float(guidance_scale)

        def v(x: Tensor, t: Tensor) -> Tensor:
            """The (guided) velocity at ``x`` ``[n, ...]`` and the scalar time ``t``."""
            tt = t.clamp(0.0, 1.0).expand(x.shape[0])
            if w == 0 or y is None:
                return self.velocity(x, tt, y)
            both = self.velocity(torch.cat([x, x]), torch.cat([tt, tt]),
                                 torch.cat([y, torch.full_like(y, self.null_label)]))
            cond, uncond = both.chunk(2)
            return (1 + w) * cond - w * uncond

        return v

    # ------------------------------------------------------------------ training
    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Per-example conditional flow-matching loss ``[B]`` (module docstring), mean over dimensions; the noise is
        paired with the data by the configured coupling. A conditional model trains on ``y`` after label dropout."""
        y = self.drop_labels(y, len(x), generator)
        x0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.config.coupling == "ot":
            x0 = ot_pair(x0, x)
        return self.pair_loss(x0, x, generator, y)

    def pair_loss(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None,
                  y: Tensor | None = None) -> Tensor:
        """The loss on given noise–data pairs ``x0[j] ↔ x1[j]`` (``[B, ...]`` each; ``y`` resolved labels or None):
        what :meth:`loss` computes after pairing, and what reflow trains on (:mod:`genmodels.flow_matching.reflow`).
        t ~ U[0, 1) per example, drawn from ``generator``."""
        t = torch.rand(x1.shape[0], generator=generator, device=x1.device)
        x_t, u_t = self.path.sample(x0, x1, t)
        return (self.velocity(x_t, t, y) - u_t).pow(2).flatten(1).mean(1)

    # ------------------------------------------------------------------ sampling
    def default_steps(self, sampler: str | None = None) -> int | None:
        """:data:`DEFAULT_NFE` evaluations' worth of steps; None for the adaptive ``ode``."""
        name = self.check_sampler(sampler)
        return None if name == "ode" else DEFAULT_NFE // NFE_PER_STEP[name]

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int | None:
        """steps × evaluations per step (1 Euler, 2 midpoint or Heun), doubled with guidance; None for ``ode``."""
        name = self.check_sampler(sampler)
        if name == "ode":
            return None
        n = (self.default_steps(name) if steps is None else steps) * NFE_PER_STEP[name]
        return n * (2 if guidance_scale != 0 else 1)

    def steps_for_nfe(self, sampler: str, nfe: int) -> int | None:
        """The most steps within ``nfe`` evaluations (nfe // evaluations per step); None for ``ode``."""
        name = self.check_sampler(sampler)
        return None if name == "ode" else nfe // NFE_PER_STEP[name]

    def prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n, *event_shape]`` draws of N(0, I) at t = 0, float64 for vectors, float32 for images."""
        dtype = torch.float32 if self.spec.is_image else torch.float64
        return torch.randn((n, *self.spec.event_shape), generator=generator, device=self.device, dtype=dtype)

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
             progress: Progress | None = None, keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """Solve the ODE from N(0, I) at t = 0 to t = 1 with a sampler of :mod:`.solvers`.

        Args:
            n: samples. sampler: ``midpoint`` (default), ``euler``, ``heun`` or ``ode`` (options ``rtol``, ``atol``,
                ``method``). steps: fixed-step samplers' step count (default :data:`DEFAULT_NFE` evaluations).
            y: ``[n]`` labels of a conditional model (None: the null label). guidance_scale: w, on every sampler.
        Returns:
            :class:`~genmodels.core.SampleOutput`; samples of discrete data are clamped to its range [−1, 1] (where
            its bins lie); ``nfe`` counts both passes of a guided step.
        Raises:
            KeyError: unknown sampler. ValueError: an option it does not take, steps < 1, a bad label or guidance.
        """
        out = self.solve(self.prior(n, generator), sampler=sampler, steps=steps, y=y, guidance_scale=guidance_scale,
                         progress=progress, keep_trajectory=keep_trajectory, **options)
        out.x0 = out.x0.float()
        return out

    @torch.no_grad()
    def solve(self, x0: Tensor, *, sampler: str | None = None, steps: int | None = None, y: Tensor | None = None,
              guidance_scale: float = 0.0, progress: Progress | None = None, keep_trajectory: bool = False,
              **options: Any) -> SampleOutput:
        """Solve the ODE from given noise ``x0`` ``[n, *event_shape]`` at t = 0 to t = 1: :meth:`draw` from a chosen
        start (reflow's pairs, :func:`genmodels.flow_matching.reflow.reflow_pairs`); arguments, clamping and errors
        as there. The samples keep ``x0``'s dtype."""
        name = self.check_sampler(sampler, options)
        self.check_guidance(name, guidance_scale, y)
        if name == "ode" and steps is not None:
            raise ValueError("the adaptive 'ode' sampler has no step count (its rtol/atol set its cost); drop --steps")
        v = self.field(self.labels_or_null(y, x0.shape[0]), guidance_scale)
        if name == "ode":
            x1, nfe, traj = solve_adaptive(v, x0, keep_trajectory=keep_trajectory, **options)
        else:
            x1, nfe, traj = solve_fixed(v, x0, self.default_steps(name) if steps is None else steps, name, progress,
                                        keep_trajectory)
        if guidance_scale != 0:
            nfe *= 2
        if self.spec.is_discrete:
            x1 = x1.clamp(*self.spec.value_range)
        return SampleOutput(x0=x1, nfe=nfe, trajectory=traj)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **kw: Any) -> Tensor:
        """``[n, *event_shape]`` samples: :meth:`draw` without the NFE."""
        return self.draw(n, generator, **kw).x0

    def preview(self) -> dict[str, Any]:
        """10 midpoint steps (20 evaluations) for the grids drawn during training."""
        return {"sampler": "midpoint", "steps": 10}

    def figures(self, data: Any, out: Path, generator: torch.Generator | None = None, *,
                sampler: str | None = None, steps: int | None = None) -> list[Path]:
        """The probability path, the learned flow (PNG, and GIF for images) and, on 2-D data, its trajectories
        (:func:`genmodels.flow_matching.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator or torch.Generator().manual_seed(0), sampler=sampler,
                             steps=steps)

    # ------------------------------------------------------------------ likelihood
    def ode_log_likelihood(self, x: Tensor, generator: torch.Generator | None = None, *, trace: TraceMethod = "auto",
                           hutchinson_samples: int = 1, noise: ProbeNoise = "rademacher", rtol: float | None = None,
                           atol: float | None = None, method: str = "dopri5", dtype: torch.dtype | None = None,
                           y: Tensor | None = None) -> CNFLikelihood:
        """log p(x) of points ``x`` ``[B, *event_shape]`` (used as given: dequantize discrete data first) under the
        flow, by :func:`genmodels.cnf.cnf_log_likelihood` from t = 1 to t = 0.

        Args:
            trace, hutchinson_samples, noise, method: as there. rtol, atol: default :data:`IMAGE_ODE_TOL` on images,
                1e-5 on vectors. dtype: of the ODE state (default float32 for images, float64 for vectors).
            y: ``[B]`` labels of a conditional model: log p(x | y); None: log p(x | ∅).
        Returns:
            :class:`~genmodels.cnf.CNFLikelihood`, ``[B]`` float64 nats.
        Raises:
            ValueError: bad options, a shape that is not ``[B, *event_shape]``, a bad label.
        """
        shape = tuple(self.spec.event_shape)
        if x.ndim < 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must have shape [B, {', '.join(map(str, shape))}], got {list(x.shape)}")
        tol = IMAGE_ODE_TOL if self.spec.is_image else 1e-5
        dtype = dtype or (torch.float32 if self.spec.is_image else torch.float64)
        v = self.field(self.labels_or_null(y, x.shape[0], x.device))
        return cnf_log_likelihood(v, x.to(dtype), 1.0, 0.0, trace=trace, hutchinson_samples=hutchinson_samples,
                                  noise=noise, rtol=tol if rtol is None else rtol, atol=tol if atol is None else atol,
                                  method=method, generator=generator)

    @torch.no_grad()
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, *, y: Tensor | None = None,
                  **ode_options: Any) -> NLLOutput:
        """−log p(x) per example, nats, through the ODE (:meth:`ode_log_likelihood`), with its parts ``prior``
        (−log N(x(0); 0, I)), ``divergence`` (−∫_1^0 ∇·v dt) and, for discrete data, ``dequantization`` (−D log Δ).

        Discrete data is dequantized first, x̃ = x + Δ(u − ½) with u ~ U[0, 1)^D from ``generator`` (Theis et al.
        2016, Eq. 6), and the result is −log p(x̃) − D log Δ, whose expectation over u bounds −log P(k); for
        continuous data it is exact up to the solver's error with the exact trace and unbiased with Hutchinson's.
        Either way the value returned is an estimate (kind ``estimate``: the solver's error has no sign).
        ``ode_options``: those of :meth:`ode_log_likelihood`.
        """
        if self.spec.is_discrete:
            x = uniform_dequantize(x, self.spec, generator, torch.float64)
        out = self.ode_log_likelihood(x, generator, y=y, **ode_options)
        prior, div = -out.log_p_prior, -out.divergence
        terms = {"prior": prior, "divergence": div}
        nll = prior + div
        if self.spec.is_discrete:
            nll = discrete_nll_from_density(nll, self.spec)
            terms["dequantization"] = torch.full_like(nll, -self.spec.dim * log_bin_width(self.spec))
        return NLLOutput(nll=nll, terms=terms, kind="estimate")


def default_config(spec: DataSpec) -> FlowMatchingConfig:
    """The preset: the DDPM preset's backbone (the same UNet for images, the MLP for vectors), the linear path with
    σ_min = 0 (rectified flow / I-CFM) and independent coupling."""
    cfg = FlowMatchingConfig()
    return replace(cfg, unet=unet_preset(spec)) if spec.is_image else cfg

