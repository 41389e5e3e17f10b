"""A hierarchical VAE with L Gaussian stochastic layers (seed 000, §"Hierarchical VAE", figure 2; any L).

Generative model (top-down, Markovian; the same for both inference variants):

    p(x, z_1, …, z_L) = p(x | z_1) Π_{l=1}^{L−1} p(z_l | z_{l+1}) p(z_L),   p(z_L) = N(0, I),
    p(z_l | z_{l+1}) = N(μ_l(z_{l+1}), diag σ²_l(z_{l+1})).

Inference, two variants (``HVAEConfig.inference``):

- ``bottom_up`` (default): the seed's Markovian encoder q(z_1 | x) Π_l q(z_{l+1} | z_l) (seed 000, Eq. for the HVAE
  ELBO).
  The ELBO per layer (seed 000's expansion) is
  ``E_q[log p(x|z_1)] − Σ_{l<L} E_q[log q(z_l|z_{l−1}) − log p(z_l|z_{l+1})] − E_q[KL(q(z_L|z_{L−1}) ‖ p(z_L))]``;
  the layers below the top have no closed form (z_{l+1} is drawn *after* z_l), so their terms are single-sample
  Monte Carlo; the top one is analytic.
- ``top_down``: the ladder variant that shares the generative path (Sønderby et al. 2016, "LVAE";
  Vahdat & Kautz 2020, "NVAE"): deterministic bottom-up features h_1 = enc(x), h_{l+1} = f_l(h_l), then
  q(z_L | x) from h_L and q(z_l | z_{l+1}, x) = N(μ_l + Δμ_l, σ²_l · e^{Δ_l}) from the prior's hidden state
  and h_l (NVAE's residual normal, Eq. 2). Every term is then an analytic KL between Gaussians given the
  layers above, ``KL(q(z_l | z_{>l}, x) ‖ p(z_l | z_{l+1}))``, averaged over q(z_{>l} | x) by sampling.

Either way ``reconstruction + Σ_l kl_zl = −ELBO`` per sample (:meth:`HVAE.nll_terms`), and the IWAE bound uses
the joint log-ratio Σ_l log p(z_l|z_{l+1}) − log q(z_l|·) (:class:`~genmodels.vae.vae.LatentPass`).

Class-conditional (``cond.num_classes = K > 0``): a hierarchical CVAE (Sohn et al. 2015, Eq. 4, with a hierarchy of
latents): the label embedding e(y) conditions the inference network (the encoder reads it beside x, and in the
``bottom_up`` variant every q(z_{l+1} | z_l, y) too), the decoder p(x | z_1, y) and the top layer's prior,
p(z_L | y) = N(μ_y, diag σ²_y), learned per class and zero-initialized (every class starts at N(0, I)); the lower
priors p(z_l | z_{l+1}) see y through z_{l+1}. Every bound above then bounds log p(x | y), its top KL taken against
p(z_L | y).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core import Conditioning, DataSpec
from ..distributions import normal_kl, normal_log_prob, standard_normal_kl
from ..nets.coders import make_decoder, make_encoder
from . import likelihoods as L
from .vae import LatentPass, LatentVariableConfig, LatentVariableModel

__all__ = ["HVAEConfig", "HVAE"]

LOGVAR_BOUND = 10.0
"""Log-variances of every layer are soft-clamped to (−10, 10) (b·tanh(v/b)): deep stacks of Gaussians otherwise
overflow e^{log σ²} early in training (NVAE, §3.2, bounds its scales for the same reason)."""


@dataclass(frozen=True)
class HVAEConfig(LatentVariableConfig):
    """A hierarchical VAE.

    Attributes:
        latent_dims: sizes of z_1 (next to x) … z_L (top); L = len(latent_dims) ≥ 1.
        inference: ``bottom_up`` (the seed's Markovian q(z_1|x) q(z_2|z_1) …) or ``top_down`` (ladder, shares the
            generative path). bottom_up is the default because it trained better in every measurement here
            (BENCHMARKS.md: Fashion-MNIST ELBO 11 nats, mnist5k 6 nats lower than top_down at the same budget;
            top_down's top layer collapsed to ≤ 1 active unit).
        latent_hidden: width of the MLPs between stochastic layers (prior nets, bottom-up nets).
        and the fields of :class:`~genmodels.vae.vae.LatentVariableConfig` (coder, likelihood, objective,
        train_samples, kl_warmup_steps, free_bits).
        cond: class conditioning (:class:`~genmodels.core.Conditioning`): a hierarchical CVAE for K > 0 classes
            (module docstring).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "latent_dims": (1, 4096), "len(latent_dims)": (1, 16), "latent_hidden": (1, 4096)}

    latent_dims: tuple[int, ...] = (32, 16)
    inference: Literal["top_down", "bottom_up"] = "bottom_up"
    latent_hidden: int = 256
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        if not self.latent_dims or min(self.latent_dims) < 1:
            raise ValueError(f"latent_dims must be a non-empty list of sizes ≥ 1, got {self.latent_dims}")
        if self.inference not in ("top_down", "bottom_up"):
            raise ValueError(f"inference must be 'top_down' or 'bottom_up', got {self.inference!r}")
        if self.latent_hidden < 1:
            raise ValueError(f"latent_hidden must be ≥ 1, got {self.latent_hidden}")
        super().__post_init__()


