"""A feature space for sample quality: a small CNN classifier trained on a dataset's own train split.

FID (Heusel et al. 2017) measures distances in the pool layer of an ImageNet Inception network. For
8×8 digits or 28×28 grayscale clothing that network sees images far from its training data, and its
weights cannot be downloaded at run time here; the common substitute (e.g. the "MNIST FID" of many
papers) is a classifier trained on the dataset itself, whose penultimate layer is the feature space.
This module trains one per dataset, once, with a fixed seed, and caches it.

Architecture (:class:`ConvClassifier`): ``len(widths)`` blocks of conv 3×3 → BatchNorm → ReLU →
max-pool 2×2, then ``Linear → BatchNorm1d`` to ``num_features`` = 128 dimensions (**the features**),
then ``ReLU → Linear`` to the class logits. The features are taken *before* the ReLU:

- the Fréchet distance fits a Gaussian to the features; after a ReLU about half of each coordinate's
  mass sits exactly at 0 (a point mass, not Gaussian) and dead units give zero-variance coordinates,
  while the pre-activation is a linear map of the conv features with a smooth, full-rank distribution;
- it carries the same information (the ReLU is applied after it), and the BatchNorm (in eval mode, with
  its running statistics) puts every coordinate on a unit scale, so that no few coordinates dominate
  the Euclidean k-NN distances of precision/recall or the trace of the Fréchet distance.

Cache. ``$GENMODELS_CACHE`` (default ``~/.cache/genmodels``) / ``metrics`` / holds, per dataset,
``{dataset}-classifier-v{CLASSIFIER_VERSION}-{fingerprint[:12]}.safetensors`` (weights) and a ``.json``
beside it (version, dataset, data fingerprint, test accuracy, training time, settings), and
``{dataset}-features-v{...}-{...}.safetensors`` (the features of the train and test splits). The
version is bumped whenever the architecture or the training changes, and the fingerprint is the
SHA-256 of the dataset's tensors, so a stale or foreign cache is never read. Files are written
atomically; the JSON is written last and marks a complete entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from ..data import Dataset, load_dataset
from ..fileio import atomic_write_bytes, atomic_write_text

__all__ = [
    "CLASSIFIER_VERSION",
    "CACHE_ENV",
    "ClassifierConfig",
    "CLASSIFIER_CONFIGS",
    "ConvClassifier",
    "FeatureExtractor",
    "cache_dir",
    "data_fingerprint",
    "dataset_features",
    "feature_extractor",
    "supported_datasets",
    "train_classifier",
]

logger = logging.getLogger(__name__)

CLASSIFIER_VERSION = "1"
"""Version of the classifier's architecture and training recipe; part of every cache file name."""

CACHE_ENV = "GENMODELS_CACHE"
"""Environment variable naming the cache root (default ``~/.cache/genmodels``)."""

Progress = Callable[[Iterable], Iterable]


@dataclass(frozen=True)
class ClassifierConfig:
    """How one dataset's feature classifier is built and trained (changing it means a new version).

    Attributes:
        widths: output channels of the conv blocks; each block halves H and W (max-pool 2×2).
        num_features: dimension d of the feature space (the penultimate layer).
        epochs: passes over the train split.
        batch_size: examples per Adam step.
        lr: peak learning rate of Adam (linear warm-up over the first 5% of steps, then cosine to 0).
        weight_decay: decoupled weight decay (AdamW).
        shift: random translation of each training image by up to ``shift`` pixels in each direction
            (background-filled); 0 for none. Cheap augmentation for the small datasets.
        seed: seed of the initialization, the batch order and the augmentation.
    """

    widths: tuple[int, ...] = (32, 64)
    num_features: int = 128
    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 0
    seed: int = 0


CLASSIFIER_CONFIGS: dict[str, ClassifierConfig] = {
    "digits": ClassifierConfig(epochs=10, lr=3e-3, shift=1),
    "mnist5k": ClassifierConfig(epochs=10, shift=2),
    "fashion-mnist": ClassifierConfig(epochs=3),
}
"""The datasets that have a feature classifier, and its recipe. Measured (version 1, one CPU thread
on a shared 2-core machine): digits 99.3% test accuracy in 2.2 s, mnist5k 98.5% in 27 s,
fashion-mnist 92.6% in 125–173 s. Training is deterministic (bitwise-equal weights on a rerun)."""


def supported_datasets() -> list[str]:
    """Names of the datasets with a feature classifier (sorted)."""
    return sorted(CLASSIFIER_CONFIGS)


