"""Sample quality against the number of network evaluations (NFE) and wall time, for every sampler.

For each sampler and NFE budget the sweep draws ``n`` samples with the same seed, so every deterministic
sampler starts from the same x_T (common random numbers: the differences between rows are not sampling
noise of x_T), times them, and scores them with a quality function (e.g.
:func:`genmodels.metrics.sample_quality.sample_quality`). Samples are cached as ``.npz`` in ``cache_dir``
with their NFE and seconds, so an interrupted sweep resumes where it stopped and a metric can be re-run
without re-sampling.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..fileio import atomic_path

if TYPE_CHECKING:
    from ..core import GenerativeModel

__all__ = ["SweepRow", "nfe_sweep", "parse_sampler", "sweep_table"]


@dataclass
class SweepRow:
    """One (sampler, NFE budget) point of the sweep.

    Attributes:
        sampler: the sampler's name. nfe_budget: the requested NFE (``None`` for the adaptive ``ode``).
        steps: the sampler's ``steps`` (Heun: N levels, 2N − 1 NFE). nfe: the evaluations actually spent per
        sample. n: samples. seconds: wall time to draw them (0 if loaded from the cache and not re-timed).
        seconds_per_sample: ``seconds / n``. options: sampler options (``rtol``, …). quality: the metrics.
    """

    sampler: str
    nfe_budget: int | None
    steps: int | None
    nfe: int
    n: int
    seconds: float
    seconds_per_sample: float
    options: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-serializable dict with the attributes as keys."""
        return asdict(self)


def _cache_path(cache_dir: Path, sampler: str, tag: str, n: int, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in sampler.replace("+", "p"))
    return cache_dir / f"{safe}_{tag}_n{n}_seed{seed}.npz"