def _soft_clamp(v: Tensor) -> Tensor:
    return LOGVAR_BOUND * torch.tanh(v / LOGVAR_BOUND)


def _cat(z: Tensor, context: Tensor | None) -> Tensor:
    """[z, e(y)] along the features, or z for an unconditional model."""
    return z if context is None else torch.cat([z, context.to(z.dtype)], -1)


def _gauss(params: Tensor) -> tuple[Tensor, Tensor]:
    mu, logvar = params.chunk(2, dim=-1)
    return mu, _soft_clamp(logvar)


class HVAE(LatentVariableModel):
    """Hierarchical VAE with ``len(latent_dims)`` stochastic layers; see the module docstring.

    Args:
        config: :class:`HVAEConfig`. spec: the data it models.
    Raises:
        ValueError: if the decoder distribution does not fit the data, or ``conv`` is asked for vectors.
    """

    description = "hierarchical VAE, Markovian latent layers with top-down inference (LVAE/NVAE style)"

    def __init__(self, config: HVAEConfig, spec: DataSpec):
        super().__init__()
        self._init_common(config, spec)
        dims, hid = tuple(config.latent_dims), config.latent_hidden
        self.latent_dims = dims
        n = len(dims)
        act = nn.SiLU
        e = self.label_dim  # width of e(y); 0 for an unconditional model
        self.encoder = make_encoder(spec.event_shape, config.coder, e)
        feat = self.encoder.features
        self.decoder = make_decoder(dims[0] + e, spec.event_shape, L.params_per_dim(self.likelihood), config.coder)
        # generative path: p(z_l | z_{l+1}) for l = 1..L−1 (index l−1): hidden state g_l, then (μ, log σ²)
        self.prior_hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(dims[l + 1], hid), act(), nn.Linear(hid, hid), act()) for l in range(n - 1))
        self.prior_head = nn.ModuleList(nn.Linear(hid, 2 * dims[l]) for l in range(n - 1))
        if config.inference == "bottom_up":
            # q(z_1 | x) from the encoder, q(z_{l+1} | z_l) from an MLP on z_l
            self.q_first = nn.Linear(feat, 2 * dims[0])
            self.q_up = nn.ModuleList(  # q(z_{l+1} | z_l[, y]): e(y) beside z_l
                nn.Sequential(nn.Linear(dims[l] + e, hid), act(), nn.Linear(hid, hid), act(),
                              nn.Linear(hid, 2 * dims[l + 1]))
                for l in range(n - 1))
        else:
            # deterministic bottom-up features h_1 … h_L; q(z_L | h_L); residual q(z_l | g_l, h_l)
            sizes = [feat] + [hid] * (n - 1)
            self.h_up = nn.ModuleList(nn.Sequential(nn.Linear(sizes[l], hid), act()) for l in range(n - 1))
            self.q_top = nn.Linear(sizes[-1], 2 * dims[-1])
            self.q_residual = nn.ModuleList(nn.Linear(hid + sizes[l], 2 * dims[l]) for l in range(n - 1))
            for m in self.q_residual:  # start at q = p for the lower layers (NVAE's residual parameterization)
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        if self.num_classes is not None:  # p(z_L | y) = N(μ_y, diag σ²_y), per class, from N(0, I)
            self.top_prior_params = nn.Embedding(self.num_label_embeddings, 2 * dims[-1])
            nn.init.zeros_(self.top_prior_params.weight)

    # ------------------------------------------------------------------ pieces
    def prior(self, z_above: Tensor, l: int) -> tuple[Tensor, Tensor, Tensor]:
        """p(z_l | z_{l+1}) for layer index ``l`` (0 = z_1): (μ, log σ², hidden state g), each ``[N, ·]``."""
        g = self.prior_hidden[l](z_above)
        mu, logvar = _gauss(self.prior_head[l](g))
        return mu, logvar, g

    def top_prior(self, y: Tensor | None, n: int) -> tuple[Tensor, Tensor] | None:
        """A conditional model's p(z_L | y) = N(μ_y, diag σ²_y): (μ_y, log σ²_y), each ``[n, d_L]`` (y None: the
        null label); None for an unconditional model (p(z_L) = N(0, I))."""
        y = self.labels_or_null(y, n)
        return None if y is None else _gauss(self.top_prior_params(y))

    def _features(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        h = [self._encode(x, context)]
        for f in self.h_up:
            h.append(f(h[-1]))
        return h

    # ------------------------------------------------------------------ LatentVariableModel
    def latent_pass(self, x: Tensor, samples: int = 1, generator: torch.Generator | None = None,
                    y: Tensor | None = None) -> LatentPass:
        """S = ``samples`` draws of (z_1 … z_L) per example from q; the encoder runs once per example. See
        :class:`~genmodels.vae.vae.LatentPass`; ``kl`` is bottom first. A conditional model (``y`` ``[B]``, None:
        the null label) infers q(· | x, y), decodes p(x | z_1, y) and takes the top KL against p(z_L | y)."""
        S, B, n = samples, len(x), len(self.latent_dims)
        rep = lambda t: t.expand(S, *t.shape).flatten(0, 1)  # noqa: E731  [B, ·] -> [S·B, ·]
        y = self.labels_or_null(y, B)
        context = self.label_context(y, B)  # [B, LABEL_DIM] or None
        ctx = None if context is None else rep(context)  # [S·B, LABEL_DIM]
        top = self.top_prior(y, B)
        top = None if top is None else tuple(rep(t) for t in top)  # (μ_y, log σ²_y), each [S·B, d_L]
        kl: list[Tensor] = [None] * n  # type: ignore[list-item]
        log_ratio = torch.zeros(S * B, device=x.device, dtype=x.dtype)
        zs: list[Tensor] = [None] * n  # type: ignore[list-item]
        if self.config.inference == "bottom_up":
            q = [_gauss(rep(self.q_first(self._encode(x, context))))]
            zs[0] = L.reparameterize(*q[0], generator)
            for l in range(n - 1):
                q.append(_gauss(self.q_up[l](_cat(zs[l], ctx))))
                zs[l + 1] = L.reparameterize(*q[l + 1], generator)
            for l in range(n):
                log_q = normal_log_prob(zs[l], *q[l])
                if l == n - 1 and top is not None:
                    log_p = normal_log_prob(zs[l], *top)
                    kl[l] = normal_kl(*q[l], *top)  # KL(q ‖ p(z_L | y)), analytic given z_{L−1}
                elif l == n - 1:
                    log_p = normal_log_prob(zs[l], torch.zeros_like(zs[l]), torch.zeros_like(zs[l]))
                    kl[l] = standard_normal_kl(*q[l])  # analytic given z_{L−1}
                else:
                    mu_p, lv_p, _ = self.prior(zs[l + 1], l)
                    log_p = normal_log_prob(zs[l], mu_p, lv_p)
                    kl[l] = log_q - log_p  # single-sample Monte Carlo: z_{l+1} depends on z_l
                log_ratio = log_ratio + (log_p - log_q).sum(-1)
        else:
            h = [rep(t) for t in self._features(x, context)]
            mu_q, lv_q = _gauss(self.q_top(h[-1]))
            zs[-1] = L.reparameterize(mu_q, lv_q, generator)
            if top is None:
                kl[-1] = standard_normal_kl(mu_q, lv_q)
                log_ratio = (normal_log_prob(zs[-1], torch.zeros_like(mu_q), torch.zeros_like(mu_q))
                             - normal_log_prob(zs[-1], mu_q, lv_q)).sum(-1)
            else:  # KL(q(z_L | x, y) ‖ p(z_L | y))
                kl[-1] = normal_kl(mu_q, lv_q, *top)
                log_ratio = (normal_log_prob(zs[-1], *top) - normal_log_prob(zs[-1], mu_q, lv_q)).sum(-1)
            for l in range(n - 2, -1, -1):
                mu_p, lv_p, g = self.prior(zs[l + 1], l)
                d_mu, d_lv = self.q_residual[l](torch.cat([g, h[l]], -1)).chunk(2, dim=-1)
                mu_q, lv_q = mu_p + d_mu, _soft_clamp(lv_p + d_lv)
                zs[l] = L.reparameterize(mu_q, lv_q, generator)
                kl[l] = normal_kl(mu_q, lv_q, mu_p, lv_p)  # analytic given z_{l+1}
                log_ratio = log_ratio + (normal_log_prob(zs[l], mu_p, lv_p)
                                         - normal_log_prob(zs[l], mu_q, lv_q)).sum(-1)
        params = self._decode(zs[0], ctx)
        log_px = L.log_prob(params, rep(x), self.likelihood, self.spec).view(S, B)
        return LatentPass(log_px, [k.view(S, B, -1) for k in kl], log_ratio.view(S, B), params)

    def latent_means(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        """Posterior means of z_1 … z_L (bottom first), each layer conditioned on the means of the others (and on
        ``y`` ``[B]`` for a conditional model; None: the null label)."""
        n = len(self.latent_dims)
        context = self.label_context(y, len(x))
        if self.config.inference == "bottom_up":
            means = [_gauss(self.q_first(self._encode(x, context)))[0]]
            for l in range(n - 1):
                means.append(_gauss(self.q_up[l](_cat(means[-1], context)))[0])
            return means
        h = self._features(x, context)
        means = [_gauss(self.q_top(h[-1]))[0]]
        for l in range(n - 2, -1, -1):
            mu_p, _, g = self.prior(means[0], l)
            means.insert(0, mu_p + self.q_residual[l](torch.cat([g, h[l]], -1)).chunk(2, dim=-1)[0])
        return means

    def prior_sample(self, n: int, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Ancestral sampling z_L ~ N(0, I) (a conditional model's z_L ~ p(z_L | y), ``y`` ``[n]``, None: the null
        label), z_l ~ p(z_l | z_{l+1}); returns z_1, ``[n, d_1]``."""
        top = self.top_prior(y, n)
        if top is None:
            z = torch.randn(n, self.latent_dims[-1], generator=generator, device=self.device, dtype=self.dtype)
        else:
            z = L.reparameterize(*top, generator)
        for l in range(len(self.latent_dims) - 2, -1, -1):
            mu, logvar, _ = self.prior(z, l)
            z = L.reparameterize(mu, logvar, generator)
        return z
