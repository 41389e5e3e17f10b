"""Sample quality: distances between a model's samples and held-out real data, beside their floor.

Images are compared in a feature space (:mod:`genmodels.metrics.features`: a classifier trained on the
dataset's own train split, or Inception v3 where the user has its weights); vector data (the 2-D
toys) is compared directly. The reference is the test split. Every score comes with its **floor**:
the same metric for as many train examples in the samples' place, so the sample-size bias is the
same; a model is as good as real data when its score reaches the floor (:func:`sample_quality`). The floor is a
reference, not a lower bound: it is itself an estimate from finitely many examples, and a model's samples can score
below it by chance (an NCSN on a 2-D toy scored 0.125 against a floor of 0.189); the keys keep the name ``*_floor``
for compatibility.

| metric | function | source |
|---|---|---|
| Fréchet distance ``‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½)`` | :func:`frechet_distance` | Heusel et al. 2017 (FID) |
| kernel distance: unbiased MMD², cubic polynomial kernel | :func:`kernel_distance` | Bińkowski et al. 2018 (KID) |
| precision, recall: k-NN manifold estimates | :func:`precision_recall` | Kynkäänniemi et al. 2019 |
| sliced Wasserstein ``SW_p`` over random directions | :func:`sliced_wasserstein` | Bonneel et al. 2015; Kolouri et al. 2019 |
| exact Wasserstein ``W_p`` (optimal transport, network simplex) | :func:`wasserstein_distance` | POT ``ot.emd2`` (Flamary et al. 2021) |
| MMD² with a Gaussian (RBF) kernel, unbiased | :func:`maximum_mean_discrepancy` | Gretton et al. 2012, Lemma 6 |

The Fréchet and kernel distances are computed by torchmetrics (``FrechetInceptionDistance``,
``KernelInceptionDistance``) given a pass-through "feature extractor" (:class:`_Precomputed`): the
features are computed here once, in batches, and reused by all metrics and the floor (the real ones
are cached on disk), instead of torchmetrics running the network once per metric. Torchmetrics
accumulates the means and covariances in float64 (:func:`frechet_distance` hands it float64
features): the matrix square root of the Fréchet distance loses precision quickly in float32.
"""  # noqa: E501  (markdown table rows: a wrapped row would break the table)

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import Dataset, load_dataset, unscale_discrete
from .features import dataset_features, feature_extractor

__all__ = [
    "MMD_BANDWIDTHS",
    "frechet_distance",
    "kernel_distance",
    "precision_recall",
    "sliced_wasserstein",
    "wasserstein_distance",
    "maximum_mean_discrepancy",
    "sample_quality",
]

MMD_BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Default RBF bandwidths σ of :func:`maximum_mean_discrepancy`, in data units. Fixed (not the median
heuristic) so that scores of different models share one kernel; the 2-D toys have unit variance per
coordinate, and the list spans the scale of their finest structure (8gaussians' σ ≈ 0.17) to the
whole distribution."""

INCEPTION_N_REAL = 10_000
"""Default number of real images with Inception features (about 0.1 s per image on a CPU)."""

Progress = Callable[[Iterable], Iterable]


def _generator(generator: torch.Generator | None) -> torch.Generator:
    """The given generator, or a fresh one with seed 0 (results are reproducible by default)."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (), generator=generator))


def _check_points(name: str, x: Tensor, min_rows: int = 2) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [N, D] tensor, got {shape}")
    if len(x) < min_rows:
        raise ValueError(f"{name} has {len(x)} rows; at least {min_rows} are needed")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has {int((~torch.isfinite(x)).any(1).sum())} rows with NaN or infinite values")
    return x.detach().cpu().double()


def _check_pair(x: Tensor, y: Tensor, names: tuple[str, str], min_rows: int = 2) -> tuple[Tensor, Tensor]:
    x, y = _check_points(names[0], x, min_rows), _check_points(names[1], y, min_rows)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} have different dimensions: {x.shape[1]} and {y.shape[1]}")
    return x, y


