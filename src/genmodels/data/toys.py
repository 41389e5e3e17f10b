"""2-D toy distributions with known structure: ``moons``, ``swissroll``, ``8gaussians``, ``checkerboard``.

Each toy is continuous (``n_bins = None``), event ``(2,)``, 20000 train / 5000 test points drawn
i.i.d. from ``numpy.random.RandomState(seed)`` (a stream NumPy keeps frozen, NEP 19): 25000 points
are drawn at once, the first 20000 train, the rest test. ``value_range`` is the bounding box of the
drawn points (min, max over both coordinates).

Scaling (exact, not estimated from the sample). Each toy is defined in raw units (after FFJORD,
Grathwohl et al. 2019, and scikit-learn) and mapped to ``x = (raw − μ) / s`` with the closed-form
mean ``μ`` and one isotropic scale ``s = sqrt((Var raw_1 + Var raw_2) / 2)``, so every toy has mean
0 and mean per-coordinate variance exactly 1 (``E‖x‖² = 2``), and keeps its shape:

| toy | raw distribution | μ | per-coordinate variances |
|---|---|---|---|
| ``moons`` | ``t ~ U(0, π)``, moon ``b ~ Bernoulli(½)``: ``(cos t, sin t)`` or ``(1 − cos t, ½ − sin t)``, plus ``N(0, 0.1²)`` | ``(½, ¼)`` | ``¾ + σ²``, ``9/16 − 1/π + σ²`` |
| ``swissroll`` | ``t = 1.5π(1 + 2u)``, ``u ~ U(0, 1)``: ``(t cos t, t sin t)`` plus ``N(0, 0.5²)`` | ``(2, 2/(3π))`` | ``(9.75π² ∓ ½)/2 − μ_i² + σ²`` |
| ``8gaussians`` | already scaled: means at radius ``R = 8/√33``, angles ``kπ/4``; std ``σ = 1/√33`` | 0 | ``R²/2 + σ² = 1`` |
| ``checkerboard`` | already scaled: uniform on the 8 black squares (``⌊u₁⌋ + ⌊u₂⌋`` even) of a 4×4 board on ``[−2, 2]²``, times ``√3/2`` | 0 | ``1`` |

``8gaussians`` and ``checkerboard`` have closed-form densities (:func:`toy_log_density`), so the
true data log-likelihood can be reported next to a model's.
"""  # noqa: E501  (markdown table rows: a wrapped row would break the table)

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genmodels.core import DataSpec
from genmodels.data.base import DATASETS, DataError, Dataset, DatasetEntry, continuous_range
from genmodels.registry import Registry

__all__ = ["Toy", "TOYS", "N_TRAIN", "N_TEST", "sample_toy", "toy_log_density", "toy_has_density", "load_toy"]

N_TRAIN = 20000
"""Training points of every toy."""
N_TEST = 5000
"""Test points of every toy."""

Sampler = Callable[[np.random.RandomState, int], tuple[np.ndarray, np.ndarray | None]]
LogDensity = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Toy:
    """One 2-D toy distribution.

    Attributes:
        description: one line for ``genmodels datasets``.
        sample: ``sample(rng, n) -> (x [n, 2] float64 on the scaled axes, labels [n] int64 or None)``.
        log_density: ``log_density(x [B, 2] float64) -> [B]`` nats, or ``None`` when there is no
            closed form.
    """

    description: str
    sample: Sampler
    log_density: LogDensity | None = None


# ----------------------------------------------------------------------------- moons

_MOONS_NOISE = 0.1
_MOONS_MEAN = np.array([0.5, 0.25])
_MOONS_SCALE = math.sqrt(((0.75 + _MOONS_NOISE**2) + (9 / 16 - 1 / math.pi + _MOONS_NOISE**2)) / 2)


def _moons(rng: np.random.RandomState, n: int) -> tuple[np.ndarray, np.ndarray]:
    t = rng.uniform(0.0, math.pi, n)
    b = rng.randint(0, 2, n)  # 0: upper moon, 1: lower moon
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1)
    raw = np.where(b[:, None] == 0, upper, lower) + _MOONS_NOISE * rng.standard_normal((n, 2))
    return (raw - _MOONS_MEAN) / _MOONS_SCALE, b.astype(np.int64)


