"""``binary:NAME``: a fixed stochastically binarized copy of any discrete image dataset.

Each pixel with intensity p = k/(n_bins−1) becomes 1 with probability p, drawn once from NumPy's frozen legacy
stream ``RandomState(SPLIT_SEED)`` (train then test), so the binary dataset is the same on every machine: the
construction of the standard binarized MNIST (Salakhutdinov & Murray 2008; Larochelle & Murray 2011) on which
VAE/IWAE results are reported in nats per image. The result has ``n_bins = 2`` (values −1 and 1), so VAEs pick a
Bernoulli decoder and every family reports the NLL of the binary data.

    >>> from genmodels.data import load_dataset
    >>> load_dataset("binary:digits").spec.n_bins
    2
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from genmodels.data.base import DATASETS, SPLIT_SEED, DataError, Dataset, DatasetEntry, load_dataset, scale_discrete
from genmodels.data.examples import as_tensor

__all__ = ["load_binarized"]


def load_binarized(name: str, seed: int = 0) -> Dataset:
    """The dataset ``name`` binarized once with a fixed seed (module docstring).

    Args:
        name: a discrete image dataset (``mnist5k``, ``fashion-mnist``, ``digits``, ``idx:DIR``, …).
        seed: passed to the inner loader (toys only; they are rejected here).
    Returns:
        a :class:`Dataset` named ``binary:NAME`` with ``n_bins = 2`` and the inner dataset's labels, class count
        and class names.
    Raises:
        DataError: if ``name`` is continuous, or already binary.
    """
    inner = load_dataset(name, seed=seed)
    if not inner.spec.is_discrete:
        raise DataError(f"dataset 'binary:{name}': {name!r} is continuous; binarization needs discrete data "
                        f"(images with levels)")
    if inner.spec.n_bins == 2:
        raise DataError(f"dataset 'binary:{name}': {name!r} is already binary; use it as it is")
    rng = np.random.RandomState(SPLIT_SEED)
    splits = []
    for x in (inner.train, inner.test):
        p = ((as_tensor(x).numpy().astype(np.float64) + 1.0) / 2.0).clip(0.0, 1.0)
        splits.append(scale_discrete((rng.random_sample(p.shape) < p).astype(np.int64), 2))
    spec = replace(inner.spec, name=f"binary:{inner.spec.name}", n_bins=2)
    return Dataset(spec, splits[0], splits[1], inner.train_labels, inner.test_labels)


DATASETS.register("binary:", DatasetEntry(
    load_binarized, "any discrete image dataset, stochastically binarized once with a fixed seed (n_bins = 2)",
    pattern="binary:NAME", wraps=True))