def _subsample(x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` rows of ``x`` drawn without replacement (all of ``x``, in order, when ``n ≥ len(x)``)."""
    if n >= len(x):
        return x[:]  # a tensor (a split held as levels is read here)
    return x[torch.randperm(len(x), generator=generator)[:n]]


# ----------------------------------------------------------------------------- feature-space metrics


class _Precomputed(nn.Module):
    """Pass-through "feature extractor" for torchmetrics: what it is given already are features.

    ``num_features`` spares torchmetrics its dummy forward on a random image of ``input_img_size``.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        """``[N, d]`` features, returned unchanged (torchmetrics calls the feature module on its inputs)."""
        return features


def frechet_distance(real_features: Tensor, fake_features: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features (FID without Inception).

    ``d² = ‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½)`` (Heusel et al. 2017; Dowson & Landau 1982),
    with the sample means and unbiased covariances, computed in float64 by torchmetrics'
    ``FrechetInceptionDistance`` (through a pass-through feature module). The estimate is biased
    upwards by O(d/N): compare values computed with the same numbers of examples.

    Args:
        real_features: ``[N, d]`` features of real data.
        fake_features: ``[M, d]`` features of samples.
    Returns:
        the squared distance ``d²``, in squared feature units (≥ 0 up to rounding, about 1e-10).
    Raises:
        ValueError: if a set is not ``[N, d]``, has fewer than 2 rows or non-finite values, or the
            dimensions differ.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check_pair(real_features, fake_features, ("real_features", "fake_features"))
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(real_features: Tensor, fake_features: Tensor, *, subsets: int = 100, subset_size: int = 1000,
                    degree: int = 3, generator: torch.Generator | None = None) -> tuple[float, float]:
    """Kernel distance (KID): unbiased MMD² with the kernel ``k(x, y) = (xᵀy / d + 1)³``, over subsets.

    Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4 (their unbiased MMD² estimator),
    computed by torchmetrics' ``KernelInceptionDistance`` (through a pass-through feature module): the
    mean and standard deviation over ``subsets`` random subsets of ``subset_size`` real and fake rows.
    Unbiased, so it can be slightly negative and it barely depends on the number of examples; rows
    shared by both sets enter the cross term with ``k(x, x)``, so a set against itself scores about
    ``−(2/n)(mean k(x, x) − mean k(x, y))`` rather than exactly 0.

    Torchmetrics draws the subsets with the global torch RNG; it is forked and seeded from
    ``generator`` around the call, so the result is deterministic and the caller's RNG untouched.

    Args:
        real_features: ``[N, d]`` features of real data.
        fake_features: ``[M, d]`` features of samples.
        subsets: number of subsets averaged.
        subset_size: rows per subset, capped at ``min(N, M)``.
        degree: degree of the polynomial kernel.
        generator: source of the subsets (default: seed 0).
    Returns:
        ``(mean, std)`` of the MMD² estimates over the subsets, squared kernel units.
    Raises:
        ValueError: as :func:`frechet_distance`, or for ``subsets``, ``subset_size`` or ``degree`` < 1.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _check_pair(real_features, fake_features, ("real_features", "fake_features"))
    if subsets < 1 or subset_size < 1 or degree < 1:
        raise ValueError(f"subsets, subset_size and degree must be positive, got {subsets}, {subset_size}, {degree}")
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features in buffer": these are features
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size,
                                         degree=degree)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(_generator(generator)))
        mean, std = metric.compute()
    return float(mean), float(std)


def _pairwise_distances(a: Tensor, b: Tensor) -> Tensor:
    return torch.cdist(a, b).clamp_min_(0)  # [len(a), len(b)] Euclidean, float64


def _knn_radii(x: Tensor, k: int, batch_size: int) -> Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row: ``[N]``."""
    return torch.cat([_pairwise_distances(xb, x).kthvalue(k + 1, dim=1).values  # k+1: the row itself is at 0
                      for xb in x.split(batch_size)])


def _in_manifold(query: Tensor, support: Tensor, radii: Tensor, batch_size: int) -> Tensor:
    """``[Q]`` bool: whether each query row lies in some ball ``B(support_i, radii_i)``."""
    return torch.cat([(_pairwise_distances(qb, support) <= radii).any(dim=1) for qb in query.split(batch_size)])


def precision_recall(real_features: Tensor, fake_features: Tensor, *, k: int = 3,
                     batch_size: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) from k-NN manifold estimates.

    Each set's manifold is the union of balls around its points with radius the distance to the
    k-th nearest neighbour in the same set. Precision is the fraction of fake points inside the
    real manifold (sample quality); recall the fraction of real points inside the fake manifold
    (coverage). Both sets should have the same size, since the radii shrink as a set grows (the paper
    uses 50 000 each). Distances are Euclidean, in float64, computed in row batches.

    Args:
        real_features: ``[N, d]``.
        fake_features: ``[M, d]``.
        k: neighbour defining the radii (the paper's default 3).
        batch_size: rows per distance block (memory ``batch_size · max(N, M)`` float64).
    Returns:
        ``(precision, recall)``, each in [0, 1]; both 1 for a set against itself.
    Raises:
        ValueError: as :func:`frechet_distance`, or if a set has ``k`` rows or fewer.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    real, fake = _check_pair(real_features, fake_features, ("real_features", "fake_features"), min_rows=k + 1)
    real_radii, fake_radii = _knn_radii(real, k, batch_size), _knn_radii(fake, k, batch_size)
    precision = _in_manifold(fake, real, real_radii, batch_size).double().mean()
    recall = _in_manifold(real, fake, fake_radii, batch_size).double().mean()
    return float(precision), float(recall)


# ----------------------------------------------------------------------------- distances on vector data


def _wasserstein_1d_pow(u: Tensor, v: Tensor, p: float) -> Tensor:
    """``W_p^p`` between uniform empirical measures on the rows of sorted ``u [L, n]`` and ``v [L, m]``.

    ``W_p^p = ∫₀¹ |F⁻¹(t) − G⁻¹(t)|^p dt`` exactly: the quantile functions are step functions, constant
    between consecutive breakpoints ``{i/n} ∪ {j/m}``; each interval is read at its midpoint.
    """
    n, m = u.shape[1], v.shape[1]
    if n == m:
        return (u - v).abs().pow(p).mean(dim=1)
    t = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                   torch.arange(1, m + 1, dtype=torch.float64) / m]).sort().values  # [n+m] breakpoints
    width = torch.diff(t, prepend=t.new_zeros(1))  # [n+m] interval lengths (some 0)
    mid = t - width / 2
    iu = (mid * n).floor().long().clamp_(max=n - 1)
    iv = (mid * m).floor().long().clamp_(max=m - 1)
    return ((u[:, iu] - v[:, iv]).abs().pow(p) * width).sum(dim=1)


def sliced_wasserstein(x: Tensor, y: Tensor, *, n_projections: int = 1000, p: float = 2.0,
                       projections: Tensor | None = None, generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein distance ``SW_p = (E_θ W_p^p(θᵀx, θᵀy))^{1/p}`` over random unit directions θ.

    Bonneel et al. 2015, "Sliced and Radon Wasserstein barycenters of measures"; Kolouri et al.
    2019, "Generalized sliced Wasserstein distances". The expectation over the uniform distribution
    on the sphere is a Monte Carlo mean over ``n_projections`` directions; each 1-D distance between
    the empirical measures is exact (sorted projections; different set sizes are allowed).

    Args:
        x: ``[N, D]`` points.
        y: ``[M, D]`` points.
        n_projections: number of directions L (ignored when ``projections`` is given).
        p: order, ≥ 1.
        projections: optional ``[L, D]`` directions (normalized here); drawn from ``generator`` when None.
        generator: source of the directions (default: seed 0).
    Returns:
        ``SW_p`` in data units.
    Raises:
        ValueError: for bad shapes, non-finite values, ``p < 1`` or ``n_projections < 1``.
    """
    x, y = _check_pair(x, y, ("x", "y"), min_rows=1)
    if p < 1 or n_projections < 1:
        raise ValueError(f"need p ≥ 1 and n_projections ≥ 1, got p={p}, n_projections={n_projections}")
    if projections is None:
        projections = torch.randn(n_projections, x.shape[1], generator=_generator(generator), dtype=torch.float64)
    theta = projections.detach().cpu().double()
    if theta.dim() != 2 or theta.shape[1] != x.shape[1]:
        raise ValueError(f"projections must be [L, {x.shape[1]}], got {list(theta.shape)}")
    theta = theta / theta.norm(dim=1, keepdim=True)  # [L, D] on the unit sphere
    total = x.new_zeros(())
    for th in theta.split(100):
        total += _wasserstein_1d_pow((th @ x.T).sort(dim=1).values, (th @ y.T).sort(dim=1).values, p).sum()
    return float((total / len(theta)) ** (1 / p))


def wasserstein_distance(x: Tensor, y: Tensor, *, p: float = 2.0, max_samples: int = 1000,
                         generator: torch.Generator | None = None) -> float:
    """Exact Wasserstein distance ``W_p`` between equal-size subsamples, by optimal transport.

    Both sets are subsampled without replacement to ``n = min(N, M, max_samples)`` rows (all rows,
    unchanged, when they already have that size), and ``W_p^p = min_π Σ π_ij ‖x_i − y_j‖^p`` over
    couplings of the two uniform measures is solved exactly by POT's network simplex (``ot.emd2``).
    Equal sizes make the optimum a permutation and the bias comparable across calls; the estimate
    is biased upwards for small ``n`` (the empirical measures themselves differ).

    Args:
        x: ``[N, D]`` points.
        y: ``[M, D]`` points.
        p: order, ≥ 1.
        max_samples: cap on n (the solver is roughly cubic in n: 0.1 s at 1000, seconds at 3000).
        generator: source of the subsamples (default: seed 0).
    Returns:
        ``W_p`` in data units.
    Raises:
        ValueError: for bad shapes, non-finite values or ``p < 1``.
        RuntimeError: if the solver stops before the optimum.
    """
    import ot

    x, y = _check_pair(x, y, ("x", "y"), min_rows=1)
    if p < 1:
        raise ValueError(f"p must be at least 1, got {p}")
    gen = _generator(generator)
    n = min(len(x), len(y), max_samples)
    xs, ys = _subsample(x, n, gen).numpy(), _subsample(y, n, gen).numpy()
    cost = ot.dist(xs, ys, metric="sqeuclidean") if p == 2 else ot.dist(xs, ys, metric="euclidean") ** p
    weights = np.full(n, 1.0 / n)
    value, log = ot.emd2(weights, weights, cost, numItermax=100 * n * n + 100_000, log=True)
    if log.get("warning"):
        raise RuntimeError(f"optimal transport did not converge: {log['warning']}")
    return float(max(value, 0.0) ** (1 / p))


def _median_bandwidth(z: Tensor, generator: torch.Generator) -> float:
    z = _subsample(z, 1000, generator)
    d = _pairwise_distances(z, z)
    d = d[torch.triu_indices(len(z), len(z), 1).unbind()]
    return float(d.median())


def _mean_kernel_sum(a: Tensor, b: Tensor, gamma: Tensor, batch_size: int = 256) -> Tensor:
    """``Σ_ij k(a_i, b_j)``, ``k = mean over σ of exp(−‖a − b‖²/(2σ²))``; ``gamma = 1/(2σ²)``, ``[S]``."""
    total = a.new_zeros(())
    for ab in a.split(batch_size):
        d2 = _pairwise_distances(ab, b).square()  # [B, M]
        total += torch.exp(-d2[..., None] * gamma).mean(dim=-1).sum()
    return total


def maximum_mean_discrepancy(x: Tensor, y: Tensor, *, bandwidths: Sequence[float] | str = MMD_BANDWIDTHS,
                             max_samples: int = 2000, generator: torch.Generator | None = None) -> float:
    """Unbiased MMD² with a Gaussian (RBF) kernel averaged over bandwidths (Gretton et al. 2012, Lemma 6).

    ``MMD²_u = Σ_{i≠j} k(x_i,x_j)/(N(N−1)) + Σ_{i≠j} k(y_i,y_j)/(M(M−1)) − 2 Σ_ij k(x_i,y_j)/(NM)`` with
    ``k(a, b) = mean_σ exp(−‖a − b‖²/(2σ²))``, a characteristic kernel, so the population MMD is 0 only
    for equal distributions. Unbiased: about 0 (either sign) for two samples of one distribution.

    Args:
        x: ``[N, D]`` points.
        y: ``[M, D]`` points.
        bandwidths: the σ's in data units, or ``"median"`` for one σ = the median pairwise distance of
            the pooled points (Gretton et al. 2012, Sec. 8; it changes with the samples, so scores of
            different models are not on one kernel).
        max_samples: each set is subsampled to at most this many rows (cost ∝ (N + M)², 0.2 s at 2000).
        generator: source of the subsamples (default: seed 0).
    Returns:
        ``MMD²_u`` (dimensionless; the kernel is at most 1).
    Raises:
        ValueError: for bad shapes, non-finite values, or non-positive bandwidths.
    """
    x, y = _check_pair(x, y, ("x", "y"))
    gen = _generator(generator)
    x, y = _subsample(x, max_samples, gen), _subsample(y, max_samples, gen)
    if isinstance(bandwidths, str):
        if bandwidths != "median":
            raise ValueError(f"bandwidths must be a list of positive numbers or 'median', got {bandwidths!r}")
        bandwidths = [_median_bandwidth(torch.cat([x, y]), gen)]
    sigma = torch.as_tensor(list(bandwidths), dtype=torch.float64)
    if sigma.numel() == 0 or not (sigma > 0).all():
        raise ValueError(f"bandwidths must be positive, got {list(bandwidths)}")
    gamma = 1 / (2 * sigma**2)  # [S]
    n, m = len(x), len(y)
    k_xx = (_mean_kernel_sum(x, x, gamma) - n) / (n * (n - 1))  # k(x, x) = 1 on the diagonal
    k_yy = (_mean_kernel_sum(y, y, gamma) - m) / (m * (m - 1))
    k_xy = _mean_kernel_sum(x, y, gamma) / (n * m)
    return float(k_xx + k_yy - 2 * k_xy)


# ----------------------------------------------------------------------------- the entry point


def _prepare_samples(samples: Tensor, ds: Dataset) -> Tensor:
    """Check ``[M, *event_shape]`` and finiteness; for discrete data clamp to the range and round to the
    ``n_bins`` levels, as the images would be when saved."""
    spec = ds.spec
    if not isinstance(samples, Tensor):
        raise ValueError(f"samples must be a tensor, got {type(samples).__name__}")
    if samples.dim() != 1 + len(spec.event_shape) or tuple(samples.shape[1:]) != tuple(spec.event_shape):
        raise ValueError(f"samples of {spec.name!r} must be [M, {', '.join(map(str, spec.event_shape))}], "
                         f"got {list(samples.shape)}")
    if len(samples) < 2:
        raise ValueError(f"at least 2 samples are needed, got {len(samples)}")
    x = samples.detach().cpu().float()
    bad = ~torch.isfinite(x).flatten(1).all(dim=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(x)} samples have NaN or infinite values")
    if spec.n_bins is not None:
        levels = unscale_discrete(x, spec.n_bins).float()  # clamps to [0, n_bins − 1]
        x = (2 * levels - (spec.n_bins - 1)) / (spec.n_bins - 1)  # = scale_discrete, bit for bit
    return x


def _inception_features(weights: str | Path) -> Callable[[Tensor], Tensor]:
    """Inception v3 pool features (2048-d) of ``[N, C, H, W]`` images on ``[−1, 1]``, via torchmetrics.

    The network is the one torchmetrics' ``FrechetInceptionDistance(feature=2048,
    feature_extractor_weights_path=weights)`` builds (torch-fidelity's port of the TF-slim FID
    Inception); images are mapped to uint8 (``round((x + 1)·127.5)``), grayscale repeated to RGB.
    """
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ImportError("FID with Inception weights needs torch-fidelity, which is not installed; install it "
                          "with `pip install genmodels[inception]` (or `pip install torch-fidelity`), or leave "
                          "inception_weights unset to use the dataset's own feature classifier")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file {path} not found; pass the path of torch-fidelity's "
                                f"pt_inception-2015-12-05-6726825d.pth")
    from torchmetrics.image.fid import FrechetInceptionDistance

    net = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path)).inception

    @torch.no_grad()
    def extract(x: Tensor, batch_size: int = 100) -> Tensor:
        """``[N, 2048]`` Inception pool features of images ``[N, C, H, W]`` on [−1, 1]."""
        out = []
        for xb in x.split(batch_size):
            u8 = ((xb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [B, C, H, W] in 0..255
            if u8.shape[1] == 1:
                u8 = u8.expand(-1, 3, -1, -1)  # grayscale → RGB
            out.append(net(u8).double())  # [B, 2048]
        return torch.cat(out)

    return extract


def _image_scores(ref: Tensor, f: Tensor, *, k: int, kid_subsets: int, kid_size: int, seed: int) -> dict[str, Any]:
    kid = kernel_distance(ref, f, subsets=kid_subsets, subset_size=kid_size,
                          generator=torch.Generator().manual_seed(seed))
    n = min(len(ref), len(f))  # equal sizes for the k-NN radii
    g = torch.Generator().manual_seed(seed + 1)
    precision, recall = precision_recall(_subsample(ref, n, g), _subsample(f, n, g), k=k)
    return {"fd": frechet_distance(ref, f), "kid": kid, "precision": precision, "recall": recall}


def _vector_scores(ref: Tensor, x: Tensor, *, n_projections: int, ot_samples: int, seed: int) -> dict[str, Any]:
    return {
        "sliced_w2": sliced_wasserstein(ref, x, n_projections=n_projections,
                                        generator=torch.Generator().manual_seed(seed)),
        "w2": wasserstein_distance(ref, x, max_samples=ot_samples, generator=torch.Generator().manual_seed(seed + 1)),
        "mmd2": maximum_mean_discrepancy(ref, x, generator=torch.Generator().manual_seed(seed + 2)),
    }


def _check_n_real(n: int, available: int, split: str) -> None:
    if not 2 <= n <= available:
        raise ValueError(f"n_real must be between 2 and the {available} examples of the {split} split, got {n}")


def sample_quality(samples: Tensor, dataset: str | Dataset, *, n_real: int | None = None,
                   generator: torch.Generator | None = None, inception_weights: str | Path | None = None,
                   k: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   n_projections: int = 1000, ot_samples: int = 1000,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Score samples against held-out real data, each score beside the floor that real data scores.

    The reference is ``n_real`` examples of the **test split** (default: all of it). The floor scores
    ``min(M, n_train)`` **train** examples in the samples' place, against the same reference, with
    the same random draws: what a model whose samples are as good as real data would get, at the
    same sample-size bias (exactly when ``M ≤ n_train``).

    Images (``digits``, ``mnist5k``, ``fashion-mnist``, in the features of their own classifier,
    :func:`~genmodels.metrics.features.feature_extractor`; or any images in Inception features with
    ``inception_weights``): Fréchet distance ``fd`` (Heusel et al. 2017), kernel distance ``kid``
    (Bińkowski et al. 2018), ``precision`` and ``recall`` (Kynkäänniemi et al. 2019; both sets cut to
    the same size). Samples of discrete data are first clamped and rounded to the ``n_bins`` levels,
    as when saved as images. The classifier is trained on the train split, yet it is not overfit
    enough to matter for the floor: on fashion-mnist (5000 vs 5000), FD train–test 0.47–0.56 against
    test–test 0.56 and train–train 0.51.

    Vector data (the 2-D toys; any ``(D,)`` events): ``sliced_w2`` (:func:`sliced_wasserstein`),
    ``w2`` (:func:`wasserstein_distance`), ``mmd2`` (:func:`maximum_mean_discrepancy`), in data units.

    Args:
        samples: ``[M, *event_shape]`` on the data scale (images on ``[−1, 1]``), M ≥ 2.
        dataset: a dataset name or a loaded :class:`~genmodels.data.Dataset`.
        n_real: number of reference test examples (a random subset); default all, but at most
            :data:`INCEPTION_N_REAL` with Inception.
        generator: source of every random choice (default: seed 0).
        inception_weights: path of torch-fidelity's ``pt_inception-2015-12-05-6726825d.pth``: use
            Inception v3 pool features (2048-d; torchmetrics' ``FrechetInceptionDistance(feature=2048,
            feature_extractor_weights_path=...)``; grayscale repeated to RGB, ``[−1, 1]`` mapped to
            uint8) instead of the classifier. Needs ``pip install genmodels[inception]``; slow on a CPU.
        k: neighbours of precision/recall.
        kid_subsets: subsets of KID.
        kid_subset_size: rows per KID subset (capped at the smallest set; score and floor share it).
        n_projections: directions of the sliced Wasserstein distance.
        ot_samples: subsample size of the exact Wasserstein distance.
        progress: optional wrapper of batch iterators (classifier training, feature extraction).
    Returns:
        a flat JSON-serializable dict. Scores: images ``fd`` (squared feature units), ``kid``
        (``(mean, std)`` over subsets), ``precision``, ``recall``; vector data ``sliced_w2``, ``w2``
        (data units), ``mmd2``. Each score ``s`` has its floor under ``s_floor``. Then ``dataset``,
        ``feature`` (``"classifier-v1"``, ``"inception-2048"`` or ``"data"``), ``classifier_version``
        and ``classifier_test_accuracy`` (None without a classifier), ``n_samples`` (M), ``n_real``
        (reference size), ``floor_n`` (train examples in the floor), ``settings`` (the metrics'
        parameters) and ``seconds``.
    Raises:
        ValueError: if the samples do not match the dataset's event shape, have fewer than 2 rows
            or non-finite values; if ``n_real`` is not in [2, n_test]; for image data without a
            feature classifier and without ``inception_weights`` (the message names the supported
            datasets), and for data that is neither images nor vectors.
        ImportError: if ``inception_weights`` is given and torch-fidelity is not installed.
        FileNotFoundError: if the ``inception_weights`` file does not exist.
        genmodels.data.DataError: if the dataset cannot be loaded.
    """
    start = time.perf_counter()
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    spec = ds.spec
    if not (spec.is_image or len(spec.event_shape) == 1):
        raise ValueError(f"sample quality is defined for images (C, H, W) and vectors (D,); dataset "
                         f"{spec.name!r} has event shape {tuple(spec.event_shape)}")
    x = _prepare_samples(samples, ds)
    gen = _generator(generator)
    m = len(x)
    version = accuracy = None
    if spec.is_image and inception_weights is not None:
        extract = _inception_features(inception_weights)
        n_ref = min(ds.n_test, INCEPTION_N_REAL) if n_real is None else n_real
        _check_n_real(n_ref, ds.n_test, "test")
        ref, held, fake = extract(_subsample(ds.test, n_ref, gen)), extract(_subsample(ds.train, m, gen)), extract(x)
        feature = "inception-2048"
    elif spec.is_image:
        fe = feature_extractor(ds, progress=progress)
        train_f, test_f = dataset_features(ds, fe, progress=progress)
        n_ref = ds.n_test if n_real is None else n_real
        _check_n_real(n_ref, ds.n_test, "test")
        ref, held, fake = _subsample(test_f, n_ref, gen), _subsample(train_f, m, gen), fe.extract(x, progress=progress)
        feature, version, accuracy = f"classifier-v{fe.version}", fe.version, fe.test_accuracy
    else:
        n_ref = ds.n_test if n_real is None else n_real
        _check_n_real(n_ref, ds.n_test, "test")
        ref, held, fake = _subsample(ds.test, n_ref, gen), _subsample(ds.train, m, gen), x
        feature = "data"
    seed = _seed(gen)
    if spec.is_image:
        kid_size = min(kid_subset_size, m, len(held), len(ref))
        settings = {"k": k, "kid_subsets": kid_subsets, "kid_subset_size": kid_size, "kid_degree": 3,
                    "samples_rounded_to_levels": spec.n_bins is not None}
        scores = _image_scores(ref, fake, k=k, kid_subsets=kid_subsets, kid_size=kid_size, seed=seed)
        floor = _image_scores(ref, held, k=k, kid_subsets=kid_subsets, kid_size=kid_size, seed=seed)
    else:
        settings = {"n_projections": n_projections, "p": 2, "ot_samples": min(ot_samples, m, len(ref)),
                    "mmd_bandwidths": list(MMD_BANDWIDTHS), "mmd_max_samples": 2000}
        scores = _vector_scores(ref, fake, n_projections=n_projections, ot_samples=ot_samples, seed=seed)
        floor = _vector_scores(ref, held, n_projections=n_projections, ot_samples=ot_samples, seed=seed)
    out: dict[str, Any] = {}
    for name, value in scores.items():
        out[name], out[f"{name}_floor"] = value, floor[name]
    out.update(dataset=spec.name, feature=feature, classifier_version=version, classifier_test_accuracy=accuracy,
               n_samples=m, n_real=len(ref), floor_n=len(held), settings=settings,
               seconds=time.perf_counter() - start)
    return out