# ----------------------------------------------------------------------------- swiss roll

_SWISS_NOISE = 0.5
_SWISS_MEAN = np.array([2.0, 2.0 / (3 * math.pi)])  # E[t cos t], E[t sin t], t ~ U(1.5π, 4.5π)
_SWISS_ET2 = 9.75 * math.pi**2  # E[t²]; E[t² cos 2t] = −½
_SWISS_SCALE = math.sqrt((((_SWISS_ET2 - 0.5) / 2 - _SWISS_MEAN[0] ** 2)
                          + ((_SWISS_ET2 + 0.5) / 2 - _SWISS_MEAN[1] ** 2)) / 2 + _SWISS_NOISE**2)


def _swissroll(rng: np.random.RandomState, n: int) -> tuple[np.ndarray, None]:
    t = 1.5 * math.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
    raw = np.stack([t * np.cos(t), t * np.sin(t)], 1) + _SWISS_NOISE * rng.standard_normal((n, 2))
    return (raw - _SWISS_MEAN) / _SWISS_SCALE, None


# ----------------------------------------------------------------------------- 8 gaussians

_G8_RADIUS = 8 / math.sqrt(33)
_G8_STD = 1 / math.sqrt(33)
_G8_CENTERS = _G8_RADIUS * np.stack([np.cos(np.arange(8) * math.pi / 4),
                                     np.sin(np.arange(8) * math.pi / 4)], 1)  # [8, 2]


def _gaussians8(rng: np.random.RandomState, n: int) -> tuple[np.ndarray, np.ndarray]:
    k = rng.randint(0, 8, n)
    return _G8_CENTERS[k] + _G8_STD * rng.standard_normal((n, 2)), k.astype(np.int64)


def _gaussians8_log_density(x: np.ndarray) -> np.ndarray:
    """``log (1/8) Σ_k N(x; c_k, σ² I)``, ``[B, 2] -> [B]``."""
    sq = ((x[:, None, :] - _G8_CENTERS[None]) ** 2).sum(-1)  # [B, 8]
    log_n = -sq / (2 * _G8_STD**2) - math.log(2 * math.pi * _G8_STD**2)
    m = log_n.max(1, keepdims=True)
    return (m + np.log(np.exp(log_n - m).sum(1, keepdims=True)))[:, 0] - math.log(8)


# ----------------------------------------------------------------------------- checkerboard

_CB_SCALE = math.sqrt(3) / 2  # x = u · √3/2, u on [−2, 2]²
_CB_LOG_DENSITY = -math.log(8 * _CB_SCALE**2)  # 8 unit squares of u, area 6 in x


def _checkerboard(rng: np.random.RandomState, n: int) -> tuple[np.ndarray, None]:
    u1 = rng.uniform(-2.0, 2.0, n)
    row = 2 * rng.randint(0, 2, n) - 2 + np.mod(np.floor(u1), 2)  # ⌊u₁⌋ + row even
    u2 = row + rng.uniform(0.0, 1.0, n)
    return _CB_SCALE * np.stack([u1, u2], 1), None


def _checkerboard_log_density(x: np.ndarray) -> np.ndarray:
    """``−log 6`` on the black squares, ``−inf`` elsewhere; ``[B, 2] -> [B]``."""
    u = x / _CB_SCALE
    inside = np.all((u >= -2) & (u < 2), axis=1)
    black = np.mod(np.floor(u).sum(1), 2) == 0
    return np.where(inside & black, _CB_LOG_DENSITY, -np.inf)


TOYS: Registry[Toy] = Registry("toy")
"""Toy name -> :class:`Toy`."""
TOYS.register("moons", Toy("two interleaved half circles with Gaussian noise (2-D, continuous)", _moons))
TOYS.register("swissroll", Toy("a 2-D swiss roll spiral with Gaussian noise (continuous)", _swissroll))
TOYS.register("8gaussians", Toy("mixture of 8 Gaussians on a circle (2-D, continuous, known density)",
                                _gaussians8, _gaussians8_log_density))