def cache_dir() -> Path:
    """The folder of the classifier and feature caches: ``$GENMODELS_CACHE/metrics``, default
    ``~/.cache/genmodels/metrics`` (not created here)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "genmodels")
    return Path(root) / "metrics"


# ----------------------------------------------------------------------------- the network


class ConvClassifier(nn.Module):
    """Conv blocks → flatten → ``Linear → BatchNorm1d`` (features, ``[N, d]``) → ``ReLU → Linear`` (logits).

    Args:
        event_shape: ``(C, H, W)`` of the images.
        num_classes: number of classes.
        config: widths and feature dimension (the training fields are not used here).
    """

    def __init__(self, event_shape: tuple[int, int, int], num_classes: int, config: ClassifierConfig):
        super().__init__()
        c, h, w = event_shape
        layers: list[nn.Module] = []
        for width in config.widths:
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"images of shape {tuple(event_shape)} are too small for {len(config.widths)} "
                             f"pooling blocks")
        self.event_shape = tuple(event_shape)
        self.body = nn.Sequential(*layers, nn.Flatten(),  # [N, c·h·w]
                                  nn.Linear(c * h * w, config.num_features, bias=False),
                                  nn.BatchNorm1d(config.num_features))  # [N, d]: the features
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(config.num_features, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` on ``[−1, 1]`` → ``[N, d]`` penultimate pre-activations."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` → ``[N, num_classes]`` logits."""
        return self.head(self.body(x))


class FeatureExtractor(nn.Module):
    """A trained :class:`ConvClassifier` seen as a feature map ``[N, C, H, W]`` on ``[−1, 1]`` → ``[N, d]``.

    Always in eval mode (BatchNorm uses its running statistics; ``.train()`` is a no-op), so a
    feature never depends on the rest of its batch. Build one with :func:`feature_extractor`.

    Attributes:
        classifier: the network (``classifier(x)`` gives the class logits).
        dataset: name of the dataset it was trained on.
        version: :data:`CLASSIFIER_VERSION` of its recipe.
        num_features: d.
        test_accuracy: top-1 accuracy on the dataset's test split, in [0, 1].
        train_seconds: wall time its training took.
        fingerprint: :func:`data_fingerprint` of the data it was trained on.
        weights_sha256: SHA-256 of its safetensors file (identifies this training run).
    """

    def __init__(self, classifier: ConvClassifier, *, dataset: str, version: str, test_accuracy: float,
                 train_seconds: float, fingerprint: str, weights_sha256: str = ""):
        super().__init__()
        self.classifier = classifier
        self.dataset = dataset
        self.version = version
        self.num_features = int(classifier.body[-1].num_features)
        self.test_accuracy = float(test_accuracy)
        self.train_seconds = float(train_seconds)
        self.fingerprint = fingerprint
        self.weights_sha256 = weights_sha256
        super().train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stays in eval mode whatever ``mode`` is (the features are a fixed function)."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """Features of a batch.

        Args:
            x: ``[N, C, H, W]`` images on ``[−1, 1]`` (the dataset's event shape).
        Returns:
            ``[N, d]`` features, the dtype of the weights (float32).
        Raises:
            ValueError: if ``x`` does not have the event shape the classifier was trained on.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != self.classifier.event_shape:
            raise ValueError(f"the {self.dataset!r} feature classifier takes [N, "
                             f"{', '.join(map(str, self.classifier.event_shape))}] images, got {list(x.shape)}")
        return self.classifier.features(x)

    @torch.no_grad()
    def extract(self, x: Tensor, *, batch_size: int = 500, progress: Progress | None = None) -> Tensor:
        """Features of many images, in batches, without gradients.

        Args:
            x: ``[N, C, H, W]`` images on ``[−1, 1]``, on any device.
            batch_size: images per forward pass.
            progress: optional wrapper of the batch iterator (e.g. ``tqdm``).
        Returns:
            ``[N, d]`` float32 features on the CPU.
        """
        device = next(self.parameters()).device
        batches = x.split(batch_size)
        out = [self(xb.to(device, torch.float32)).float().cpu() for xb in (progress(batches) if progress else batches)]
        return torch.cat(out) if out else torch.empty(0, self.num_features)

    def extra_repr(self) -> str:
        """Dataset, version, feature size and test accuracy, for ``print(module)``."""
        return (f"dataset={self.dataset!r}, version={self.version!r}, num_features={self.num_features}, "
                f"test_accuracy={self.test_accuracy:.4f}")


# ----------------------------------------------------------------------------- training


def data_fingerprint(dataset: Dataset) -> str:
    """SHA-256 (hex) of a dataset's train and test tensors and labels (shapes, dtypes and bytes).

    Identifies the data a classifier was trained and tested on, so that a cache built on other data
    (another copy of Fashion-MNIST, a hand-built :class:`~genmodels.data.Dataset`) is never read.
    """
    h = hashlib.sha256()
    for t in (dataset.train, dataset.train_labels, dataset.test, dataset.test_labels):
        if t is None:
            h.update(b"none;")
            continue
        h.update(f"{t.dtype}{list(t.shape)};".encode())
        for i in range(0, len(t), 8192):  # the values as read (uint8 levels are scaled): the same digest either way
            h.update(t[i:i + 8192].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _random_shift(x: Tensor, shift: int, background: float, generator: torch.Generator) -> Tensor:
    """Translate each image of ``[N, C, H, W]`` by integers in ``[−shift, shift]`` (per axis), filling with
    ``background``: pad, then take one random crop per image by advanced indexing."""
    n, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=background)  # [N, C, H+2s, W+2s]
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n)[:, None, None, None]
    chan = torch.arange(c)[None, :, None, None]
    return padded[batch, chan, rows, cols]  # [N, C, H, W]


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    if len(x) == 0:
        return float("nan")
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum())
                  for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True))
    return correct / len(x)


