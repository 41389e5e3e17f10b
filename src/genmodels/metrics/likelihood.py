"""NLL of a dataset split in bits/dim, with its standard error: the same report for every model family.

Each example's NLL (or bound, or estimate) comes from ``model.nll_terms``; the split's mean is reported
with the standard error of the mean over examples, ``std/√N``, which is honest for any per-example
estimator that is unbiased and independent across examples (the DDPM bound's stratified importance
sampling of steps is; see :meth:`genmodels.diffusion.ddpm.DDPM.nll_terms`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from ..core import GenerativeModel, nats_to_bpd

__all__ = ["NLLReport", "evaluate_nll"]


@dataclass
class NLLReport:
    """A split's NLL in bits/dim.

    Attributes:
        nll_kind: ``exact``, ``bound`` or ``estimate`` (the model's ``nll_kind``).
        bpd: mean NLL over the examples, bits/dim.
        bpd_stderr: its standard error (std over examples / √N), bits/dim.
        terms_bpd: the named parts of ``bpd`` (for DDPM ``prior`` = L_T, ``diffusion`` = Σ L_t,
            ``reconstruction`` = L_0), bits/dim; they sum to ``bpd``.
        examples: N, the number of examples evaluated.
        seconds: wall time of the evaluation.
        estimator: how the per-example values were computed (keyword arguments of ``nll_terms``).
    """

    nll_kind: str
    bpd: float
    bpd_stderr: float
    terms_bpd: dict[str, float]
    examples: int
    seconds: float
    estimator: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-serializable dict with the attributes as keys."""
        return asdict(self)


@torch.no_grad()
def evaluate_nll(model: GenerativeModel, x: Tensor, *, batch_size: int = 100,
                 generator: torch.Generator | None = None,
                 progress: Callable[[Iterable], Iterable] | None = None, **nll_kwargs: Any) -> NLLReport:
    """Mean NLL of ``x`` under ``model`` in bits/dim, with its standard error and parts.

    Args:
        model: any :class:`GenerativeModel`.
        x: ``[N, *event_shape]`` examples on the data scale.
        batch_size: examples per call to ``nll_terms`` (about 100 is fastest on CPU: measured 208 img/s at 100
            against 125 img/s at 500 for the 28×28 UNet, 2 threads).
        progress: optional wrapper of the batch iterator (e.g. ``tqdm``).
        **nll_kwargs: passed to ``model.nll_terms`` (e.g. ``t_samples``, ``proposal``, ``exact`` for DDPM).
    Raises:
        ValueError: if ``x`` is empty or the model returns non-finite values.
    """
    if len(x) == 0:
        raise ValueError("no examples to evaluate: the split is empty")
    model.eval()
    start = time.perf_counter()
    nll, terms = [], {}
    batches = x.split(batch_size)
    for xb in progress(batches) if progress else batches:
        out = model.nll_terms(xb.to(model.device), generator, **nll_kwargs)
        nll.append(out.nll.double().cpu())
        for k, v in out.terms.items():
            terms.setdefault(k, []).append(v.double().cpu())
    all_nll = torch.cat(nll)
    if not torch.isfinite(all_nll).all():
        raise ValueError(f"the model returned non-finite NLL for {int((~torch.isfinite(all_nll)).sum())} examples")
    n = len(all_nll)
    stderr = all_nll.std().item() / math.sqrt(n) if n > 1 else float("nan")
    estimator = {k: (v if isinstance(v, (int, float, bool, str)) else type(v).__name__) for k, v in nll_kwargs.items()}
    return NLLReport(
        nll_kind=model.nll_kind,
        bpd=float(nats_to_bpd(all_nll.mean().item(), model.spec)),
        bpd_stderr=float(nats_to_bpd(stderr, model.spec)),
        terms_bpd={k: float(nats_to_bpd(torch.cat(v).mean().item(), model.spec)) for k, v in terms.items()},
        examples=n,
        seconds=time.perf_counter() - start,
        estimator=estimator,
    )
