"""The Gaussian variational autoencoder (Kingma & Welling 2014; seeds 000 and 002) and what every VAE shares.

Model: p(z) = N(0, I), p_θ(x|z) a decoder distribution for the kind of data (:mod:`.likelihoods`), and the
encoder q_φ(z|x) = N(μ_φ(x), diag σ²_φ(x)). The evidence lower bound (seed 000, Eq. 19; Kingma & Welling
2014, Eq. 7) with the reparameterization z = μ + σ ⊙ ε (their Eq. 10) and the analytic KL (their App. B):

    log p(x) ≥ ELBO = E_q[log p_θ(x|z)] − KL(q_φ(z|x) ‖ p(z)),

reported as ``reconstruction`` = −E_q[log p_θ(x|z)] and ``kl_z`` = KL, in nats per example. The
importance-weighted bound (Burda et al. 2016, Eq. 8) with k samples,

    log p(x) ≥ IWAE_k = E[log (1/k) Σ_i p(x, z_i)/q(z_i|x)],  z_i ~ q(z|x),

is tighter as k grows (their Theorem 1) and tends to log p(x); ``nll(x, k=K)`` returns −IWAE_K with the parts
``reconstruction`` and ``kl_*`` (the ELBO, averaged over the same K samples) and ``iwae_gap`` = IWAE − ELBO
part (≤ 0 in expectation), which sum to it.

Class-conditional VAEs (``cond.num_classes = K > 0``) are CVAEs (Sohn et al. 2015, "Learning Structured Output
Representation using Deep Conditional Generative Models", §3): a label embedding e(y) (K classes and the null
label ∅ = K) conditions the encoder q_φ(z | x, y), the decoder p_θ(x | z, y) and a learned prior
p_θ(z | y) = N(μ_y, diag σ²_y) (a per-class mean and log-variance, zero-initialized: every class starts at N(0, I)),
and the bound is their conditional ELBO (Eq. 4, in this library's names: x the data, y the label)

    log p(x | y) ≥ E_q(z|x,y)[log p_θ(x | z, y)] − KL(q_φ(z | x, y) ‖ p_θ(z | y)),

the KL analytic between the two Gaussians; the IWAE bound takes y the same way (z_i ~ q(z | x, y), weights
p(x | z_i, y) p(z_i | y) / q(z_i | x, y)). With label dropout (``cond.p_uncond``) the null label trains
p(x | ∅) ≈ p(x); y = None asks for it. An unconditional model (K = 0) has no label parameters.

Against posterior collapse (Bowman et al. 2016): KL warm-up (β from 0 to 1 over ``kl_warmup_steps``;
Sønderby et al. 2016, §2.3) and free bits (Kingma et al. 2016, "IAF", §C.8: each latent dimension's
batch-averaged KL is replaced by max(λ, KL), so no dimension is pushed below λ nats); the number of active
units (Burda et al. 2016, §5.2: Cov_x(E_q[z_u]) > 10⁻²) is reported by :meth:`LatentVariableModel.active_units`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core import Conditioning, DataSpec, EvalOptions, GenerativeModel, NLLOutput, Progress, SampleOutput
from ..distributions import normal_kl, normal_log_prob, standard_normal_kl
from ..nets.coders import CoderConfig, make_decoder, make_encoder
from . import likelihoods as L

if TYPE_CHECKING:
    from ..data.base import Dataset

__all__ = ["LatentVariableConfig", "VAEConfig", "VAE", "LatentVariableModel", "LatentPass", "logmeanexp", "LABEL_DIM"]

LABEL_DIM = 32
"""Width of a CVAE's label embedding e(y), the context its encoder and decoder read."""

Objective = Literal["elbo", "iwae"]


