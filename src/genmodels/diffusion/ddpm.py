"""Discrete-time denoising diffusion probabilistic model (Ho et al. 2020; seeds 000, 001, 003).

The model combines three separate things: a :class:`~genmodels.diffusion.schedules.DiscreteSchedule`
(the process), a backbone from :mod:`genmodels.nets` (which sees only ``x_t`` and ``c_noise``), and the
Gaussian math of :mod:`genmodels.diffusion.gaussian`. Samplers live in :mod:`.samplers` and take the model
as an argument.

The variational bound (DDPM Eq. 5), with code index i = t − 1:

    −log p(x_0) ≤ L_T + Σ_{i=1}^{T−1} L_i + L_0,

reported as ``prior`` (L_T), ``diffusion`` (Σ L_i) and ``reconstruction`` (L_0). L_T is analytic and L_0 is
one network evaluation; the T−1 diffusion terms are estimated without bias by importance sampling the step
with stratified draws (see :meth:`DDPM.nll_terms` and ``../shared/BENCHMARKING.md``: uniform t is nearly
useless because the terms are heavy-tailed at small t), or summed exactly with ``exact=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

import torch
from torch import Tensor, nn

from ..core import Conditioning, DataSpec, EvalOptions, NLLOutput
from ..nets import noise_conditional_net
from ..nets.mlp import MLPConfig
from ..nets.unet import UNetConfig, unet_preset
from . import gaussian as G
from .base import DiffusionModel, ModelOutput
from .schedules import DiscreteSchedule, ScheduleConfig

__all__ = ["DDPMConfig", "DDPM", "ModelOutput", "default_config"]


@dataclass(frozen=True)
class DDPMConfig:
    """A DDPM: process, parameterization, loss, reverse variance and backbone.

    Attributes:
        schedule: the noise schedule (linear, T = 1000 by default, as in Ho et al. 2020).
        parameterization: what the network predicts: ``eps`` (DDPM), ``x0`` (seed 003) or ``v``.
        loss: training loss; ``simple`` is DDPM's L_simple (Eq. 14), ``elbo`` trains on the bound itself.
        variance: reverse variance, ``fixed_small`` (β̃_t) or ``fixed_large`` (β_t).
        clip_x0: clamp x̂_0 to [−1, 1] when sampling (never when computing the bound).
        unet: backbone for images. mlp: backbone for vector data.
        cond: class conditioning (:class:`~genmodels.core.Conditioning`; none by default): a learned label embedding
            added to the noise embedding (improved-diffusion, Nichol & Dhariwal 2021), label dropout ``p_uncond``.
    """

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    parameterization: G.Parameterization = "eps"
    loss: G.LossType = "simple"
    variance: G.VarianceType = "fixed_small"
    clip_x0: bool = True
    unet: UNetConfig = field(default_factory=UNetConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        for name, kind in (("parameterization", G.Parameterization), ("loss", G.LossType),
                           ("variance", G.VarianceType)):
            allowed = get_args(kind)
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")


class DDPM(DiffusionModel):
    """Denoising diffusion probabilistic model on images (UNet) or vectors (MLP).

    Args:
        config: :class:`DDPMConfig`. spec: the data it models.
    Raises:
        ValueError: for an event shape that is neither an image nor a vector, or eps-prediction on a schedule
            with zero terminal SNR.
    """

    description = "denoising diffusion probabilistic model, discrete time (Ho et al. 2020)"
    eval_options = ("t_samples", "exact", "calibrate")

    def __init__(self, config: DDPMConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self.set_conditioning(config.cond)
        self.schedule = DiscreteSchedule.from_config(config.schedule)
        if config.parameterization == "eps" and self.schedule.alphas_cumprod[-1] == 0:
            raise ValueError("this schedule reaches zero terminal SNR (ᾱ_T = 0), where an eps-prediction cannot give "
                             "x̂_0 = (x_T − σ ε̂)/α; use parameterization 'v' or 'x0' (Lin et al. 2024), or more steps")
        labels = self.num_label_embeddings if self.num_classes is not None else None
        self.net: nn.Module = noise_conditional_net(spec, config.unet, config.mlp, "DDPM", num_labels=labels)
        self.register_buffer("log_var", G.reverse_log_variance(
            self.schedule.betas, self.schedule.alphas_cumprod_prev, self.schedule.alphas_cumprod, config.variance),
            persistent=False)

    # ------------------------------------------------------------------ the network at a step
    @property
    def T(self) -> int:
        """Number of steps of the training process."""
        return self.schedule.num_steps

    @property
    def logsnr_min(self) -> float:
        """λ at the last training step (the noisiest level the network has seen)."""
        return float(self.schedule.logsnr[-1])

    @property
    def logsnr_max(self) -> float:
        """λ at the first training step (the cleanest level the network has seen)."""
        return float(self.schedule.logsnr[0])

    def c_noise(self, i: Tensor) -> Tensor:
        """Network conditioning for original step index i ∈ [0, T) (integer or fractional): the timestep on
        DDPM's 1000-step scale."""
        return i.float() * (1000.0 / self.T)

    def model_output(self, x_t: Tensor, i: Tensor, clip_x0: bool = False, y: Tensor | None = None) -> ModelOutput:
        """Run the network at original step indices ``i`` (``[B]`` int64) and read its output.

        Args:
            x_t: ``[B, *event_shape]``. y: ``[B]`` int64 labels of a conditional model (None: the null label);
                resolved labels, not checked here.
        """
        logsnr = self.schedule.logsnr[i]
        out = self.backbone(x_t, self.c_noise(i), y)
        return ModelOutput(G.predict(out, x_t, logsnr, self.config.parameterization, clip_x0), logsnr)

    def denoise(self, x_t: Tensor, logsnr: Tensor, clip_x0: bool = False, y: Tensor | None = None) -> ModelOutput:
        """Run the network at any noise level λ ∈ [``logsnr_min``, ``logsnr_max``] (continuous time).

        The discrete-time network is conditioned on the fractional step index whose logSNR is λ
        (:meth:`DiscreteSchedule.index_from_logsnr`); at the training steps this equals :meth:`model_output`.
        This is what the ODE/SDE samplers and the probability-flow likelihood call.

        Args:
            x_t: ``[B, *event_shape]``, a draw of x_λ = α x_0 + σ ε. logsnr: ``[B]`` λ (clamped to the range).
            y: as in :meth:`model_output`.
        Returns:
            :class:`ModelOutput` with ε̂, x̂_0, v̂ and the (clamped) λ, ``[B]`` float64.
        """
        logsnr = logsnr.double().clamp(self.logsnr_min, self.logsnr_max)
        out = self.backbone(x_t, self.c_noise(self.schedule.index_from_logsnr(logsnr)), y)
        return ModelOutput(G.predict(out, x_t, logsnr, self.config.parameterization, clip_x0), logsnr)

    # ------------------------------------------------------------------ training
    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Per-example loss ``[B]`` at a uniformly drawn step (DDPM Algorithm 1; seed 003's training loop).

        For ``loss="elbo"`` it is the unbiased one-step estimate of the bound's diffusion and reconstruction
        terms, T·L_i (nats per example, summed over dimensions). A conditional model trains on ``y`` ``[B]`` after
        label dropout (each label replaced by ∅ with probability ``p_uncond``; Ho & Salimans 2022, Algorithm 1).
        """
        y = self.drop_labels(y, len(x), generator)
        B = x.shape[0]
        i = torch.randint(0, self.T, (B,), generator=generator, device=x.device)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        logsnr = self.schedule.logsnr[i]
        x_t = G.q_sample(x, logsnr, eps)
        out = self.backbone(x_t, self.c_noise(i), y)
        if self.config.loss == "elbo":
            pred = G.predict(out, x_t, logsnr, self.config.parameterization)
            terms = G.vb_terms(x, x_t, pred, self.schedule.logsnr_prev[i], logsnr, self.log_var[i], i == 0,
                               self.spec.n_bins)
            return self.T * terms
        return G.training_loss(self.config.loss, self.config.parameterization, out, x, eps, x_t, logsnr)

    # ------------------------------------------------------------------ likelihood
    def vb_term(self, x0: Tensor, i: Tensor, generator: torch.Generator | None = None,
                y: Tensor | None = None) -> Tensor:
        """One bound term per example, nats ``[B]``: L_i at step index ``i`` (``[B]``), L_0 where i = 0; ``y`` as
        in :meth:`model_output`."""
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        logsnr = self.schedule.logsnr[i]
        x_t = G.q_sample(x0, logsnr, eps)
        pred = self.model_output(x_t, i, y=y).pred
        return G.vb_terms(x0, x_t, pred, self.schedule.logsnr_prev[i], logsnr, self.log_var[i], i == 0,
                          self.spec.n_bins)

    def default_proposal(self) -> Tensor:
        """``[T−1]`` probabilities over i = 1..T−1 for importance-sampling the diffusion terms.

        For a denoiser whose error is like the noise it sees, E‖x̂_0 − x_0‖² ∝ min(1/SNR(t), 1), so
        L_t ∝ (SNR(t−1) − SNR(t))·min(1/SNR(t), 1) (seed 003's SNR form): uniform in logSNR at small t and
        falling fast at large t. Mixed 9:1 with uniform so that no step has a vanishing probability.
        """
        s = self.schedule
        snr_prev, snr = torch.exp(s.logsnr_prev[1:]), torch.exp(s.logsnr[1:])
        w = (snr_prev - snr) * torch.clamp(1 / snr, max=1.0)
        p = w / w.sum()
        return 0.9 * p + 0.1 / len(p)

    @torch.no_grad()
    def calibrate_proposal(self, x: Tensor, generator: torch.Generator | None = None, grid: int = 48,
                           batch_size: int = 256) -> Tensor:
        """A proposal fitted to this model: E_x[L_i] measured on a log-spaced grid of steps, interpolated.

        Args:
            x: ``[N, ...]`` pilot examples (use training data, not the data being evaluated, so the
                estimate on the evaluated data stays unbiased); a conditional model is read at the null label
                (any proposal keeps the estimate unbiased).
        Returns:
            ``[T−1]`` probabilities over i = 1..T−1, mixed 9:1 with :meth:`default_proposal`.
        """
        grid_i = torch.unique(torch.logspace(0, torch.log10(torch.tensor(self.T - 1.0)), grid).round().long())
        means = []
        for i in grid_i.tolist():
            vals = []
            for xb in x.split(batch_size):
                idx = torch.full((len(xb),), i, dtype=torch.long, device=xb.device)
                vals.append(self.vb_term(xb, idx, generator).double())
            means.append(torch.cat(vals).mean().clamp(min=1e-12))
        log_means = torch.log(torch.stack(means))
        # piecewise-linear interpolation of log E[L_i] in i, on i = 1..T−1
        all_i = torch.arange(1, self.T, dtype=torch.float64)
        pos = torch.searchsorted(grid_i.double(), all_i).clamp(1, len(grid_i) - 1)
        i0, i1 = grid_i[pos - 1].double(), grid_i[pos].double()
        frac = ((all_i - i0) / (i1 - i0)).clamp(0, 1)
        w = torch.exp(log_means[pos - 1] * (1 - frac) + log_means[pos] * frac)
        return 0.9 * w / w.sum() + 0.1 * self.default_proposal().cpu()

    @torch.no_grad()
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, *, y: Tensor | None = None,
                  t_samples: int = 4, proposal: Tensor | None = None, exact: bool = False) -> NLLOutput:
        """Negative ELBO per example (DDPM Eq. 5), nats, with its three parts.

        ``prior`` = L_T (analytic), ``reconstruction`` = L_0 (one network evaluation), ``diffusion`` =
        Σ_{i=1}^{T−1} L_i, estimated as (1/K) Σ_k L_{i_k}/q(i_k) with K = ``t_samples`` stratified draws
        i_k = Q((k + u_k)/K) from the proposal q (Q its inverse CDF) — unbiased for every q > 0 — or summed
        over every step with ``exact=True`` (T network evaluations per example).

        K = 4 is the default because, with a calibrated proposal, the spread of the bound *between* images
        dominates: on Fashion-MNIST (500 test images) the per-image variance was ≈ 0.75 (bits/dim)² between
        images plus ≈ 0.48/K from the estimator, so K = 8 instead of 4 shrinks the split's standard error by 3%.

        Args:
            x: ``[B, *event_shape]`` on the data scale. y: ``[B]`` labels of a conditional model: the bound on
                −log p(x | y); None: on −log p(x | ∅). proposal: ``[T−1]`` probabilities (default
                :meth:`default_proposal`; see :meth:`calibrate_proposal`).
        Returns:
            :class:`NLLOutput` with ``nll`` ``[B]`` and terms ``prior``, ``diffusion``, ``reconstruction``.
        Raises:
            ValueError: a label for an unconditional model, or one out of range.
        """
        y = self.labels_or_null(y, len(x), x.device)
        B, dev = x.shape[0], x.device
        s = self.schedule
        prior = G.prior_kl(x, s.logsnr[-1].expand(B))
        recon = self.vb_term(x, torch.zeros(B, dtype=torch.long, device=dev), generator, y)
        if exact:
            diffusion = torch.zeros(B, dtype=torch.float64, device=dev)
            for i in range(1, self.T):
                diffusion += self.vb_term(x, torch.full((B,), i, dtype=torch.long, device=dev), generator, y).double()
        else:
            q = (self.default_proposal() if proposal is None else proposal).to(dev, torch.float64)
            cdf = torch.cumsum(q, 0)
            u = (torch.arange(t_samples, device=dev, dtype=torch.float64)[None]
                 + torch.rand(B, t_samples, generator=generator, device=dev, dtype=torch.float64)) / t_samples
            j = torch.searchsorted(cdf, u * cdf[-1]).clamp(max=len(q) - 1)  # (B, K) index into q
            diffusion = torch.zeros(B, dtype=torch.float64, device=dev)
            for k in range(t_samples):
                term = self.vb_term(x, j[:, k] + 1, generator, y).double()
                diffusion += term / (q[j[:, k]] * cdf[-1].reciprocal()) / t_samples
        diffusion = diffusion.to(x.dtype)
        return NLLOutput(nll=prior + diffusion + recon,
                         terms={"prior": prior, "diffusion": diffusion, "reconstruction": recon}, kind="bound")

    # ------------------------------------------------------------------ evaluation and pictures
    def nll_kwargs(self, options: EvalOptions, train: Tensor | None = None,
                   generator: torch.Generator | None = None, n_examples: int | None = None) -> dict[str, Any]:
        """The bound's estimator: ``exact`` (all T terms) or ``t_samples`` stratified draws from the step proposal,
        calibrated (:meth:`calibrate_proposal`, 32 steps) on the first :func:`pilot_size` of ``train`` when
        ``options.calibrate`` (pilot examples, never the evaluated ones, so the estimate stays unbiased)."""
        kwargs = super().nll_kwargs(options, train, generator, n_examples)
        if options.calibrate and not options.exact and train is not None:
            pilot = train[:pilot_size(n_examples)].to(self.device)
            kwargs["proposal"] = self.calibrate_proposal(pilot, generator, grid=32)
        return kwargs

    def eval_extras(self, x: Tensor, report: Any, options: EvalOptions) -> dict[str, Any]:
        """The estimator's proposal, when calibrated."""
        if "proposal" not in report.estimator:
            return {}
        note = f"calibrated on {pilot_size(len(x))} training examples, 32 steps"
        return {"estimator": {**report.estimator, "proposal": note}}

    def schedule_curves(self) -> dict[str, DiscreteSchedule]:
        """The linear and cosine schedules at this T, for the schedule plot."""
        return {f"DDPM {k}": DiscreteSchedule.from_config(ScheduleConfig(kind=k, T=self.T))
                for k in ("linear", "cosine")}


def pilot_size(n_examples: int | None) -> int:
    """Training examples the step proposal is calibrated on: 128, or as many as are evaluated when fewer (the
    calibration's 32 steps × 128 examples would otherwise cost far more than a small evaluation itself)."""
    return 128 if n_examples is None else max(1, min(128, n_examples))


def default_config(spec: DataSpec) -> DDPMConfig:
    """The DDPM preset for a dataset: a UNet sized to the image (two levels up to 16 px, three above, attention at
    the lowest level only), or the MLP for vectors. x̂_0 is clipped to [−1, 1] when sampling only for discrete data
    (which lives there); continuous data such as the 2-D toys is not bounded so."""
    from dataclasses import replace

    cfg = DDPMConfig(clip_x0=spec.is_discrete)
    return replace(cfg, unet=unet_preset(spec)) if spec.is_image else cfg
