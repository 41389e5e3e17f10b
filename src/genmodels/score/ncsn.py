"""Noise-conditional score network (Song & Ermon 2019, "NCSN"; the techniques of Song & Ermon 2020, "NCSNv2").

Notation:

===================  ================================================================================================
``sigmas``           σ_1 > … > σ_L, geometric from ``sigma_max`` to ``sigma_min`` (NCSN §4.1;
                     :func:`~.losses.geometric_sigmas`)
``c_noise``          the backbone's conditioning: 1000·(log σ − log σ_min)/(log σ_max − log σ_min), an affine map of
                     log σ onto the 0…1000 range the sinusoidal embedding was built for (DDPM's timesteps); 0 for all σ
                     with ``noise_conditioning=False``
``score``            s_θ(x, σ) = net(x, c_noise(σ))/σ: the output scaled by 1/σ (NCSNv2 technique 3, there with an
                     unconditional net; ‖∇log q_σ‖ ∝ 1/σ, so the net's output stays O(1) at every level)
loss                 (1/L) Σ_i σ_i² · ½ E‖s_θ(x + σ_i z, σ_i) + z/σ_i‖² (NCSN Eq. 5–6, λ(σ) = σ²), one level per
                     example (:func:`~.losses.multiscale_denoising_score_matching`); with the 1/σ scaling each
                     term is ½‖net(x + σz, σ) + z‖², the ε-prediction loss of a diffusion model on the
                     variance-exploding process x + σz
``annealed``         NCSN Algorithm 1: for each σ_i, T = ``steps_each`` updates x ← x + (α_i/2) s_θ(x, σ_i) + √α_i z,
                     α_i = ε σ_i²/σ_L² (:func:`~.langevin.annealed_langevin_dynamics`), then Tweedie's
                     x + σ_L² s_θ(x, σ_L) (``final_denoise``; Jolicoeur-Martineau et al. 2021)
class labels         with ``cond.num_classes`` = K > 0, s_θ(x, σ, y) = net(x, c_noise(σ), y)/σ, a learned embedding
                     of y added to the noise embedding (improved-diffusion's ``label_emb``; EDM), y = K the null
                     label ∅, trained with probability ``p_uncond`` (Ho & Salimans 2022, Algorithm 1)
guidance             s̃(x, σ) = (1 + w)·s_θ(x, σ, y) − w·s_θ(x, σ, ∅), the score form of classifier-free guidance
                     (Ho & Salimans 2022, Eq. 6, with ε = −σ s): the score of ∝ q_σ(x | y)·(q_σ(x | y)/q_σ(x))^w;
                     in every update of the annealed sampler and its final denoising step
===================  ================================================================================================

Defaults from the data (:func:`default_config`; NCSNv2's techniques, from memory, with the conditions re-derived here):

- technique 1, σ_1 ≥ the largest distance between two training points, so that annealing can move a chain from
  any mode to any other. From the spec alone (no data), ``sigma_max`` is the diameter of the data's bounding box,
  (hi − lo)·√D, an upper bound on that distance: 56 for 28×28 images on [−1, 1], 16 for 8×8 ``digits``, 5.6–7.0 for
  the 2-D toys (whose largest pairwise distances are 3.8–4.9);
- ``sigma_min`` = 0.01: NCSN's σ_L (there on [0, 1] data; here 1.3 levels of 8-bit data on [−1, 1], whose levels are
  2/255 apart, and the final denoising step removes most of that noise);
- technique 2, the ratio γ = σ_{i−1}/σ_i such that Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) ≈ ½
  (:func:`ncsnv2_n_sigmas`): noised distributions at neighbouring levels then overlap; it gives L ≈ 111 levels for
  28×28 images and 25 for ``digits``, and is met by every γ in 2-D, where NCSN's L = 10 is kept (at least 10 levels
  everywhere);
- technique 4, the step ε from T (:func:`annealing_step_size`), at sampling time; T = ``sample_steps_each`` =
  ⌈1000/L⌉, about 1000 evaluations in all, as NCSN's 10 × 100 (NCSNv2 used 232 × 5 on CIFAR-10).

The number of score evaluations of a run is L·T (+1 with ``final_denoise``), reported as ``nfe``; twice that with
guidance (each guided score is one network call on the doubled batch [x, x] with labels [y, ∅]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..core import Conditioning, DataSpec, Progress, SampleOutput
from ..nets import noise_conditional_net
from ..nets.mlp import MLPConfig
from ..nets.unet import UNetConfig, unet_preset
from .base import Init, ScoreModel
from .langevin import annealed_langevin_dynamics
from .losses import geometric_sigmas, multiscale_denoising_score_matching

__all__ = ["NCSNConfig", "NCSN", "annealing_variance_ratio", "annealing_step_size", "ncsnv2_n_sigmas"]


@dataclass(frozen=True)
class NCSNConfig:
    """A noise-conditional score network. The dataclass defaults are NCSN's ladder for [0, 1] images (Song & Ermon
    2019, experiments, from memory: L = 10 from σ_1 = 1 to σ_10 = 0.01, T = 100); :func:`default_config` sizes the
    ladder to the data.

    Attributes:
        sigma_max, sigma_min, n_sigmas: the geometric ladder σ_1 = ``sigma_max`` > … > σ_L = ``sigma_min``, L levels.
        noise_conditioning: give the backbone c_noise(σ); False is NCSNv2's unconditional net(x)/σ.
        sample_steps_each: T, default Langevin steps per level of annealed sampling.
        unet: backbone for images. mlp: backbone for vectors.
        cond: class conditioning (:class:`~genmodels.core.Conditioning`; none by default): a label embedding added
            to the noise embedding, label dropout ``p_uncond`` (module docstring).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"n_sigmas": (1, 10_000), "sample_steps_each": (1, 100_000)}

    sigma_max: float = 1.0
    sigma_min: float = 0.01
    n_sigmas: int = 10
    noise_conditioning: bool = True
    sample_steps_each: int = 100
    unet: UNetConfig = field(default_factory=UNetConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        if not (self.sigma_max >= self.sigma_min > 0) or self.n_sigmas < 1:
            raise ValueError(f"NCSNConfig: need sigma_max ≥ sigma_min > 0 and n_sigmas ≥ 1, got sigma_max="
                             f"{self.sigma_max}, sigma_min={self.sigma_min}, n_sigmas={self.n_sigmas}")
        if self.sample_steps_each < 1:
            raise ValueError(f"NCSNConfig: sample_steps_each must be ≥ 1, got {self.sample_steps_each}")


class NCSN(ScoreModel):
    """Noise-conditional score network s_θ(x, σ) on a UNet (images) or MLP (vectors) backbone (module docstring).

    Args:
        config: :class:`NCSNConfig`. spec: the data it models.
    Raises:
        ValueError: for an event shape that is neither an image nor a vector.
    """

    samplers: ClassVar[tuple[str, ...]] = ("annealed",)
    description = "noise-conditional score network, annealed Langevin dynamics (Song & Ermon 2019)"
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {
        "annealed": ("eps", "final_denoise", "init", "trajectory_stride", "guidance_scale")}
    guidance_samplers: ClassVar[tuple[str, ...]] = ("annealed",)
    no_likelihood_reason: ClassVar[str] = (
        "a noise-conditional score network models only the scores ∇_x log q_σ of the noised data at its σ levels, "
        "not a normalized density (a likelihood would need the probability-flow ODE of a continuous-σ model, "
        "score SDE §4.3, which is not implemented for NCSN)")

    def __init__(self, config: NCSNConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self.set_conditioning(config.cond)
        labels = self.num_label_embeddings if self.num_classes is not None else None
        self.net: nn.Module = noise_conditional_net(spec, config.unet, config.mlp, "NCSN", num_labels=labels)
        self.register_buffer("sigmas", geometric_sigmas(config.sigma_max, config.sigma_min, config.n_sigmas),
                             persistent=False)  # [L] float64, decreasing

    def c_noise(self, sigma: Tensor) -> Tensor:
        """The backbone's conditioning for ``[B]`` σ: log σ mapped affinely so that σ_min → 0 and σ_max → 1000
        (0 everywhere without ``noise_conditioning`` or for a one-level ladder)."""
        lo, hi = math.log(self.config.sigma_min), math.log(self.config.sigma_max)
        if not self.config.noise_conditioning or hi == lo:
            return torch.zeros_like(sigma, dtype=torch.float32)
        return 1000.0 * (sigma.double().log() - lo).float() / (hi - lo)

    def score(self, x: Tensor, sigma: Tensor | float, y: Tensor | None = None) -> Tensor:
        """s_θ(x, σ[, y]) = net(x, c_noise(σ)[, y])/σ ≈ ∇_x log q_σ(x [| y]) (NCSNv2 technique 3),
        ``[B, *event_shape]``.

        Args:
            x: ``[B, *event_shape]``. sigma: ``[B]`` or a float, > 0.
            y: ``[B]`` int64 labels of a conditional model (None: the null label ∅); not checked here (the public
                methods check them once).
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        c_noise = self.c_noise(sigma)
        if y is None and self.num_classes is not None:
            y = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        out = self.net(x, c_noise) if y is None else self.net(x, c_noise, y)
        return out / sigma.reshape(-1, *([1] * (x.ndim - 1)))

    def guided_score(self, y: Tensor | None, guidance_scale: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
        """The score the samplers follow, as a function of (x ``[n, ...]``, σ ``[n]``): s_θ(x, σ) for an
        unconditional model (``y`` None); s_θ(x, σ, y) for w = ``guidance_scale`` = 0 (one network call, bitwise
        the conditional score); else s̃ = (1 + w)·s_θ(x, σ, y) − w·s_θ(x, σ, ∅) (Ho & Salimans 2022, Eq. 6 in score
        form), from one network call on the doubled batch.

        Args:
            y: ``[n]`` resolved labels (:meth:`~genmodels.core.GenerativeModel.labels_or_null`), or None.
        Raises:
            ValueError: w ≠ 0 without labels.
        """
        if y is None:
            if guidance_scale != 0:
                raise ValueError("classifier-free guidance needs class labels and a class-conditional model")
            return self.score
        if guidance_scale == 0:
            return lambda x, sigma: self.score(x, sigma, y)
        w = float(guidance_scale)
        pair = torch.cat([y, torch.full_like(y, self.null_label)])  # [y, ∅]

        def score(x: Tensor, sigma: Tensor) -> Tensor:
            """(1 + w)·s(x, σ, y) − w·s(x, σ, ∅) from one call on [x, x]."""
            cond, uncond = self.score(torch.cat([x, x]), torch.cat([sigma, sigma]), pair).chunk(2)
            return (1 + w) * cond - w * uncond

        return score

    # ------------------------------------------------------------------ training
    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Multi-σ DSM with λ(σ) = σ², one level per example drawn uniformly (NCSN Eq. 5–6): ``[B]``
        = ½‖σ s_θ(x + σz, σ) + z‖², summed over dimensions. A conditional model trains on ``y`` ``[B]`` after label
        dropout (∅ with probability ``p_uncond``; Ho & Salimans 2022, Algorithm 1)."""
        y = self.drop_labels(y, len(x), generator)
        return multiscale_denoising_score_matching(self.guided_score(y), x, self.sigmas, weighting="sigma2",
                                                   generator=generator)

    # ------------------------------------------------------------------ sampling
    def default_steps(self, sampler: str | None = None) -> int:
        """T = ``config.sample_steps_each``."""
        self.check_sampler(sampler)
        return self.config.sample_steps_each

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int:
        """L·T score evaluations and the final denoising step (NCSN Algorithm 1 with Tweedie's step); twice that
        with guidance (``guidance_scale`` ≠ 0: the conditional and the unconditional pass of each)."""
        nfe = self.config.n_sigmas * (self.default_steps(sampler) if steps is None else steps) + 1
        return nfe * (2 if guidance_scale != 0 else 1)

    def steps_for_nfe(self, sampler: str, nfe: int) -> int:
        """T = ⌊(nfe − 1)/L⌋ (the 1: the final denoising step); 0 if the budget is below L + 1."""
        self.check_sampler(sampler)
        return max(0, (nfe - 1) // self.config.n_sigmas)

    def preview(self) -> dict:
        """T = max(1, ⌊50/L⌋): about 50 evaluations, like the 50-step DDIM grids of diffusion runs (L + 1 for a ladder
        of more than 50 levels, e.g. 112 on 28×28 images)."""
        return {"steps": max(1, 50 // self.config.n_sigmas)}

    def step_size(self, steps_each: int) -> float:
        """NCSN Algorithm 1's ε for T = ``steps_each`` on this ladder: :func:`annealing_step_size` of the ladder's
        ratio γ = (σ_max/σ_min)^{1/(L−1)}, times σ_L²."""
        L, s_max, s_min = self.config.n_sigmas, self.config.sigma_max, self.config.sigma_min
        gamma = 1.0 if L == 1 else (s_max / s_min) ** (1 / (L - 1))
        return annealing_step_size(gamma, steps_each) * s_min**2

    def score_field_rows(self, data, heat, arrows, extent, H, A):
        """The rows and title of the 2-D score-field picture (:func:`genmodels.score.figures.ncsn_score_field_rows`)."""
        from .figures import ncsn_score_field_rows

        return ncsn_score_field_rows(self, data, heat, arrows, extent, H, A)

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
             eps: float | None = None, final_denoise: bool = True, init: Init = "uniform",
             progress: Progress | None = None, keep_trajectory: bool = False,
             trajectory_stride: int = 1, **options) -> SampleOutput:
        """Annealed Langevin dynamics over the training ladder (NCSN Algorithm 1), from uniform noise.

        Args:
            n: number of chains (samples). generator: draws the start and every step's noise.
            sampler: ``annealed`` (the only one; None picks it). steps: T ≥ 1 updates per level
                (default ``config.sample_steps_each``).
            y: ``[n]`` int64 labels of a conditional model (None: the null label, samples of p(x)).
            guidance_scale: w of classifier-free guidance (module docstring); 0: the conditional score, bitwise.
            eps: ε > 0 of Algorithm 1 (α_i = ε σ_i²/σ_L²); default :meth:`step_size` of T (NCSNv2 technique 4).
            final_denoise: end with Tweedie's x + σ_L² s_θ(x, σ_L). init: ``uniform`` on ``spec.value_range``
                (NCSN) or ``gaussian`` N(0, σ_1² I) (the variance-exploding prior of the score SDE).
            progress: wraps the loop over levels. keep_trajectory, trajectory_stride: keep every stride-th state.
        Returns:
            ``SampleOutput`` with ``x0`` ``[n, *event_shape]`` (clamped to the data range for discrete data, at the
            end only), ``nfe`` = L·T (+1), doubled with guidance, and the trajectory when asked for.
        Raises:
            KeyError: for another sampler. ValueError: for T < 1, ε ≤ 0 or a bad init, a label for an unconditional
                model or out of range, guidance without a conditional model or without ``y``.
        """
        name = self.check_sampler(sampler, options)  # an option this sampler does not take: ValueError
        self.check_guidance(name, guidance_scale, y)
        score = self.guided_score(self.labels_or_null(y, n), guidance_scale)
        T = self.config.sample_steps_each if steps is None else int(steps)
        if T < 1:
            raise ValueError(f"annealed sampling needs steps (per noise level) ≥ 1, got {T}")
        x = self.initial_state(n, generator, init, gaussian_std=self.config.sigma_max)
        out = annealed_langevin_dynamics(score, x, self.sigmas, eps=self.step_size(T) if eps is None else
                                         float(eps), n_steps_each=T, final_denoise=bool(final_denoise),
                                         generator=generator, progress=progress, keep_trajectory=keep_trajectory,
                                         trajectory_stride=trajectory_stride)
        return SampleOutput(x0=self.finish(out.x), nfe=out.nfe * (2 if guidance_scale != 0 else 1),
                            trajectory=out.trajectory)


# ============================================================================ NCSNv2's rules for the ladder and ε


def ncsnv2_n_sigmas(sigma_max: float, sigma_min: float, dim: int, target: float = 0.5) -> int | None:
    """L for a geometric ladder from σ_max to σ_min by NCSNv2's technique 2 (from memory): the ratio γ = σ_{i−1}/σ_i
    with Φ(√(2D)(γ−1) + 3γ) − Φ(√(2D)(γ−1) − 3γ) = ``target`` (≈ ½), L = 1 + ⌈log(σ_max/σ_min)/log γ⌉.

    The idea (NCSNv2 §3, as remembered): x ~ N(0, σ² I) in D dimensions lies on a thin shell, ‖x‖ ≈ σ√D with a
    spread of about σ/√2, and neighbouring levels need overlapping shells, so that a chain that has settled at
    σ_{i−1} starts inside the typical set of σ_i. For CIFAR-10 (D = 3072, σ from 50 to 0.01) this gives L ≈ 220;
    NCSNv2 used 232.

    Returns:
        L ≥ 2, or None when every γ > 1 meets the condition (D ≤ 4, e.g. the 2-D toys: the left side stays above ½),
        so the rule does not bound L.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    root = math.sqrt(2 * dim)

    def overlap(g: float) -> float:
        """The overlap mass minus the target."""
        a = root * (g - 1)
        return float(norm.cdf(a + 3 * g) - norm.cdf(a - 3 * g)) - target

    hi = 2.0
    while overlap(hi) > 0:
        hi *= 2
        if hi > 1e6:
            return None
    gamma = brentq(overlap, 1.0 + 1e-12, hi, xtol=1e-12)
    return 1 + math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma))


def annealing_variance_ratio(eps_ratio: float | Tensor, gamma: float, steps_each: int) -> float | Tensor:
    """Var[x] / σ_i² after T NCSN-form Langevin steps at level σ_i from a chain with variance γ² σ_i², for data
    that is a single point (q_σ = N(x_0, σ² I), score −(x − x_0)/σ²), in every dimension.

    With α_i = ε σ_i²/σ_L² one step is x ← κ x + √α_i z, κ = 1 − ε/(2σ_L²), so v ← κ² v + α_i, whose fixed point is
    σ_i² S with S = 1/(1 − ε/(4σ_L²)); after T steps

        v_T/σ_i² = κ^{2T} (γ² − S) + S.

    NCSNv2 technique 4 (from memory) asks this to be ≈ 1, in its own update x + α s + √(2α) z, i.e. with its ε equal
    to half of NCSN's; this is the same condition written for :func:`~.langevin.annealed_langevin_dynamics`.

    Args:
        eps_ratio: ε/σ_L² (float or tensor), in (0, 4) for a stable chain. gamma: σ_{i−1}/σ_i ≥ 1. steps_each: T.
    """
    kappa = 1 - eps_ratio / 2
    S = 1 / (1 - eps_ratio / 4)
    return kappa ** (2 * steps_each) * (gamma**2 - S) + S


def annealing_step_size(gamma: float, steps_each: int) -> float:
    """ε/σ_L² that brings :func:`annealing_variance_ratio` closest to 1 (NCSNv2 technique 4, from memory).

    The ratio exceeds 1 for every ε (too small a step leaves the previous level's γ² σ_i², too large a step
    inflates the stationary variance by S), so the rule takes its minimum over ε/σ_L² ∈ [10⁻⁶, 2], on a grid fine
    enough (2·10⁴ log-spaced points) for a 0.1% step. For γ = 1 (one level) the minimum is the smallest step:
    pass ε yourself. On NCSNv2's CIFAR-10 ladder (L = 232 from 50 to 0.01, T = 5) it gives ε/σ_L² = 0.124, i.e.
    ε = 6.2·10⁻⁶ in NCSNv2's update, the value NCSNv2 used (from memory).

    Returns:
        ε/σ_L²; multiply by σ_L² for NCSN Algorithm 1's ε.
    """
    if steps_each < 1 or gamma < 1:
        raise ValueError(f"need steps_each ≥ 1 and gamma ≥ 1, got steps_each={steps_each}, gamma={gamma}")
    r = torch.logspace(-6, math.log10(2.0), 20001, dtype=torch.float64)
    ratio = annealing_variance_ratio(r, gamma, steps_each)
    return float(r[torch.argmin(ratio)])


def default_config(spec: DataSpec) -> NCSNConfig:
    """The NCSN preset for a dataset (module docstring): σ_max = the data box's diameter (technique 1), σ_min = 0.01,
    L = max(10, technique 2's count), T = ⌈1000/L⌉; the DDPM preset's UNet for images, the MLP for vectors."""
    lo, hi = spec.value_range
    width = hi - lo if math.isfinite(hi - lo) and hi > lo else 2.0  # unbounded data: as if on [−1, 1]
    sigma_max = width * math.sqrt(spec.dim)
    sigma_min = 0.01
    n = max(10, ncsnv2_n_sigmas(sigma_max, sigma_min, spec.dim) or 0)
    cfg = NCSNConfig(sigma_max=sigma_max, sigma_min=sigma_min, n_sigmas=n, sample_steps_each=math.ceil(1000 / n))
    return replace(cfg, unet=unet_preset(spec)) if spec.is_image else cfg