def logmeanexp(x: Tensor, dim: int = 0) -> Tensor:
    """log((1/k) Σ_i e^{x_i}) along ``dim``, stably (the IWAE estimator, Burda et al. 2016, Eq. 8)."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


@dataclass(frozen=True)
class LatentVariableConfig:
    """What every VAE config shares (the base of :class:`VAEConfig` and :class:`~genmodels.vae.hvae.HVAEConfig`).

    Attributes:
        coder: encoder/decoder backbone (:class:`~genmodels.nets.coders.CoderConfig`: ``mlp`` or ``conv``).
        likelihood: decoder distribution; ``auto`` picks it from the data (:func:`.likelihoods.resolve_likelihood`).
        objective: ``elbo`` (Kingma & Welling 2014) or ``iwae`` (Burda et al. 2016) with ``train_samples`` samples.
        train_samples: z samples per example in training (k of the IWAE objective; ELBO: averaged).
        kl_warmup_steps: the KL weight β rises linearly from 0 to 1 over this many training steps (0: β = 1).
        free_bits: λ, nats per latent dimension (0 disables).

    Each subclass ends with ``cond`` (:class:`~genmodels.core.Conditioning`): K > 0 classes make the model a CVAE
    (module docstring), 0 (the default) leaves it as it always was.

    Raises:
        ValueError: naming the bad field and the fix.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"train_samples": (1, 1000), "kl_warmup_steps": (0, 10**9)}

    coder: CoderConfig = field(default_factory=CoderConfig)
    likelihood: L.Likelihood = "auto"
    objective: Objective = "elbo"
    train_samples: int = 1
    kl_warmup_steps: int = 0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if self.train_samples < 1:
            raise ValueError(f"train_samples must be ≥ 1, got {self.train_samples}")
        if self.kl_warmup_steps < 0 or self.free_bits < 0:
            raise ValueError(f"kl_warmup_steps and free_bits must be ≥ 0, got {self.kl_warmup_steps}, "
                             f"{self.free_bits}")
        if self.objective == "iwae" and self.free_bits > 0:
            raise ValueError("free bits act on the ELBO's KL terms; the IWAE objective has none. Use objective 'elbo' "
                             "with free_bits, or free_bits=0")


@dataclass(frozen=True)
class VAEConfig(LatentVariableConfig):
    """A Gaussian VAE: ``latent_dim``, the size of z, the fields of :class:`LatentVariableConfig`, and ``cond``
    (class conditioning: a CVAE for K > 0 classes)."""

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"latent_dim": (1, 4096)}

    latent_dim: int = 32
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be ≥ 1, got {self.latent_dim}")
        super().__post_init__()


@dataclass
class LatentPass:
    """One pass through the model with S latent samples per example (the pieces of every bound).

    Attributes:
        log_px: ``[S, B]`` log p(x | z_1), nats.
        kl: one ``[S, B, d_l]`` tensor per stochastic layer (bottom first): the per-dimension KL term of the ELBO
            (analytic where the posterior and prior are both Gaussian given the layers above, else the
            single-sample Monte Carlo log q − log p).
        log_ratio: ``[S, B]`` Σ_l log p(z_l | z_{l+1}) − log q(z_l | ·) at the sampled z's (the importance
            weight without log p(x|z)).
        params: ``[S·B, …]`` decoder parameters (for reconstructions).
    """

    log_px: Tensor
    kl: list[Tensor]
    log_ratio: Tensor
    params: Tensor


