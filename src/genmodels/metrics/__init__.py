"""Evaluation: likelihood in bits/dim (:mod:`~genmodels.metrics.likelihood`: the model's own bound or exact
NLL, and the probability-flow ODE of a diffusion model), sample quality, and quality against NFE
(:mod:`~genmodels.metrics.nfe_sweep`).

Sample quality (:mod:`~genmodels.metrics.sample_quality`): :func:`sample_quality` scores samples
against held-out data beside the floor that real data scores; images in the feature space of a
classifier trained on the dataset (:mod:`~genmodels.metrics.features`), vectors (2-D toys) directly.
"""

from genmodels.metrics.features import (
    CACHE_ENV,
    CLASSIFIER_VERSION,
    FeatureExtractor,
    cache_dir,
    dataset_features,
    feature_extractor,
    supported_datasets,
)
from genmodels.metrics.likelihood import NLLReport, evaluate_nll, evaluate_ode_nll
from genmodels.metrics.nfe_sweep import SweepRow, nfe_sweep, sweep_table
from genmodels.metrics.sample_quality import (
    MMD_BANDWIDTHS,
    frechet_distance,
    kernel_distance,
    maximum_mean_discrepancy,
    precision_recall,
    sample_quality,
    sliced_wasserstein,
    wasserstein_distance,
)

__all__ = [
    "NLLReport",
    "evaluate_nll",
    "evaluate_ode_nll",
    "SweepRow",
    "nfe_sweep",
    "sweep_table",
    "CACHE_ENV",
    "CLASSIFIER_VERSION",
    "FeatureExtractor",
    "cache_dir",
    "dataset_features",
    "feature_extractor",
    "supported_datasets",
    "MMD_BANDWIDTHS",
    "frechet_distance",
    "kernel_distance",
    "maximum_mean_discrepancy",
    "precision_recall",
    "sample_quality",
    "sliced_wasserstein",
    "wasserstein_distance",
]