def train_classifier(dataset: Dataset, config: ClassifierConfig, *, progress: Progress | None = None
                     ) -> tuple[ConvClassifier, float, float]:
    """Train a :class:`ConvClassifier` on ``dataset.train`` with cross-entropy and AdamW.

    Deterministic given ``config.seed`` on a given machine and thread count (the global torch RNG
    is forked, so the caller's random state is untouched).

    Args:
        dataset: an image dataset with labels.
        config: the recipe.
        progress: optional wrapper of the iterator over all training steps (e.g. ``tqdm``).
    Returns:
        ``(classifier in eval mode, test accuracy in [0, 1], training seconds)``.
    Raises:
        ValueError: if the dataset has no labels or is not image data.
    """
    spec = dataset.spec
    if not spec.is_image or dataset.train_labels is None:
        raise ValueError(f"dataset {spec.name!r} needs labelled (C, H, W) images to train a classifier")
    x, y = dataset.train, dataset.train_labels
    num_classes = _num_classes(dataset)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ConvClassifier(spec.event_shape, num_classes, config)
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total = config.epochs * steps_per_epoch
    warmup = max(1, total // 20)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def lr_factor(step: int) -> float:
        """Learning-rate multiplier at ``step``: linear warm-up, then cosine to 0."""
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    background = spec.value_range[0]  # the fill of shifted images
    batches = [idx for _ in range(config.epochs)
               for idx in torch.randperm(len(x), generator=gen).split(config.batch_size)]
    model.train()
    for idx in progress(batches) if progress else batches:
        xb, yb = x[idx], y[idx]
        if config.shift:
            xb = _random_shift(xb, config.shift, background, gen)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    seconds = time.perf_counter() - start
    accuracy = _accuracy(model, dataset.test, dataset.test_labels) if dataset.test_labels is not None else float("nan")
    return model, accuracy, seconds


# ----------------------------------------------------------------------------- the cache


def _resolve(dataset: str | Dataset) -> Dataset:
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    name = ds.spec.name
    if name not in CLASSIFIER_CONFIGS or not ds.spec.is_image:
        kind = ("image data" if ds.spec.is_image else f"vector data with event shape {tuple(ds.spec.event_shape)}")
        raise ValueError(
            f"no feature classifier for dataset {name!r} ({kind}); classifiers exist for "
            f"{', '.join(supported_datasets())}. For other image data pass "
            f"inception_weights=PATH (torch-fidelity's pt_inception-2015-12-05-6726825d.pth; needs "
            f"`pip install genmodels[inception]`) to genmodels.metrics.sample_quality; vector data "
            f"(2-D toys) is scored there with sliced Wasserstein, optimal transport and MMD instead.")
    if ds.train_labels is None:
        raise ValueError(f"dataset {name!r} has no labels; a feature classifier needs them")
    return ds


def _num_classes(ds: Dataset) -> int:
    labels = [ds.train_labels] + ([ds.test_labels] if ds.test_labels is not None and ds.n_test else [])
    return int(max(int(t.max()) for t in labels)) + 1


def _stem(name: str, kind: str, fingerprint: str) -> str:
    return f"{name}-{kind}-v{CLASSIFIER_VERSION}-{fingerprint[:12]}"


def feature_extractor(dataset: str | Dataset, *, train_if_missing: bool = True,
                      progress: Progress | None = None) -> FeatureExtractor:
    """The feature classifier of a dataset: loaded from the cache, or trained once and cached.

    Args:
        dataset: ``"digits"``, ``"mnist5k"`` or ``"fashion-mnist"`` (:func:`supported_datasets`), or a
            loaded :class:`~genmodels.data.Dataset` of one of them (saves loading it again).
        train_if_missing: train (seconds for ``digits``, about 1–3 minutes on one CPU thread for
            ``mnist5k`` and ``fashion-mnist``) when no cached classifier matches; else raise.
        progress: optional wrapper of the training-step iterator (e.g. ``tqdm``).
    Returns:
        a :class:`FeatureExtractor` on the CPU, in eval mode, ``[N, C, H, W]`` → ``[N, 128]``.
    Raises:
        ValueError: for a dataset without a classifier (toys, vector data, the user's own files);
            the message lists the supported ones and the alternatives (Inception weights for images).
        FileNotFoundError: if nothing is cached and ``train_if_missing`` is False.
        genmodels.data.DataError: if the dataset cannot be loaded.
    """
    ds = _resolve(dataset)
    name, config = ds.spec.name, CLASSIFIER_CONFIGS[ds.spec.name]
    fingerprint = data_fingerprint(ds)
    folder = cache_dir()
    weights, meta = folder / f"{_stem(name, 'classifier', fingerprint)}.safetensors", \
        folder / f"{_stem(name, 'classifier', fingerprint)}.json"
    num_classes = _num_classes(ds)
    if meta.is_file() and weights.is_file():
        info = json.loads(meta.read_text())
        if info.get("version") == CLASSIFIER_VERSION and info.get("data_sha256") == fingerprint:
            blob = weights.read_bytes()
            model = ConvClassifier(ds.spec.event_shape, num_classes, config)
            model.load_state_dict(load_safetensors(blob))
            logger.debug("loaded the %s feature classifier from %s", name, weights)
            return FeatureExtractor(model.eval(), dataset=name, version=CLASSIFIER_VERSION,
                                    test_accuracy=info["test_accuracy"], train_seconds=info["train_seconds"],
                                    fingerprint=fingerprint, weights_sha256=hashlib.sha256(blob).hexdigest())
        logger.warning("ignoring %s: it does not match version %s and the data", meta, CLASSIFIER_VERSION)
    if not train_if_missing:
        raise FileNotFoundError(f"no cached feature classifier for {name!r} (version {CLASSIFIER_VERSION}) at "
                                f"{weights}; call feature_extractor({name!r}) with train_if_missing=True to "
                                f"train it once, or set {CACHE_ENV} to the folder that holds it")
    logger.info("training the %s feature classifier (version %s, %d epochs); cached in %s",
                name, CLASSIFIER_VERSION, config.epochs, folder)
    model, accuracy, seconds = train_classifier(ds, config, progress=progress)
    logger.info("%s feature classifier: test accuracy %.4f, %.1f s", name, accuracy, seconds)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(state, metadata={"version": CLASSIFIER_VERSION, "dataset": name})
    atomic_write_bytes(weights, blob)
    info = {
        "version": CLASSIFIER_VERSION,
        "dataset": name,
        "data_sha256": fingerprint,
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "num_features": config.num_features,
        "n_train": ds.n_train,
        "n_test": ds.n_test,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(meta, json.dumps(info, indent=2) + "\n")  # last: marks a complete entry
    return FeatureExtractor(model, dataset=name, version=CLASSIFIER_VERSION, test_accuracy=accuracy,
                            train_seconds=seconds, fingerprint=fingerprint,
                            weights_sha256=hashlib.sha256(blob).hexdigest())


def dataset_features(dataset: str | Dataset, extractor: FeatureExtractor | None = None, *,
                     progress: Progress | None = None) -> tuple[Tensor, Tensor]:
    """Features of a dataset's train and test splits, computed once per classifier and cached.

    Args:
        dataset: a supported dataset name or loaded :class:`~genmodels.data.Dataset`.
        extractor: its :func:`feature_extractor` (loaded or trained when omitted).
        progress: optional wrapper of the batch iterator.
    Returns:
        ``(train [N, d], test [M, d])`` float32 features on the CPU.
    Raises:
        ValueError: as :func:`feature_extractor`, or if ``extractor`` belongs to other data.
    """
    ds = _resolve(dataset)
    fe = extractor if extractor is not None else feature_extractor(ds, progress=progress)
    fingerprint = data_fingerprint(ds)
    if fe.dataset != ds.spec.name or fe.fingerprint != fingerprint:
        raise ValueError(f"the feature extractor was trained on {fe.dataset!r} data with fingerprint "
                         f"{fe.fingerprint[:12]}, not on this {ds.spec.name!r} data ({fingerprint[:12]})")
    path = cache_dir() / f"{_stem(ds.spec.name, 'features', fingerprint)}.safetensors"
    if path.is_file() and fe.weights_sha256:
        with safe_open(path, framework="pt") as f:
            matches = (f.metadata() or {}).get("weights_sha256") == fe.weights_sha256
            if matches:
                return f.get_tensor("train"), f.get_tensor("test")
    train, test = fe.extract(ds.train, progress=progress), fe.extract(ds.test, progress=progress)
    if fe.weights_sha256:  # only features of a cached classifier are cached
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save_safetensors({"train": train, "test": test}, metadata={
            "version": CLASSIFIER_VERSION, "data_sha256": fingerprint, "weights_sha256": fe.weights_sha256}))
    return train, test