class LatentVariableModel(GenerativeModel):
    """What the Gaussian VAE and the hierarchical VAE share: the bounds, the objective, warm-up, free bits,
    active units, sampling and, for a CVAE, the label embedding e(y) (:meth:`label_context`). Subclasses implement
    :meth:`latent_pass`, :meth:`latent_means`, :meth:`prior_sample` and set ``decoder``, ``likelihood`` and
    ``latent_dims``; their decoder reads [z_1, e(y)] for a CVAE.

    Every method taking ``y`` (``[B]`` labels of a CVAE) reads None as the null label; an unconditional model takes
    none (ValueError).

    The training step counter (for KL warm-up) is a buffer, so it is saved, resumed and copied to the EMA.
    """

    nll_kind = "bound"
    samplers: ClassVar[tuple[str, ...]] = ("ancestral", "mean")
    """``ancestral``: z ~ p(z), x ~ p(x | z); ``mean``: the decoder's mean E[x | z] (one network pass either way)."""
    eval_options: ClassVar[tuple[str, ...]] = ("k",)
    latent_dims: tuple[int, ...]
    likelihood: str

    def _init_common(self, config, spec: DataSpec) -> None:
        self.config, self.spec = config, spec
        self.likelihood = L.resolve_likelihood(config.likelihood, spec)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.int64))
        self.set_conditioning(getattr(config, "cond", None))
        # width of e(y), which the encoder and the decoder read (0 for an unconditional model: no label parameters)
        self.label_dim = LABEL_DIM if self.num_classes is not None else 0
        if self.num_classes is not None:
            self.label_embedding = nn.Embedding(self.num_label_embeddings, LABEL_DIM)

    def label_context(self, y: Tensor | None, n: int) -> Tensor | None:
        """e(y) ``[n, LABEL_DIM]`` of a CVAE (y None: the null label), None for an unconditional model.

        Raises:
            ValueError: a bad label (:meth:`~genmodels.core.GenerativeModel.check_label`).
        """
        y = self.labels_or_null(y, n)
        return None if y is None else self.label_embedding(y)

    # ------------------------------------------------------------------ what subclasses provide
    def latent_pass(self, x: Tensor, samples: int = 1, generator: torch.Generator | None = None,
                    y: Tensor | None = None) -> LatentPass:
        """Encode ``x`` (``[B, *event]``) (with labels ``y`` ``[B]`` for a CVAE), draw ``samples`` latents per example,
        decode; see :class:`LatentPass`."""
        raise NotImplementedError

    def latent_means(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        """Posterior means of each layer (bottom first), ``[B, d_l]``, with the layers they condition on set to
        their own means (no noise). Used for active units, interpolations and latent-space pictures."""
        raise NotImplementedError

    def prior_sample(self, n: int, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """z_1 from the generative model's prior (through the layers above it; p(· | y) for a CVAE), ``[n, d_1]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def _encode(self, x: Tensor, context: Tensor | None) -> Tensor:
        """Encoder features of x (and e(y) ``[B, LABEL_DIM]`` for a CVAE; None: unconditional)."""
        return self.encoder(x) if context is None else self.encoder(x, context)

    def _decode(self, z1: Tensor, context: Tensor | None) -> Tensor:
        """Decoder parameters from z_1 ``[N, d_1]`` and e(y) ``[N, LABEL_DIM]`` (None: unconditional)."""
        return self.decoder(z1 if context is None else torch.cat([z1, context.to(z1.dtype)], -1))

    def decode(self, z1: Tensor, y: Tensor | None = None) -> Tensor:
        """Decoder parameters of p(x | z_1) (p(x | z_1, y) for a CVAE, ``y`` ``[B]``) for ``z1`` ``[B, d_1]``."""
        return self._decode(z1, self.label_context(y, len(z1)))

    def kl_weight(self) -> float:
        """β of the KL terms now: min(1, (step + 1) / kl_warmup_steps) (Sønderby et al. 2016), 1 without warm-up."""
        w = self.config.kl_warmup_steps
        return 1.0 if w == 0 else min(1.0, (int(self.train_steps) + 1) / w)

    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Negative training objective per example, ``[B]`` nats: −ELBO with β-weighted (warm-up) and free-bits
        KL terms, or −IWAE_k (``objective='iwae'``, k = ``train_samples``). Each call in training mode counts one
        step for the warm-up. A CVAE trains its conditional ELBO (Sohn et al. 2015, Eq. 4) on ``y`` after label
        dropout (each label replaced by the null label with probability ``p_uncond``; Ho & Salimans 2022).

        Raises:
            ValueError: a bad label (any label for an unconditional model).
        """
        y = self.drop_labels(y, len(x), generator)
        cfg = self.config
        beta = self.kl_weight()
        if self.training and torch.is_grad_enabled():
            self.train_steps += 1
        p = self.latent_pass(x, cfg.train_samples, generator, y)
        if self.training:
            # detached tensors: no device sync per step; train_metrics() reads them when the trainer logs
            self._last_metrics = {"kl_weight": torch.tensor(beta), "reconstruction": -p.log_px.detach().mean(),
                                  **{n: kl.detach().sum(-1).mean()
                                     for n, kl in zip(self.kl_names(), p.kl, strict=True)}}
        if cfg.objective == "iwae":
            return -logmeanexp(p.log_px + beta * p.log_ratio, 0)
        kl_total = 0.0
        for kl in p.kl:  # [S, B, d]
            if cfg.free_bits > 0:
                active = kl.mean((0, 1)) >= cfg.free_bits  # [d]: the batch-averaged KL of each dimension
                kl = torch.where(active, kl, torch.full_like(kl, cfg.free_bits))
            kl_total = kl_total + kl.sum(-1)
        return -(p.log_px - beta * kl_total).mean(0)

    @torch.no_grad()
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None, k: int = 1,
                  chunk: int | None = None) -> NLLOutput:
        """−ELBO (``k = 1``) or −IWAE_k per example, nats, with its parts.

        Args:
            x: ``[B, *event_shape]``.
            y: ``[B]`` labels of a CVAE: the bounds on −log p(x | y) (Sohn et al. 2015, Eq. 4); None: the null label,
                −log p(x | ∅).
            k: importance samples; 1 gives the ELBO (analytic KLs, one z sample).
            chunk: samples per forward pass (memory); default ``max(1, 4096 // B)``.
        Returns:
            :class:`NLLOutput` with terms ``reconstruction``, ``kl_z`` (VAE) or ``kl_z1 … kl_zL`` (HVAE), and for
            k > 1 ``iwae_gap`` (−IWAE − (−ELBO), so the parts sum to the NLL).
        Raises:
            ValueError: if k < 1, or a bad label (any label for an unconditional model).
        """
        y = self.labels_or_null(y, len(x))
        if k < 1:
            raise ValueError(f"k (importance samples) must be ≥ 1, got {k}")
        chunk = max(1, min(k, chunk or 4096 // max(1, len(x))))
        names = self.kl_names()
        log_w, recon, kls = [], torch.zeros(len(x), dtype=torch.float64, device=x.device), [0.0] * len(names)
        done = 0
        while done < k:
            s = min(chunk, k - done)
            p = self.latent_pass(x, s, generator, y)
            log_w.append((p.log_px + p.log_ratio).double())
            recon = recon - p.log_px.double().sum(0)
            kls = [a + kl.double().sum((0, 2)) for a, kl in zip(kls, p.kl, strict=True)]
            done += s
        terms = {"reconstruction": recon / k, **{n: kl / k for n, kl in zip(names, kls, strict=True)}}
        elbo_nll = sum(terms.values())
        if k == 1:
            return NLLOutput(elbo_nll, terms, "bound")
        nll = -logmeanexp(torch.cat(log_w), 0)
        terms["iwae_gap"] = nll - elbo_nll
        return NLLOutput(nll, terms, "bound")

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters (what latents are drawn in)."""
        return next(self.parameters()).dtype

    def train_metrics(self) -> dict[str, float]:
        """The last training batch's β (``kl_weight``), mean ``reconstruction`` (−log p(x|z)) and KL of each layer
        (before warm-up and free bits), nats per example; written to ``metrics.jsonl`` to watch for collapse."""
        return {k: float(v) for k, v in getattr(self, "_last_metrics", {}).items()}

    def kl_names(self) -> list[str]:
        """Names of the KL terms: ``kl_z`` for one layer, else ``kl_z1 … kl_zL`` (bottom first)."""
        n = len(self.latent_dims)
        return ["kl_z"] if n == 1 else [f"kl_z{i + 1}" for i in range(n)]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = False,
               y: Tensor | None = None) -> Tensor:
        """``n`` draws from p(x) = ∫ p(x|z) p(z) dz, ``[n, *event_shape]``; with ``mean=True`` the decoder's mean
        E[x | z] instead of a draw from p(x | z) (what VAE papers usually show). A CVAE draws from
        p(x | y) = ∫ p(x | z, y) p(z | y) dz (``y`` ``[n]``; None: the null label).

        Raises:
            ValueError: a bad label.
        """
        y = self.labels_or_null(y, n)
        params = self.decode(self.prior_sample(n, generator, y), y)
        if mean:
            return L.decoder_mean(params, self.likelihood)
        return L.decoder_sample(params, self.likelihood, self.spec, generator)

    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, progress: Progress | None = None,
             keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """:meth:`sample` with ``sampler`` ``ancestral`` (a draw from p(x | z)) or ``mean`` (E[x | z]); one network
        evaluation per sample.

        Raises:
            KeyError: another sampler. ValueError: ``steps`` given (there are none) or a bad label (any label for an
                unconditional model).
        """
        name = self.check_sampler(sampler, options)
        self.check_label(y, n)
        if steps is not None:
            raise ValueError(f"a {type(self).__name__} samples in one pass: --steps does not apply")
        return SampleOutput(x0=self.sample(n, generator, mean=name == "mean", y=y), nfe=1)

    def preview(self) -> dict[str, Any]:
        """The decoder's mean, as VAE papers show."""
        return {"sampler": "mean"}

    def nll_kwargs(self, options: EvalOptions, train: Tensor | None = None,
                   generator: torch.Generator | None = None, n_examples: int | None = None) -> dict[str, Any]:
        """``k`` importance samples: the IWAE bound (Burda et al. 2016, Eq. 8); k = 1 is the ELBO."""
        return {"k": options.k}

    @torch.no_grad()
    def eval_extras(self, x: Tensor, report: Any, options: EvalOptions) -> dict[str, Any]:
        """The bound's name, the ELBO of the same samples beside an IWAE bound (``elbo_bpd``, ``elbo_nats``), the
        active units of each layer (Burda et al. 2016, §5.2) and the latent sizes."""
        return {"bound": f"IWAE-{options.k}" if options.k > 1 else "ELBO",
                "elbo_bpd": report.bpd - report.terms_bpd.get("iwae_gap", 0.0),
                "elbo_nats": report.nats - report.terms_nats.get("iwae_gap", 0.0),
                "active_units": self.active_units(x.to(self.device)), "latent_dims": list(self.latent_dims)}

    def figures(self, data: Dataset, out: Path, generator: torch.Generator | None = None, *,
                sampler: str | None = None, steps: int | None = None) -> list[Path]:
        """Samples, reconstructions, latent interpolations and the 2-D latent spaces by label
        (:func:`genmodels.vae.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's mean at the posterior mean of z_1, ``[B, *event_shape]`` (a CVAE's given ``y``; None: the
        null label)."""
        y = self.labels_or_null(y, len(x))
        return L.decoder_mean(self.decode(self.latent_means(x, y)[0], y), self.likelihood)

    @torch.no_grad()
    def active_units(self, x: Tensor, threshold: float = 1e-2, batch_size: int = 500,
                     y: Tensor | None = None) -> list[int]:
        """Active latent units per layer (bottom first): dimensions u with Cov_x(E_q[z_u | x]) > ``threshold``
        over the examples ``x`` (Burda et al. 2016, §5.2; posterior means from :meth:`latent_means`; a CVAE's
        given ``y`` ``[B]``, None: the null label)."""
        y = self.labels_or_null(y, len(x))
        ys = [None] * len(x.split(batch_size)) if y is None else y.split(batch_size)
        per_batch = (self.latent_means(xb, yb) for xb, yb in zip(x.split(batch_size), ys, strict=True))
        means = [torch.cat(m) for m in zip(*per_batch, strict=True)]
        return [int((m.double().var(0) > threshold).sum()) for m in means]


class VAE(LatentVariableModel):
    """Gaussian VAE with an MLP or convolutional encoder/decoder (Kingma & Welling 2014); with ``cond`` a CVAE
    (Sohn et al. 2015; module docstring): q(z | x, y), p(x | z, y), p(z | y) = N(μ_y, diag σ²_y).

    Args:
        config: :class:`VAEConfig`. spec: the data it models.
    Raises:
        ValueError: if the decoder distribution does not fit the data, or ``conv`` is asked for vectors.
    """

    description = "variational autoencoder, Gaussian latent; ELBO and IWAE bounds (Kingma & Welling 2014)"

    def __init__(self, config: VAEConfig, spec: DataSpec):
        super().__init__()
        self._init_common(config, spec)
        self.latent_dims = (config.latent_dim,)
        d, e = config.latent_dim, self.label_dim
        self.encoder = make_encoder(spec.event_shape, config.coder, e)  # q(z | x[, y]): e(y) beside x
        self.to_posterior = nn.Linear(self.encoder.features, 2 * d)  # (μ, log σ²)
        self.decoder = make_decoder(d + e, spec.event_shape, L.params_per_dim(self.likelihood), config.coder)
        if self.num_classes is not None:  # p(z | y) = N(μ_y, diag σ²_y): a per-class (μ, log σ²), from N(0, I)
            self.prior_params = nn.Embedding(self.num_label_embeddings, 2 * d)
            nn.init.zeros_(self.prior_params.weight)

    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x) (a CVAE's q(z | x, y), ``y`` ``[B]``, None: the null label): (μ, log σ²), each ``[B, latent_dim]``.
        """
        mu, logvar = self.to_posterior(self._encode(x, self.label_context(y, len(x)))).chunk(2, dim=1)
        return mu, logvar

    def prior(self, y: Tensor | None, n: int) -> tuple[Tensor, Tensor] | None:
        """A CVAE's learned prior p(z | y) = N(μ_y, diag σ²_y) (Sohn et al. 2015, §3): (μ_y, log σ²_y), each
        ``[n, latent_dim]`` (y None: the null label); None for an unconditional model (p(z) = N(0, I))."""
        y = self.labels_or_null(y, n)
        return None if y is None else tuple(self.prior_params(y).chunk(2, dim=1))

    def latent_pass(self, x: Tensor, samples: int = 1, generator: torch.Generator | None = None,
                    y: Tensor | None = None) -> LatentPass:
        """S = ``samples`` reparameterized z per example; the encoder runs once per example. See
        :class:`LatentPass`. A CVAE (``y`` ``[B]``, None: the null label) encodes q(z | x, y), decodes
        p(x | z, y) and measures its KL against p(z | y) (Sohn et al. 2015, Eq. 4)."""
        y = self.labels_or_null(y, len(x))
        context = self.label_context(y, len(x))  # [B, LABEL_DIM] or None
        mu, logvar = self.to_posterior(self._encode(x, context)).chunk(2, dim=1)  # [B, d]
        z = L.reparameterize(mu.expand(samples, *mu.shape), logvar.expand(samples, *logvar.shape), generator)
        rep = None if context is None else context.expand(samples, *context.shape).flatten(0, 1)  # [S·B, ·]
        params = self._decode(z.flatten(0, 1), rep)  # [S·B, …]
        xs = x.expand(samples, *x.shape).flatten(0, 1)
        log_px = L.log_prob(params, xs, self.likelihood, self.spec).view(samples, len(x))
        prior = self.prior(y, len(x))
        if prior is None:
            log_ratio = (normal_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
                         - normal_log_prob(z, mu, logvar)).sum(-1)
            kl = standard_normal_kl(mu, logvar).expand(samples, *mu.shape)
        else:  # KL(q(z | x, y) ‖ p(z | y)), analytic (Sohn et al. 2015, Eq. 4)
            mu_p, lv_p = prior
            log_ratio = (normal_log_prob(z, mu_p, lv_p) - normal_log_prob(z, mu, logvar)).sum(-1)
            kl = normal_kl(mu, logvar, mu_p, lv_p).expand(samples, *mu.shape)
        return LatentPass(log_px, [kl], log_ratio, params)

    def latent_means(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        """``[μ_φ(x)]`` (a CVAE's ``[μ_φ(x, y)]``), ``[B, latent_dim]``."""
        return [self.posterior(x, y)[0]]

    def prior_sample(self, n: int, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """z ~ N(0, I) (a CVAE's z ~ p(z | y), ``y`` ``[n]``, None: the null label), ``[n, latent_dim]``."""
        prior = self.prior(y, n)
        if prior is None:
            return torch.randn(n, self.config.latent_dim, generator=generator, device=self.device, dtype=self.dtype)
        return L.reparameterize(*prior, generator)