TOYS.register("checkerboard", Toy("uniform on the black squares of a 4x4 board (2-D, known density)",
                                  _checkerboard, _checkerboard_log_density))


def _toy(name: str) -> Toy:
    if name not in TOYS:
        raise DataError(f"unknown toy dataset {name!r}; known toys: {', '.join(TOYS.names())}")
    return TOYS.get(name)


def sample_toy(name: str, n: int, *, seed: int = 0) -> Tensor:
    """Fresh i.i.d. points of a toy, on the scaled axes of the module docstring.

    Args:
        name: ``"moons"``, ``"swissroll"``, ``"8gaussians"`` or ``"checkerboard"``.
        n: number of points.
        seed: seed of ``numpy.random.RandomState``.
    Returns:
        ``[n, 2]`` float32.
    Raises:
        DataError: unknown toy name.
    """
    x, _ = _toy(name).sample(np.random.RandomState(seed), n)
    return torch.from_numpy(x.astype(np.float32))


def toy_has_density(name: str) -> bool:
    """True when :func:`toy_log_density` knows the toy's density in closed form.

    Raises:
        DataError: unknown toy name.
    """
    return _toy(name).log_density is not None


def toy_log_density(name: str, x: Tensor) -> Tensor:
    """The true log-density of a toy, on the scaled axes of the module docstring.

    ``8gaussians``: ``log (1/8) Σ_k N(x; c_k, σ² I)``, ``c_k`` at radius ``8/√33``, ``σ = 1/√33``.
    ``checkerboard``: ``−log 6`` on the 8 black squares (total area 6), ``−inf`` elsewhere.

    Args:
        name: the toy.
        x: ``[B, 2]`` points (any float dtype, any device).
    Returns:
        ``[B]`` log-density in nats, dtype and device of ``x`` (computed in float64).
    Raises:
        DataError: unknown toy name, or ``x`` not of shape ``[B, 2]``.
        NotImplementedError: for ``moons`` and ``swissroll``, whose densities (a curve convolved
            with Gaussian noise) have no closed form; check :func:`toy_has_density` first.
    """
    toy = _toy(name)
    if toy.log_density is None:
        raise NotImplementedError(f"toy {name!r} has no closed-form density (a curve blurred by "
                                  f"Gaussian noise); toys with one: "
                                  f"{', '.join(n for n in TOYS.names() if TOYS.get(n).log_density)}")
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"toy_log_density({name!r}) needs points of shape [B, 2], got {list(x.shape)}")
    lp = toy.log_density(x.detach().to("cpu", torch.float64).numpy())
    return torch.from_numpy(lp).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float64)


def load_toy(name: str, *, seed: int = 0) -> Dataset:
    """A toy as a :class:`~genmodels.data.base.Dataset`: 20000 train / 5000 test points.

    Args:
        name: the toy.
        seed: seed of ``numpy.random.RandomState``; the first ``N_TRAIN`` points train, the next
            ``N_TEST`` test.
    Returns:
        continuous dataset (``n_bins = None``), event ``(2,)``, float32; labels for ``moons``
        (which moon) and ``8gaussians`` (which component), else ``None``.
    Raises:
        DataError: unknown toy name.
    """
    x, y = _toy(name).sample(np.random.RandomState(seed), N_TRAIN + N_TEST)
    x = x.astype(np.float32)
    spec = DataSpec(name=name, event_shape=(2,), n_bins=None, value_range=continuous_range(x))
    train, test = torch.from_numpy(x[:N_TRAIN]), torch.from_numpy(x[N_TRAIN:])
    labels = (None, None) if y is None else (torch.from_numpy(y[:N_TRAIN]), torch.from_numpy(y[N_TRAIN:]))
    return Dataset(spec, train, test, *labels)


def _load_toy_entry(name: str, seed: int) -> Dataset:
    return load_toy(name, seed=seed)


for _name in TOYS.names():
    DATASETS.register(_name, DatasetEntry(_load_toy_entry, TOYS.get(_name).description))
