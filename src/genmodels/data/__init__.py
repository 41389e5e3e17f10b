"""Datasets: a name resolves to train/test tensors plus a :class:`~genmodels.core.DataSpec`.

    >>> from genmodels.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.spec.event_shape, ds.spec.n_bins, ds.n_train, ds.n_test
    ((1, 8, 8), 17, 1497, 300)

Names (``list_datasets()``): embedded ``digits``, ``mnist5k``, ``fashion-mnist``
(:mod:`~genmodels.data.embedded`); the user's files ``idx:DIR``, ``folder:DIR``, ``npz:FILE``
(:mod:`~genmodels.data.files`) and 1-D series ``npz:FILE?layout=sequence``, ``wav:DIR``
(:mod:`~genmodels.data.sequences`); ``binary:NAME``, a fixed binarized copy of a discrete image dataset
(:mod:`~genmodels.data.binarized`); ``speech``, espeak-ng sentences as μ-law audio, event ``(1, 2048)``
(:mod:`~genmodels.data.speech`); 2-D toys ``moons``, ``swissroll``, ``8gaussians``, ``checkerboard``
(:mod:`~genmodels.data.toys`). Every bad input raises :class:`DataError` naming the file and the fix.
Labelled data (``digits``, ``mnist5k``, ``fashion-mnist``, ``folder:DIR`` with one subfolder per class, ``npz:``
with ``y``, IDX label files, ``moons``, ``8gaussians``) has ``DataSpec.num_classes`` and, where known,
``class_names``.
A prefixed name takes ``?key=value&…`` options (``folder:faces?alpha=keep``); a run stores its data as
:func:`resolve_source` gives it, with a :class:`DataFingerprint`.
"""

from genmodels.data.base import (
    DATASETS,
    SPLIT_SEED,
    DataError,
    DataFingerprint,
    DataOption,
    Dataset,
    DatasetEntry,
    holdout_split,
    list_datasets,
    load_dataset,
    parse_options,
    resolve_source,
    scale_discrete,
    source_location,
    unscale_discrete,
)
from genmodels.data.binarized import load_binarized
from genmodels.data.embedded import load_digits, load_fashion_mnist, load_mnist5k
from genmodels.data.files import load_idx_dir, load_image_folder, load_npz, read_idx
from genmodels.data.sequences import Quantization, fit_quantization, load_wav_folder
from genmodels.data.speech import load_speech, mu_law_decode, mu_law_encode, save_wav
from genmodels.data.toys import TOYS, load_toy, sample_toy, toy_has_density, toy_log_density

__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "DataError",
    "Dataset",
    "DatasetEntry",
    "DataOption",
    "DataFingerprint",
    "parse_options",
    "resolve_source",
    "source_location",
    "holdout_split",
    "list_datasets",
    "load_dataset",
    "scale_discrete",
    "unscale_discrete",
    "load_binarized",
    "load_digits",
    "load_mnist5k",
    "load_fashion_mnist",
    "read_idx",
    "load_speech",
    "mu_law_encode",
    "mu_law_decode",
    "save_wav",
    "load_idx_dir",
    "load_image_folder",
    "load_npz",
    "Quantization",
    "fit_quantization",
    "load_wav_folder",
    "TOYS",
    "load_toy",
    "sample_toy",
    "toy_has_density",
    "toy_log_density",
]
