"""Energy-based model p_θ(x) = e^{−f_θ(x)}/Z_θ trained by score matching and sampled by Langevin dynamics (seed 003).

Notation (seed 003; Hyvärinen 2005; Vincent 2011; Song et al. 2019):

===================  ================================================================================================
``energy``           f_θ(x), ``[B]``: :class:`~genmodels.nets.energy.EnergyMLP` (vectors) or
                     :class:`~genmodels.nets.energy.EnergyConvNet` (images), smooth (SiLU) so ∇²f exists
Z_θ                  ∫ e^{−f_θ(x)} dx: intractable, and never needed below; so there is no likelihood
``score``            s_θ(x) = ∇_x log p_θ(x) = −∇_x f_θ(x) (Z_θ does not depend on x), by autograd
``dsm``              ½‖s_θ(x + σz) + z/σ‖², z ~ N(0, I) (Vincent 2011; seed 003): the optimum is the score of the
                     *noised* data q_σ = p ∗ N(0, σ²I), so a DSM-trained EBM models q_σ, not p
``ssm``              vᵀ(∂s/∂x)v + ½(vᵀs)² (Song et al. 2019, §3; ``variance_reduction``: + ½‖s‖² instead)
``esm``              ½‖s‖² + tr(∂s/∂x) (Hyvärinen 2005, Theorem 1): exact trace (D backward passes) for
                     D ≤ ``exact_trace_max_dim``, else the Hutchinson estimate
``langevin``         x_{k+1} = x_k + τ s_θ(x_k) + √(2τ) z_k (seed 003; :func:`~.langevin.langevin_dynamics`)
===================  ================================================================================================

Sampling runs K = ``sample_steps`` Langevin steps of size τ = ``step_size``, starting from uniform noise on the data's
``value_range`` (``init="uniform"``: the data's bounding box for 2-D toys, [−1, 1] for images) or from N(0, I)
(``init="gaussian"``). For a DSM-trained model the chain samples q_σ; one more evaluation then returns Tweedie's
E[x | x̃] = x̃ + σ² s_θ(x̃), the "walk-jump" sampler of Saremi & Hyvärinen (2019, from memory), which removes most of
the σ noise (``final_denoise``, on by default for DSM and unavailable for the other losses, whose score is that of p).

Each score evaluation is one forward and one backward pass of f_θ; ``nfe`` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from ..core import DataSpec, Progress, SampleOutput
from ..divergence import EXACT_TRACE_MAX_DIM, ProbeNoise
from ..nets.energy import EnergyConvConfig, EnergyConvNet, EnergyMLP, EnergyMLPConfig
from . import losses as L
from .base import Init, ScoreModel
from .langevin import langevin_dynamics

__all__ = ["EBMConfig", "EBM", "EBMLoss"]

EBMLoss = Literal["dsm", "ssm", "esm"]
"""Training loss of an :class:`EBM`: denoising (single σ), sliced, or explicit score matching."""


@dataclass(frozen=True)
class EBMConfig:
    """An energy-based model: its loss, its energy network and its default Langevin sampler.

    Attributes:
        loss_type: ``dsm`` (denoising score matching at one ``sigma``), ``ssm`` (sliced) or ``esm`` (explicit).
        sigma: DSM's noise std σ in data units (toys have unit variance per coordinate, images live on [−1, 1]).
            0.1 resolves the toys' finest features (8 Gaussians of std 0.17, moons blurred by std 0.14) while keeping
            the Langevin step τ = σ²/10 affordable; the learned score is that of the σ-noised data.
        n_probes: projections v per example (``ssm``, and ``esm`` with the Hutchinson trace).
        probe: their law; ``None``: Gaussian for ``ssm`` (as Song et al. 2019), Rademacher for the Hutchinson
            trace (lower variance).
        variance_reduction: ``ssm`` only: SSM-VR, ½‖s‖² in place of ½(vᵀs)² (Song et al. 2019).
        exact_trace_max_dim: ``esm`` computes tr(∂s/∂x) exactly up to this D (D backward passes), else by
            Hutchinson's estimator.
        sample_steps: K, default Langevin steps of :meth:`EBM.sample`.
        step_size: τ, default Langevin step. 1e-3 = σ²/10 for σ = 0.1: on a Gaussian of std σ the chain's variance
            is inflated by 1/(1 − τ/(2σ²)) ≈ 1.05, and K = 1000 steps diffuse √(2τK) ≈ 1.4 data units.
        mlp: energy network for vectors. conv: energy network for images.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "n_probes": (1, 1000), "exact_trace_max_dim": (0, 100_000), "sample_steps": (0, 1_000_000)}

    loss_type: EBMLoss = "dsm"
    sigma: float = 0.1
    n_probes: int = 1
    probe: ProbeNoise | None = None
    variance_reduction: bool = False
    exact_trace_max_dim: int = EXACT_TRACE_MAX_DIM
    sample_steps: int = 1000
    step_size: float = 1e-3
    mlp: EnergyMLPConfig = field(default_factory=EnergyMLPConfig)
    conv: EnergyConvConfig = field(default_factory=EnergyConvConfig)

    def __post_init__(self) -> None:
        if self.loss_type not in get_args(EBMLoss):
            raise ValueError(f"loss_type must be one of {', '.join(get_args(EBMLoss))}; got {self.loss_type!r}")
        if self.probe is not None and self.probe not in get_args(ProbeNoise):
            raise ValueError(f"probe must be one of {', '.join(get_args(ProbeNoise))} or null; got {self.probe!r}")
        bad = [f"{k}={v!r}" for k, v, ok in (
            ("sigma", self.sigma, self.sigma > 0), ("n_probes", self.n_probes, self.n_probes >= 1),
            ("exact_trace_max_dim", self.exact_trace_max_dim, self.exact_trace_max_dim >= 0),
            ("sample_steps", self.sample_steps, self.sample_steps >= 0),
            ("step_size", self.step_size, self.step_size > 0)) if not ok]
        if bad:
            raise ValueError("EBMConfig: invalid " + ", ".join(bad))


