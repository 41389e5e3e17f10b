"""Variational diffusion models (Kingma et al. 2021, "VDM"): continuous time, the SNR-weighted bound and a learned
noise schedule; the discrete T-step form is seed 003's L_t in SNR form.

Notation (VDM; seed 003). t ∈ [0, 1]; the schedule γ(t) = −logSNR(t) is a
:class:`~genmodels.diffusion.schedules.GammaSchedule`:

===================  ===============================================================================================
``gamma``            γ(t) = −λ(t);  SNR(t) = e^{−γ(t)};  α_t² = sigmoid(−γ(t)),  σ_t² = sigmoid(γ(t))  (Eq. 3–4)
``z_t``              z_t = α_t x + σ_t ε,  ε ~ N(0, I)                                                    (Eq. 1)
``eps_hat``          ε̂_θ(z_t; λ_t), the network;  x̂_θ = (z_t − σ_t ε̂)/α_t, so e^{−γ}‖x − x̂‖² = ‖ε − ε̂‖²
``prior``            L_prior = KL(q(z_1|x) ‖ N(0, I)), analytic                                           (Eq. 11)
``reconstruction``   L_recon = E_{q(z_0|x)}[−log p(x|z_0)]; for n-level data p(x_i = x_k | z_0) ∝
                     exp(−½ (z_{0,i}/α_0 − x_k)² e^{−γ_0}) over the n levels x_k (Appendix C, ``EncDec``);
                     for continuous data N(x; z_0/α_0, e^{γ_0})
``diffusion``, T=∞   L_∞ = −½ E_{t~U(0,1)} E_ε[SNR'(t) ‖x − x̂_θ(z_t; t)‖²]                              (Eq. 15)
                         = ½ E_{t,ε}[γ'(t) ‖ε − ε̂_θ(z_t; t)‖²]                                            (Eq. 17)
``diffusion``, T     L_T = Σ_{i=1}^T ½ (SNR(s) − SNR(t)) ‖x − x̂_θ(z_t; t)‖²,  s = (i−1)/T, t = i/T (Eq. 13;
                     seed 003's L_t), estimated as T·E_i[…] = (T/2) E[expm1(γ(t) − γ(s)) ‖ε − ε̂‖²]
===================  ===============================================================================================

−log p(x) ≤ L_prior + L_recon + L_diffusion (Eq. 11), in nats; bits/dim divide by D·ln 2.

Training (``loss``) follows VDM: the bound itself in bits/dim, one time per example drawn with antithetic
(low-discrepancy) sampling t_b = (u + b/B) mod 1 (Appendix I.1). The schedule's end points γ_0, γ_1 are trained on
the bound; its shape ĝ (on which E[L_∞] does not depend, Eq. 18) on the *variance* of the estimate, by
back-propagating the gradient of the mean of L_diff² instead of L_diff into ĝ (Appendix I.2): Var = E[L²] − E[L]²
and E[L] does not move with ĝ.

The network is conditioned on λ itself (VDM's ``ScoreUNet``: (γ − γ_min)/(γ_max − γ_min) on a 0..1000 scale), so
the samplers of :mod:`.samplers` run on a VDM unchanged: :attr:`VDM.schedule` is the T-step process of the current
γ, :meth:`VDM.model_output` and :meth:`VDM.denoise` have DDPM's signatures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from ..core import Conditioning, DataSpec, NLLOutput
from ..nets.embeddings import base2_fourier_features
from ..nets.mlp import MLP, MLPConfig
from ..nets.unet import UNet, UNetConfig
from . import gaussian as G
from .base import DiffusionModel, ModelOutput
from .schedules import DiscreteSchedule, GammaConfig, GammaSchedule, build_gamma_schedule

__all__ = ["VDMConfig", "VDM", "continuous_diffusion_loss", "discrete_diffusion_loss", "snr_form_term",
           "antithetic_times", "discretized_decoder_log_prob"]

ScheduleObjective = Literal["variance", "elbo"]


def continuous_diffusion_loss(dgamma_dt: Tensor, eps: Tensor, eps_hat: Tensor) -> Tensor:
    """The integrand of L_∞ at one t per example, nats ``[B]``: ½ γ'(t) ‖ε − ε̂‖² (VDM Eq. 17), which is
    −½ SNR'(t) ‖x − x̂‖² (Eq. 15) because SNR' = −γ' e^{−γ} and e^{−γ}‖x − x̂‖² = ‖ε − ε̂‖².

    Args:
        dgamma_dt: ``[B]`` γ'(t) > 0. eps, eps_hat: ``[B, ...]``.
    """
    mse = (eps - eps_hat).flatten(1).pow(2).sum(1)
    return 0.5 * dgamma_dt.to(mse.dtype) * mse


def discrete_diffusion_loss(T: int, gamma_s: Tensor, gamma_t: Tensor, eps: Tensor, eps_hat: Tensor) -> Tensor:
    """T times one term of L_T, nats ``[B]``: (T/2) expm1(γ_t − γ_s) ‖ε − ε̂‖² = (T/2)(SNR(s) − SNR(t))‖x − x̂‖²
    (VDM Eq. 13; seed 003), an unbiased estimate of L_T when i is uniform on 1..T.

    Args:
        T: number of steps. gamma_s, gamma_t: ``[B]`` γ((i−1)/T) < γ(i/T). eps, eps_hat: ``[B, ...]``.
    """
    mse = (eps - eps_hat).flatten(1).pow(2).sum(1)
    return 0.5 * T * torch.expm1(gamma_t - gamma_s).to(mse.dtype) * mse


def snr_form_term(logsnr_s: Tensor, logsnr_t: Tensor, x0: Tensor, x0_hat: Tensor) -> Tensor:
    """Seed 003's L_t in SNR form, nats ``[B]``: ½ (SNR(s) − SNR(t)) ‖x_0 − x̂_0‖². It equals
    KL(q(x_s|x_t, x_0) ‖ p_θ(x_s|x_t)) when p_θ has the true posterior's variance (see :func:`.gaussian.vb_terms`).

    Args:
        logsnr_s, logsnr_t: ``[B]`` λ_s > λ_t. x0, x0_hat: ``[B, ...]``.
    """
    snr_s, snr_t = torch.exp(logsnr_s.double()), torch.exp(logsnr_t.double())
    return 0.5 * (snr_s - snr_t) * (x0.double() - x0_hat.double()).flatten(1).pow(2).sum(1)


def antithetic_times(batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """``[batch]`` float64 times t_b = (u + b/B) mod 1 with one u ~ U(0, 1): each is uniform on [0, 1] and together
    they cover it evenly (VDM Appendix I.1, "low-discrepancy sampler")."""
    u = torch.rand((), generator=generator, device=device, dtype=torch.float64)
    return torch.remainder(u + torch.arange(batch, device=device, dtype=torch.float64) / batch, 1.0)


def discretized_decoder_log_prob(x: Tensor, z0_rescaled: Tensor, gamma_0: Tensor, n_bins: int,
                                 tail_nats: float = 30.0) -> Tensor:
    """log p(x | z_0) per example, nats ``[B]``, for data on n_bins levels x_k = 2k/(n_bins − 1) − 1:
    p(x_i = x_k | z_0) = softmax_k(−½ (z_{0,i}/α_0 − x_k)² e^{−γ_0}) (VDM Appendix C; exact for a
    factorized data distribution as γ_0 → −∞).

    The normalizer sums over the levels within W of the level c nearest to y = z_0/α_0, with W the smallest width at
    which every level left out has a logit at least ``tail_nats`` below level c's:
    ½((W + ½)Δ)² e^{−γ_0} − ½(Δ/2)² e^{−γ_0} ≥ ``tail_nats`` (Δ = 2/(n_bins − 1)). The levels left out then change
    log p by less than 2·e^{−30}/(1 − e^{−Δ²e^{−γ_0}}), far below float32 precision; at γ_0 = −13 that is W = 1, three
    levels instead of 256 (the full sum is used when the window would cover most levels).

    Args:
        x: ``[B, ...]`` on the levels. z0_rescaled: ``[B, ...]`` z_0/α_0 = x + e^{γ_0/2} ε. gamma_0: 0-d γ_0.
        tail_nats: how far below the nearest level's logit a left-out level must be.
    """
    dtype = z0_rescaled.dtype
    delta = 2.0 / (n_bins - 1)
    inv_var = torch.exp(-gamma_0).to(dtype)
    k = torch.round((x + 1) / delta).long().clamp(0, n_bins - 1)
    logit_x = -0.5 * (z0_rescaled - (k.to(dtype) * delta - 1)).pow(2) * inv_var  # [B, ...] the data's own level
    W = math.ceil(math.sqrt(2 * tail_nats * math.exp(float(gamma_0.detach())) / delta**2 + 0.25) - 0.5)
    if 2 * W + 1 >= n_bins // 2:  # a wide window: the full sum is as cheap
        levels = torch.linspace(-1, 1, n_bins, device=x.device, dtype=dtype)
        logits = -0.5 * (z0_rescaled.unsqueeze(-1) - levels).pow(2) * inv_var  # [B, ..., n_bins]
    else:
        c = torch.round((z0_rescaled.detach() + 1) / delta).long().clamp(0, n_bins - 1)  # nearest level to y
        j = c.unsqueeze(-1) + torch.arange(-W, W + 1, device=x.device)  # [B, ..., 2W+1]
        levels = j.to(dtype) * delta - 1
        logits = -0.5 * (z0_rescaled.unsqueeze(-1) - levels).pow(2) * inv_var
        logits = logits.masked_fill((j < 0) | (j >= n_bins), -math.inf)  # no level beyond the edges
    log_probs = logit_x - torch.logsumexp(logits, -1)
    return log_probs.flatten(1).sum(1)


@dataclass(frozen=True)
class VDMConfig:
    """A variational diffusion model.

    Attributes:
        schedule: the noise schedule γ(t) (:class:`GammaConfig`; VDM's monotone network with γ_0 = −13.3,
            γ_1 = 5 by default). Its initial end points also fix the network's λ conditioning scale.
        T: 0 for continuous time (L_∞), else the number of steps of the discrete bound L_T.
        sample_steps: steps of the discrete process samplers use when T = 0 (``sample(steps=...)`` overrides).
        fourier_features: exponents n of the Fourier features sin/cos(2ⁿ·2π·s·z) concatenated to the network's
            input for images (VDM: 6, 7); () for none. s = (n_bins − 1)/256 makes n = 7 a period of one data level,
            as VDM's (see :func:`~genmodels.nets.embeddings.base2_fourier_features`). Ignored for vector data.
        antithetic: antithetic time sampling in training (else i.i.d. uniform).
        schedule_objective: ``variance`` trains the schedule's shape on the variance of the loss (VDM), ``elbo``
            on the bound itself (its expectation does not depend on the shape).
        clip_x0: clamp x̂ to [−1, 1] when sampling (never in the bound).
        unet: backbone for images. mlp: backbone for vectors.
        cond: class conditioning (:class:`~genmodels.core.Conditioning`; none by default): a learned label embedding
            added to the noise embedding (as improved-diffusion's ``label_emb``), label dropout ``p_uncond``; the
            bound is then on −log p(x | y).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "T": (0, 100_000), "sample_steps": (1, 100_000), "fourier_features": (-16, 16),
        "len(fourier_features)": (0, 16)}

    schedule: GammaConfig = field(default_factory=GammaConfig)
    T: int = 0
    sample_steps: int = 1000
    fourier_features: tuple[int, ...] = (6, 7)
    antithetic: bool = True
    schedule_objective: ScheduleObjective = "variance"
    clip_x0: bool = True
    unet: UNetConfig = field(default_factory=UNetConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        if self.T < 0 or self.sample_steps < 1:
            raise ValueError(f"T must be ≥ 0 (0: continuous time) and sample_steps ≥ 1; got T={self.T}, "
                             f"sample_steps={self.sample_steps}")
        if self.schedule_objective not in get_args(ScheduleObjective):
            raise ValueError(f"schedule_objective must be 'variance' or 'elbo', got {self.schedule_objective!r}")

    @property
    def variance(self) -> str:
        """The reverse variance the ancestral sampler uses: the true posterior's (VDM Eq. 28)."""
        return "fixed_small"


class VDM(DiffusionModel):
    """Variational diffusion model on images (UNet) or vectors (MLP); ε-prediction.

    Args:
        config: :class:`VDMConfig`. spec: the data it models.
    Raises:
        ValueError: for an event shape that is neither an image nor a vector.
    """

    description = "variational diffusion model, continuous time, learned noise schedule (Kingma et al. 2021)"

    def __init__(self, config: VDMConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self.set_conditioning(config.cond)
        self.gamma: GammaSchedule = build_gamma_schedule(config.schedule)
        self.fourier = tuple(config.fourier_features) if spec.is_image else ()
        # exponent 7 has a period of one data level (2/(n_bins − 1)), as in VDM's 256 levels 2/256 apart
        self.fourier_scale = (spec.n_bins - 1) / 256 if spec.n_bins else 1.0
        labels = self.num_label_embeddings if self.num_classes is not None else None
        if spec.is_image:
            c = spec.event_shape[0]
            self.net: nn.Module = UNet(c * (1 + 2 * len(self.fourier)), config.unet, out_channels=c,
                                       num_labels=labels)
        elif len(spec.event_shape) == 1:
            self.net = MLP(spec.event_shape[0], config.mlp, num_labels=labels)
        else:
            raise ValueError(f"VDM supports images (C, H, W) or vectors (D,), got event shape {spec.event_shape}")
        self._last: dict[str, float] = {}

    # ------------------------------------------------------------------ the network at a noise level
    @property
    def T(self) -> int:
        """Steps of the discrete process: ``config.T``, or ``config.sample_steps`` in continuous time."""
        return self.config.T or self.config.sample_steps

    @property
    def schedule(self) -> DiscreteSchedule:
        """The T-step process of the current γ on t_i = i/T (what the samplers respace)."""
        return self.gamma.discrete(self.T)

    @property
    def logsnr_min(self) -> float:
        """λ(1) = −γ_1."""
        with torch.no_grad():
            return -float(self.gamma.endpoints()[1])

    @property
    def logsnr_max(self) -> float:
        """λ(0) = −γ_0."""
        with torch.no_grad():
            return -float(self.gamma.endpoints()[0])

    def c_noise(self, logsnr: Tensor) -> Tensor:
        """Network conditioning: (γ − γ_min)/(γ_max − γ_min) on a 0..1000 scale, with γ_min, γ_max the configured
        (initial) end points (VDM ``ScoreUNet``)."""
        lo, hi = self.config.schedule.gamma_0, self.config.schedule.gamma_1
        return 1000.0 * (-logsnr.double() - lo) / (hi - lo)

    def eps_hat(self, z_t: Tensor, logsnr: Tensor, y: Tensor | None = None) -> Tensor:
        """ε̂_θ(z_t; λ[, y]), ``[B, ...]``; Fourier features of z_t are concatenated for images. ``y``: ``[B]`` int64
        labels of a conditional model (None: the null label), not checked here."""
        h = torch.cat([z_t, base2_fourier_features(z_t, self.fourier, self.fourier_scale)], 1) if self.fourier else z_t
        return self.backbone(h, self.c_noise(logsnr).to(z_t.dtype), y)

    def denoise(self, x_t: Tensor, logsnr: Tensor, clip_x0: bool = False, y: Tensor | None = None) -> ModelOutput:
        """The network at any λ ∈ [``logsnr_min``, ``logsnr_max``] (clamped), read as ε̂, x̂_0, v̂.

        Args:
            x_t: ``[B, *event_shape]``. logsnr: ``[B]``. y: as in :meth:`eps_hat`.
        """
        logsnr = logsnr.double().clamp(self.logsnr_min, self.logsnr_max)
        out = self.eps_hat(x_t, logsnr, y)
        return ModelOutput(G.predict(out, x_t, logsnr, "eps", clip_x0), logsnr)

    def model_output(self, x_t: Tensor, i: Tensor, clip_x0: bool = False, y: Tensor | None = None) -> ModelOutput:
        """The network at step indices ``i`` (``[B]``) of the T-step process, t = (i + 1)/T; ``y`` as in
        :meth:`eps_hat`."""
        with torch.no_grad():
            logsnr = -self.gamma((i.double() + 1) / self.T)
        out = self.eps_hat(x_t, logsnr, y)
        return ModelOutput(G.predict(out, x_t, logsnr, "eps", clip_x0), logsnr)

    # ------------------------------------------------------------------ the bound's terms
    def prior_term(self, x: Tensor) -> Tensor:
        """L_prior = KL(q(z_1|x) ‖ N(0, I)), nats ``[B]``."""
        gamma_1 = self.gamma.endpoints()[1]
        return G.prior_kl(x, -gamma_1.expand(x.shape[0]))

    def reconstruction_term(self, x: Tensor, eps0: Tensor) -> Tensor:
        """L_recon = −log p(x | z_0) at z_0 = α_0 x + σ_0 ε₀, nats ``[B]`` (one draw ε₀ ``[B, ...]``)."""
        gamma_0 = self.gamma.endpoints()[0]
        z0_rescaled = x + torch.exp(0.5 * gamma_0).to(x.dtype) * eps0  # z_0/α_0 (VDM's z_0_rescaled)
        if self.spec.n_bins is not None:
            return -discretized_decoder_log_prob(x, z0_rescaled, gamma_0, self.spec.n_bins)
        # −log N(x; z_0/α_0, e^{γ_0}) = ½ (log 2π + γ_0 + ε₀²) per dimension
        return 0.5 * (math.log(2 * math.pi) + gamma_0.to(x.dtype) + eps0.pow(2)).flatten(1).sum(1)

    def diffusion_term(self, x: Tensor, t: Tensor, eps: Tensor, variance_grad: bool = False,
                       y: Tensor | None = None) -> Tensor:
        """One draw of the diffusion term per example at times ``t`` (``[B]``, in (0, 1]), nats ``[B]``: the
        continuous integrand ½ γ'(t)‖ε − ε̂‖², or for T > 0 the discrete T·L_i at t = i/T (t is rounded up to the grid).

        Args:
            variance_grad: route the gradient of mean(ℓ²) — not of mean(ℓ), with ℓ this term in the loss's bits/dim —
                into the schedule's shape (training with ``schedule_objective="variance"``; VDM Appendix I.2).
            y: ``[B]`` labels of a conditional model (as in :meth:`eps_hat`).
        """
        T = self.config.T
        if T:
            # step i covers t ∈ ((i−1)/T, i/T]; the 1e-9 keeps t = i/T (whose t·T may round up by an ulp) on step i
            t = torch.ceil(t.double() * T - 1e-9).clamp(1, T) / T
            times = torch.cat([t, t - 1.0 / T])
        else:
            times = t.double()
        g_hat, dg_hat = self.gamma.shape(times)
        scale: dict[str, Tensor] = {}
        if variance_grad and g_hat.requires_grad:
            for tensor in (g_hat, dg_hat):
                if tensor.requires_grad:
                    tensor.register_hook(lambda grad: grad * scale["factor"])
        gamma, dgamma = self.gamma.combine(self.gamma.endpoints(), g_hat, dg_hat)
        B = x.shape[0]
        gamma_t = gamma[:B]
        z_t = G.q_sample(x, -gamma_t, eps)
        eps_hat = self.eps_hat(z_t, -gamma_t, y)
        if T:
            loss = discrete_diffusion_loss(T, gamma[B:], gamma_t, eps, eps_hat)
        else:
            loss = continuous_diffusion_loss(dgamma, eps, eps_hat)
        if variance_grad:
            # d mean(ℓ²)/dĝ = mean(2ℓ · dℓ/dĝ): scale the per-example gradient reaching ĝ by 2ℓ (ℓ in the loss units)
            factor = 2 * loss.detach().double() / (self.spec.dim * math.log(2))
            scale["factor"] = torch.cat([factor, factor]) if T else factor
        return loss

    def _times(self, B: int, generator: torch.Generator | None, device) -> Tensor:
        if self.config.antithetic:
            return antithetic_times(B, generator, device)
        return torch.rand(B, generator=generator, device=device, dtype=torch.float64)

    # ------------------------------------------------------------------ training
    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """The negative ELBO per example in bits/dim, ``[B]`` (VDM's training objective): L_prior + L_recon + one
        draw of the diffusion term at antithetic times. Unbiased for the bound. A conditional model trains on ``y``
        ``[B]`` after label dropout (∅ with probability ``p_uncond``; Ho & Salimans 2022, Algorithm 1)."""
        y = self.drop_labels(y, len(x), generator)
        B, dev = x.shape[0], x.device
        t = self._times(B, generator, dev)
        eps0 = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        prior = self.prior_term(x)
        recon = self.reconstruction_term(x, eps0)
        diffusion = self.diffusion_term(x, t, eps, variance_grad=self.config.schedule_objective == "variance", y=y)
        to_bpd = 1.0 / (self.spec.dim * math.log(2))
        with torch.no_grad():
            g0, g1 = self.gamma.endpoints()
            self._last = {"prior_bpd": prior.mean().item() * to_bpd, "reconstruction_bpd": recon.mean().item() * to_bpd,
                          "diffusion_bpd": diffusion.mean().item() * to_bpd, "gamma_0": g0.item(), "gamma_1": g1.item()}
        return (prior + recon + diffusion) * to_bpd

    def train_metrics(self) -> dict[str, float]:
        """The last training batch's mean terms (bits/dim) and the schedule's end points γ_0, γ_1."""
        return dict(self._last)

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, *, y: Tensor | None = None,
                  t_samples: int = 4, exact: bool = False) -> NLLOutput:
        """Negative ELBO per example (VDM Eq. 11), nats, with its three parts.

        ``prior`` analytic; ``reconstruction`` one draw of z_0; ``diffusion`` the mean of K = ``t_samples``
        stratified times t_k = (k + u_k)/K per example (unbiased; the learned schedule is VDM's variance-reducing
        importance distribution), or for T > 0 with ``exact=True`` the sum over all T steps.

        Args:
            x: ``[B, *event_shape]`` on the data scale. y: ``[B]`` labels of a conditional model: the bound on
                −log p(x | y); None: on −log p(x | ∅).
        Raises:
            ValueError: ``exact`` in continuous time, ``t_samples`` < 1, or a label for an unconditional model or
                out of range.
        """
        y = self.labels_or_null(y, len(x), x.device)
        if t_samples < 1:
            raise ValueError(f"t_samples must be ≥ 1, got {t_samples}")
        B, dev, T = x.shape[0], x.device, self.config.T
        prior = self.prior_term(x)
        recon = self.reconstruction_term(x, torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype))
        diffusion = torch.zeros(B, dtype=torch.float64, device=dev)
        if exact:
            if not T:
                raise ValueError("exact=True sums the T steps of a discrete-time VDM; this one is continuous "
                                 "(T=0): raise t_samples instead")
            for i in range(1, T + 1):
                t = torch.full((B,), i / T, dtype=torch.float64, device=dev)
                eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
                diffusion += self.diffusion_term(x, t, eps, y=y).double() / T
        else:
            u = torch.rand(B, t_samples, generator=generator, device=dev, dtype=torch.float64)
            for k in range(t_samples):
                t = ((k + u[:, k]) / t_samples).clamp(min=1e-12)
                eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
                diffusion += self.diffusion_term(x, t, eps, y=y).double() / t_samples
        diffusion = diffusion.to(x.dtype)
        return NLLOutput(nll=prior + recon + diffusion,
                         terms={"prior": prior, "diffusion": diffusion, "reconstruction": recon}, kind="bound")

    # ------------------------------------------------------------------ pictures
    def schedule_curves(self) -> dict[str, DiscreteSchedule]:
        """The learned γ beside VDM's fixed linear one with the initial end points and DDPM's linear and cosine
        schedules (T = 1000), for the schedule plot."""
        from .schedules import FixedLinearGamma, ScheduleConfig

        init = self.config.schedule
        ddpm = {f"DDPM {k}": DiscreteSchedule.from_config(ScheduleConfig(kind=k, T=1000)) for k in ("linear", "cosine")}
        return {f"this run ({init.kind})": self.schedule,
                "VDM fixed linear": FixedLinearGamma(init.gamma_0, init.gamma_1).discrete(self.T), **ddpm}


def default_config(spec: DataSpec) -> VDMConfig:
    """The VDM preset for a dataset: the same backbone as DDPM's preset (so the two compare at equal size), Fourier
    features and clipping when sampling for discrete data."""
    from dataclasses import replace

    from .ddpm import default_config as ddpm_default

    ddpm = ddpm_default(spec)
    cfg = VDMConfig(clip_x0=spec.is_discrete, unet=ddpm.unet, mlp=ddpm.mlp)
    if not spec.is_discrete:
        cfg = replace(cfg, fourier_features=())
    return cfg