def parse_sampler(text: str) -> tuple[str, dict[str, float]]:
    """``'heun[s_churn=40,s_noise=1.003]'`` -> ``('heun', {'s_churn': 40.0, 's_noise': 1.003})``.

    Raises:
        ValueError: for a malformed option list.
    """
    text = text.strip()
    if "[" not in text:
        return text, {}
    name, _, rest = text.partition("[")
    if not rest.endswith("]"):
        raise ValueError(f"sampler options go in brackets, like 'heun[s_churn=40]'; got {text!r}")
    options: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest[:-1].split(","))):
        key, eq, value = item.partition("=")
        try:
            options[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise ValueError(f"sampler option {item!r} in {text!r} must be KEY=NUMBER")
    return name.strip(), options


def _draw(model: GenerativeModel, sampler: str, steps: int | None, n: int, seed: int, batch_size: int, options: dict,
          path: Path | None, progress: Callable[[Iterable], Iterable] | None) -> tuple[Tensor, int, float]:
    """Samples, NFE and seconds, from the cache when present."""
    from ..sampling import draw_in_batches

    if path is not None and path.is_file():
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            return torch.from_numpy(f["x"]), int(meta["nfe"]), float(meta["seconds"])
    start = time.perf_counter()
    out = draw_in_batches(model, n, sampler, steps=steps, generator=torch.Generator().manual_seed(seed),
                            batch_size=batch_size, progress=progress, **options)
    seconds = time.perf_counter() - start
    if path is not None:
        with atomic_path(path, parents=True) as tmp:
            np.savez_compressed(tmp, x=out.x0.cpu().numpy(),
                                meta=json.dumps({"nfe": out.nfe, "seconds": seconds, "sampler": sampler,
                                                 "steps": steps, "options": options}))
    return out.x0.cpu(), out.nfe, seconds


def nfe_sweep(model: GenerativeModel, samplers: Sequence[str], nfes: Sequence[int] | Mapping[str, Sequence[int]],
              quality: Callable[[Tensor], dict],
              *, n: int = 500, seed: int = 0, batch_size: int = 100, ode_tolerances: Sequence[float] = (1e-2, 1e-3),
              cache_dir: str | Path | None = None, sampler_options: dict[str, dict] | None = None,
              progress: Callable[[Iterable], Iterable] | None = None,
              on_row: Callable[[SweepRow], None] | None = None) -> list[SweepRow]:
    """Quality and wall time of ``n`` samples for every sampler at every NFE budget.

    Args:
        model: any trained model whose samplers have a step count (``model.steps_for_nfe`` not None: diffusion
            and score-based models); its own samplers and ``steps_for_nfe`` are used.
        samplers: names in ``model.samplers``, optionally with numeric options in
            brackets (``heun[s_churn=40]``, ``ddim[eta=0.5]``; :func:`parse_sampler`), which become part of the
            row's name. ``ode`` is run once per tolerance in ``ode_tolerances`` (its NFE is measured).
        nfes: NFE budgets, or sampler name -> budgets (key ``"*"``: the default for the others); each sampler
            gets the steps of ``model.steps_for_nfe``. Budgets a sampler cannot meet (more than T steps on DDPM's
            own grid, or too few evaluations for one step: ``steps_for_nfe`` gives 0) are skipped.
        quality: maps samples ``[n, *event_shape]`` to a dict of metrics.
        n, seed, batch_size: samples per point, the seed of every point (same x_T), samples drawn at once.
        cache_dir: where samples are cached (resume); ``None`` disables the cache.
        sampler_options: extra options per sampler name (e.g. ``{"ddim": {"eta": 0.0}}``).
        on_row: called with each finished row (e.g. to print or save progress).
    Returns:
        One :class:`SweepRow` per point, in the order run.
    Raises:
        ValueError: for empty ``samplers``/``nfes``, ``n`` < 2, or a sampler without a step count that is not
            adaptive (e.g. a flow's ``inverse``: its cost is fixed, there is nothing to sweep).
        KeyError: for a sampler the model does not have.
    """

    per = dict(nfes) if isinstance(nfes, Mapping) else {"*": list(nfes)}
    if not samplers or not any(per.values()):
        raise ValueError("give at least one sampler and one NFE budget")
    if n < 2:
        raise ValueError(f"n must be ≥ 2 samples, got {n}")
    parsed = [(label, *parse_sampler(label)) for label in samplers]

    def adaptive(name: str) -> bool:
        """An adaptive sampler: its NFE is known only after the run (its tolerance sets it)."""
        return model.nfe(name) is None

    for _, name, opts in parsed:  # unknown names and options fail before any work
        model.check_sampler(name, opts)
        if model.steps_for_nfe(name, 1) is None and not adaptive(name):
            raise ValueError(f"the {name!r} sampler of a {type(model).__name__} has a fixed cost of "
                             f"{model.nfe(name)} evaluations per sample: there is no NFE to sweep")
    cache = Path(cache_dir) if cache_dir is not None else None
    rows: list[SweepRow] = []
    for s, name, opts in parsed:
        base = {**(sampler_options or {}).get(name, {}), **opts}
        if adaptive(name):
            points = [(None, None, {**base, "rtol": tol, "atol": tol}, f"tol{tol:g}") for tol in ode_tolerances]
        else:
            points = []
            for budget in per.get(s, per.get(name, per.get("*", []))):
                steps = model.steps_for_nfe(name, budget)
                if steps < 1:
                    continue
                points.append((budget, steps, base, f"nfe{budget}"))
        for budget, steps, options, tag in points:
            path = _cache_path(cache, s, tag, n, seed) if cache is not None else None
            x, nfe, seconds = _draw(model, name, steps, n, seed, batch_size, options, path, progress)
            row = SweepRow(sampler=s, nfe_budget=budget, steps=steps, nfe=nfe, n=n, seconds=round(seconds, 2),
                           seconds_per_sample=seconds / n, options=options, quality=quality(x))
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def sweep_table(rows: Sequence[SweepRow], metrics: Sequence[str] = ("fd", "kid", "precision", "recall"),
                floor: dict[str, Any] | None = None) -> str:
    """A Markdown table of the sweep: sampler, NFE, the metrics, and seconds per sample.

    Args:
        floor: if given, a last row with the floor's metrics (e.g. test split against train split).
    """
    head = "| sampler | NFE | " + " | ".join(metrics) + " | s/sample |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]

    def fmt(v: Any) -> str:
        """A table cell: 4 significant digits, ``mean ± std`` for pairs."""
        if isinstance(v, (list, tuple)):  # (mean, std)
            return f"{v[0]:.4g} ± {v[1]:.2g}"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    for r in rows:
        label = r.sampler + (f" (tol {r.options['rtol']:g})" if r.sampler == "ode" else "")
        vals = " | ".join(fmt(r.quality.get(m, "")) for m in metrics)
        lines.append(f"| {label} | {r.nfe} | {vals} | {r.seconds_per_sample:.3f} |")
    if floor:
        vals = " | ".join(fmt(floor.get(m, "")) for m in metrics)
        lines.append(f"| *reference: test vs train (real data; not a bound)* | — | {vals} | — |")
    return "\n".join(lines)