class EBM(ScoreModel):
    """Energy-based model f_θ with score −∇_x f_θ, trained by score matching (module docstring).

    Args:
        config: :class:`EBMConfig`. spec: the data it models (images ``(C, H, W)`` or vectors ``(D,)``).
    Raises:
        ValueError: for any other event shape.
    """

    description = "energy-based model f_θ trained by score matching, sampled by Langevin dynamics (seed 003)"
    samplers: ClassVar[tuple[str, ...]] = ("langevin",)
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {
        "langevin": ("step_size", "init", "final_denoise", "trajectory_stride")}
    samples_need_grad: ClassVar[bool] = True  # Langevin steps take ∇_x f_θ
    no_likelihood_reason: ClassVar[str] = ("an energy-based model p = e^{−f_θ}/Z_θ has an intractable normalizing "
                                           "constant Z_θ (score matching never computes it)")

    def __init__(self, config: EBMConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        if spec.is_image:
            self.net: nn.Module = EnergyConvNet(spec.event_shape, config.conv)
        elif len(spec.event_shape) == 1:
            self.net = EnergyMLP(spec.event_shape[0], config.mlp)
        else:
            raise ValueError(f"EBM supports images (C, H, W) or vectors (D,), got event shape {spec.event_shape}")

    # ------------------------------------------------------------------ energy and score
    def energy(self, x: Tensor) -> Tensor:
        """f_θ(x): ``[B, *event_shape] -> [B]`` (an unnormalized negative log-density, up to log Z_θ)."""
        return self.net(x)

    def score(self, x: Tensor, create_graph: bool | None = None) -> Tensor:
        """s_θ(x) = −∇_x f_θ(x), ``[B, *event_shape]``, by autograd (examples do not interact, so the gradient of
        Σ_b f(x_b) is each example's own).

        Autograd is switched on inside, so this works under ``torch.no_grad()`` (sampling). If ``x`` requires grad
        the score is a function of that very tensor (the explicit and sliced losses differentiate it again).

        Args:
            x: ``[B, *event_shape]``.
            create_graph: record the gradient's graph so the score can be differentiated (w.r.t. x or θ);
                default: whether the caller records gradients.
        """
        if create_graph is None:
            create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.energy(xg).sum(), xg, create_graph=create_graph)
        return -grad  # ∇_x log p_θ = −∇_x f_θ (Z_θ does not depend on x)

    # ------------------------------------------------------------------ training
    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Per-example score-matching loss ``[B]`` (``loss_type``; module docstring), in units of
        (log-density / data unit)², summed over dimensions."""
        self.check_label(y)
        cfg = self.config
        if cfg.loss_type == "dsm":
            return L.denoising_score_matching(self.score, x, cfg.sigma, generator=generator)
        if cfg.loss_type == "ssm":
            return L.sliced_score_matching(self.score, x, n_probes=cfg.n_probes, probe=cfg.probe or "gaussian",
                                           variance_reduction=cfg.variance_reduction, generator=generator)
        exact = self.spec.dim <= cfg.exact_trace_max_dim
        return L.explicit_score_matching(self.score, x, trace="exact" if exact else "hutchinson",
                                         n_probes=cfg.n_probes, probe=cfg.probe or "rademacher", generator=generator)

    # ------------------------------------------------------------------ sampling
    def default_steps(self, sampler: str | None = None) -> int:
        """K = ``config.sample_steps``."""
        self.check_sampler(sampler)
        return self.config.sample_steps

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int:
        """K score evaluations, +1 for the final denoising of a DSM model (an EBM is unconditional: it has no
        guidance, which :meth:`~genmodels.core.GenerativeModel.check_guidance` refuses, so ``guidance_scale`` changes
        nothing here)."""
        return (self.default_steps(sampler) if steps is None else steps) + (self.config.loss_type == "dsm")

    def steps_for_nfe(self, sampler: str, nfe: int) -> int:
        """K = nfe, less the final denoising evaluation of a DSM model (0 if the budget is too small)."""
        self.check_sampler(sampler)
        return max(0, nfe - (self.config.loss_type == "dsm"))

    def preview(self) -> dict:
        """At most 200 Langevin steps (a fifth of the default chain): where the chains are heading, at a cost of about
        200 energy gradients (11 s for 64 28×28 images on one CPU thread with the default conv net)."""
        return {"steps": min(self.config.sample_steps, 200)}

    def score_field_rows(self, data, heat, arrows, extent, H, A):
        """The rows and title of the 2-D score-field picture (:func:`genmodels.score.figures.ebm_score_field_rows`)."""
        from .figures import ebm_score_field_rows

        return ebm_score_field_rows(self, data, heat, arrows, extent, H, A)

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
             step_size: float | None = None, init: Init = "uniform", final_denoise: bool | None = None,
             progress: Progress | None = None, keep_trajectory: bool = False, trajectory_stride: int = 1,
             **options) -> SampleOutput:
        """Langevin dynamics with the learned score (module docstring), from uniform noise on the data range.

        Args:
            n: number of chains (samples). generator: draws the start and every step's noise.
            sampler: ``langevin`` (the only one; None picks it). steps: K ≥ 0 (default ``config.sample_steps``).
            y: must be None (the model is unconditional). guidance_scale: must be 0 (no guidance without classes).
            step_size: τ > 0 (default ``config.step_size``). init: ``uniform`` on ``spec.value_range`` or
                ``gaussian`` N(0, I). final_denoise: end with Tweedie's x + σ² s(x) (default: for a DSM model only).
            progress: wraps the step iterator. keep_trajectory, trajectory_stride: keep every stride-th state.
        Returns:
            ``SampleOutput`` with ``x0`` ``[n, *event_shape]`` (clamped to the data range for discrete data),
            ``nfe`` = K (+1 with the final denoising) and the trajectory ``[S, n, ...]`` when asked for (the
            denoised state last).
        Raises:
            KeyError: for another sampler. ValueError: for a bad K, τ or init, ``final_denoise`` on a model not
            trained by DSM, a label or a guidance scale ≠ 0.
        """
        name = self.check_sampler(sampler, options)  # an option this sampler does not take: ValueError
        self.check_guidance(name, guidance_scale, y)
        self.check_label(y)
        cfg = self.config
        dsm = cfg.loss_type == "dsm"
        denoise = dsm if final_denoise is None else bool(final_denoise)
        if denoise and not dsm:
            raise ValueError(f"final_denoise needs a DSM-trained EBM (its score is that of σ-noised data); this one is "
                             f"trained by {cfg.loss_type!r}, whose score is that of the data itself")
        x = self.initial_state(n, generator, init, gaussian_std=1.0)
        out = langevin_dynamics(self.score, x, step_size=cfg.step_size if step_size is None else float(step_size),
                                n_steps=cfg.sample_steps if steps is None else int(steps), generator=generator,
                                progress=progress, keep_trajectory=keep_trajectory,
                                trajectory_stride=trajectory_stride)
        x, nfe, traj = out.x, out.nfe, out.trajectory
        if denoise:
            x = x + cfg.sigma**2 * self.score(x)  # Tweedie: E[x | x̃] = x̃ + σ² ∇log q_σ(x̃)
            nfe += 1
            traj = torch.cat([traj, x[None]]) if traj is not None else None
        return SampleOutput(x0=self.finish(x), nfe=nfe, trajectory=traj)


def default_config(spec: DataSpec) -> EBMConfig:
    """The EBM preset: the dataclass defaults (DSM at σ = 0.1, 1000 Langevin steps of τ = 10⁻³) for every dataset;
    the energy network (MLP or conv net) follows from the event shape."""
    return EBMConfig()
