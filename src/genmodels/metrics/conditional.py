"""A class-conditional model seen through its likelihood: −log p(x | y), −log p(x), and the generative classifier.

For a model of p(x | y) over K classes (:attr:`~genmodels.core.GenerativeModel.num_classes`) and a label prior p(y)
(the training split's label frequencies), :func:`class_nll_matrix` computes, for every example and every class k,
``−log p(x | k)`` in nats, and for the null label ∅ the network's own unconditional reading ``−log p(x | ∅)``.
From that matrix ``M`` (``[N, K + 1]``):

- the conditional NLL of the true labels, ``M[i, y_i]``;
- the marginal NLL, ``−log p(x) = −log Σ_k p(k) p(x | k) = −logsumexp_k(log p(k) − M[i, k])``. Where each
  ``M[i, k]`` is an upper bound (−ELBO), ``logsumexp`` of the bounds' negatives is a lower bound on
  ``log Σ_k p(k) p(x | k)``, so the result is still an upper bound on ``−log p(x)``;
- the generative classifier ``ŷ_i = argmax_k log p(k) − M[i, k]`` (Bayes' rule; for diffusion models Li et al.
  2023, "Your Diffusion Model is Secretly a Zero-Shot Classifier", Eq. 4–6), and its accuracy.

Every class of one example is scored with the **same** random numbers (the same timesteps and noise for a
diffusion bound, the same posterior noise for a VAE, the same dequantization for a flow): each batch's generator is
re-seeded identically for every class. The differences between classes — all that the classifier reads — then do
not carry the estimator's noise twice (Li et al. 2023, §3.2: "we use the same ε and t for every class").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..core import GenerativeModel, nats_to_bpd

__all__ = ["ConditionalReport", "class_nll_matrix", "conditional_report", "label_log_prior"]


def label_log_prior(labels: Tensor, num_classes: int) -> Tensor:
    """``[K]`` float64 ``log p(k)`` from the training labels' frequencies (each class counted at least once, so
    a class absent from the training labels keeps a finite, small prior)."""
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes)[:num_classes].double().clamp_min(1.0)
    return (counts / counts.sum()).log()


@torch.no_grad()
def class_nll_matrix(model: GenerativeModel, x: Tensor, *, batch_size: int = 100, seed: int = 0,
                     progress: Callable[[Iterable], Iterable] | None = None, **nll_kwargs: Any) -> Tensor:
    """``−log p(x | k)`` for every example and every class, and ``−log p(x | ∅)``, in nats.

    Args:
        model: a class-conditional model (``num_classes`` K).
        x: ``[N, *event_shape]`` examples on the data scale.
        batch_size: examples per ``nll_terms`` call.
        seed: batch ``b`` is scored with a generator seeded ``(seed, b)``, the same for every class (shared noise).
        progress: wraps the batch iterator.
        **nll_kwargs: passed to ``model.nll_terms`` (``model.nll_kwargs(options, …)``).
    Returns:
        ``[N, K + 1]`` float64 on the CPU: column k is class k, the last column the null label.
    Raises:
        ValueError: for an unconditional model, or non-finite values (naming how many).
    """
    if model.num_classes is None:
        raise ValueError(f"this {type(model).__name__} is unconditional: it has no p(x | y) to score by class "
                         f"(train it with --conditional)")
    model.eval()
    rows = []
    batches = list(x.split(batch_size))
    for b, xb in enumerate(progress(batches) if progress else batches):
        xb = xb.to(model.device)
        cols = []
        for k in range(model.num_classes + 1):
            g = torch.Generator(device=model.device).manual_seed(seed * 1_000_003 + b)
            y = torch.full((len(xb),), k, dtype=torch.long, device=model.device)
            cols.append(model.nll_terms(xb, g, y=y, **nll_kwargs).nll.double().cpu())
        rows.append(torch.stack(cols, dim=1))
    m = torch.cat(rows)
    bad = ~torch.isfinite(m)
    if bad.any():
        raise ValueError(f"the model returned non-finite NLL for {int(bad.any(dim=1).sum())} examples")
    return m


@dataclass
class ConditionalReport:
    """What a conditional model's class matrix says, in bits/dim and nats per example.

    Attributes:
        conditional_bpd: mean ``−log p(x | y)`` of the true labels; with ``conditional_bpd_stderr``.
        marginal_bpd: mean ``−log Σ_k p(k) p(x | k)``; with ``marginal_bpd_stderr``.
        null_bpd: mean ``−log p(x | ∅)``, the network's unconditional reading (label dropout); with its stderr.
        mutual_information_nats: mean of ``log p(x | y) − log p(x)`` (marginal), the information the label adds,
            ≤ H(y) ≤ log K for an exact model; with its standard error (paired: the same examples).
        accuracy: the generative classifier's top-1 accuracy on the examples (None without labels).
        confusion: ``[K][K]`` counts, true class by row, predicted class by column.
        examples: N. classes: K. seconds: wall time. estimator: the ``nll_kwargs`` and the shared-noise rule.
        per_example_conditional_nats, per_example_marginal_nats: ``[N]`` float64 (not in :meth:`to_json`).
    """

    conditional_bpd: float
    conditional_bpd_stderr: float
    marginal_bpd: float
    marginal_bpd_stderr: float
    null_bpd: float
    null_bpd_stderr: float
    mutual_information_nats: float
    mutual_information_nats_stderr: float
    accuracy: float | None
    confusion: list[list[int]]
    examples: int
    classes: int
    seconds: float
    estimator: dict[str, Any] = field(default_factory=dict)
    per_example_conditional_nats: Tensor | None = field(default=None, repr=False)
    per_example_marginal_nats: Tensor | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """A JSON-serializable dict without the per-example tensors."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("per_example")}


def _mean_se(v: Tensor) -> tuple[float, float]:
    """Mean and standard error (std/√N; NaN for one example) of a ``[N]`` tensor."""
    return v.mean().item(), (v.std().item() / math.sqrt(len(v)) if len(v) > 1 else float("nan"))


def conditional_report(matrix: Tensor, labels: Tensor, log_prior: Tensor, dim: int,
                       estimator: dict[str, Any] | None = None, seconds: float = 0.0) -> ConditionalReport:
    """Conditional, marginal and null NLL and the generative classifier from a :func:`class_nll_matrix`.

    Args:
        matrix: ``[N, K + 1]`` nats (the last column the null label). labels: ``[N]`` true classes.
        log_prior: ``[K]`` ``log p(k)`` (:func:`label_log_prior`). dim: D, for bits/dim.
    Returns:
        a :class:`ConditionalReport`.
    """
    n, k = matrix.shape[0], matrix.shape[1] - 1
    start = time.perf_counter()
    scores = log_prior.double()[None, :] - matrix[:, :k]  # log p(k) + log p(x | k)
    marginal = -torch.logsumexp(scores, dim=1)  # −log Σ_k p(k) p(x | k)
    labels = labels.long().cpu()
    conditional = matrix[torch.arange(n), labels]
    pred = scores.argmax(dim=1)
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    bpd = lambda v: float(nats_to_bpd(v, dim))  # noqa: E731
    c, c_se = _mean_se(conditional)
    m, m_se = _mean_se(marginal)
    z, z_se = _mean_se(matrix[:, k])
    mi, mi_se = _mean_se(marginal - conditional)
    return ConditionalReport(
        conditional_bpd=bpd(c), conditional_bpd_stderr=bpd(c_se), marginal_bpd=bpd(m), marginal_bpd_stderr=bpd(m_se),
        null_bpd=bpd(z), null_bpd_stderr=bpd(z_se), mutual_information_nats=mi,
        mutual_information_nats_stderr=mi_se, accuracy=(pred == labels).double().mean().item(),
        confusion=confusion.tolist(), examples=n, classes=k, seconds=seconds + time.perf_counter() - start,
        estimator={**(estimator or {}), "shared_noise_across_classes": True, "label_prior": "train frequencies"},
        per_example_conditional_nats=conditional, per_example_marginal_nats=marginal)
