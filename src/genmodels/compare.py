"""``genmodels compare``: every family on one dataset, one training budget, one evaluation protocol, one report.

    genmodels compare --data digits --minutes 1 --out runs/cmp          # every family that can model the data
    genmodels compare --data fashion-mnist --minutes 10 --jobs 2 --threads 1 --ood-data mnist5k --out runs/fm
    genmodels compare runs/a runs/b --out runs/ab                       # runs that exist: evaluate and report only

Layout of ``OUT`` (everything a rerun needs to continue)::

    compare.json                 the protocol (a rerun must give the same one) and, for existing runs, their folders
    NAME/                        the family's run folder (config.json, weights, train_state.pt, metrics.jsonl)
    NAME/compare/                its results, one file per finished stage: train.json, nll.json + nll.npy,
                                 ood.json + ood.npy, quality_SAMPLER_NFE.json + .png, done.json or failed.json;
                                 worker.log (its output)
    results.json  report.md  report.html  figures/

Each family runs in its own process (``python -m genmodels.compare OUT NAME``), ``--jobs`` at a time, with
``--threads`` threads and short OpenMP waits (:func:`genmodels.threads.set_short_waits`: a thread that spins at a
barrier while another job holds the core is what made two-thread training 5.7× slower here). A worker's stages are
skipped when their result file exists, and training resumes from the run's last checkpoint (its time limit counts
the minutes already trained), so stopping ``compare`` (Ctrl-C, ``kill -9``: the workers die with it, Linux
``PR_SET_PDEATHSIG``) and running the same command again continues where it stopped and never retrains a finished
family. A worker that fails (a non-finite loss, out of memory, a family that cannot model the data) leaves
``failed.json`` with its error: the row says so and the others go on (``--retry-failed`` tries it again).

The protocol, the same for every row (:class:`Protocol`): the same TrainConfig (batch, learning rate, EMA, seed)
and budget (training wall minutes, or steps: the same number of images); the first ``eval_examples`` test images,
with each family's default evaluation options, saving each example's NLL so that every difference is a paired one
(:func:`paired_difference`); ``samples`` samples with seed ``seed`` from each family's default sampler (its steps
capped at ``max_nfe`` evaluations per sample) and, for a family with a :attr:`~genmodels.core.GenerativeModel.
fast_sampler`, from that one at each of ``fast_nfes``, scored by :func:`~genmodels.metrics.sample_quality.
sample_quality` beside the floor of real data; the learning curve: the test bits/dim of the first ``curve_examples``
test images every ``minutes / curve_points`` minutes of training (:class:`~genmodels.train.Trainer`'s
``curve_fn``). Nothing here names a family: the rows are the registry's families (or the runs given).

Scale-out: each worker trains through the same accelerate path as ``genmodels train``; on a machine with GPUs,
worker slot ``i`` sees GPU ``i mod #GPUs`` (``CUDA_VISIBLE_DEVICES``), so ``--jobs`` = #GPUs runs one family per
device.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .fileio import atomic_write_text, json_dumps
from .threads import set_short_waits

__all__ = ["Protocol", "TRAIN_SETTINGS", "plan", "default_models", "run_compare", "write_report",
           "paired_difference", "auroc", "main"]

TRAIN_SETTINGS: dict[str, Any] = dict(ema_halflife_kimg=20.0, checkpoint_every=200, log_every=50, sample_every=0,
                                      progress=False)
"""The TrainConfig fields every row shares beyond the protocol's (batch size, learning rate, seed, budget): the
demo's EMA half-life, and checkpoints every 200 steps so a killed compare loses little."""

PROTOCOL_NAME = "compare.json"
RESULTS_DIR = "compare"
TIE_Z = 2.0
"""Two rows are tied when their paired difference is within ``TIE_Z`` standard errors of zero (≈ 95%)."""


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a comparison's numbers (saved as ``OUT/compare.json``; a rerun must match).

    Attributes:
        data: the dataset (a name or ``idx:``/``folder:``/``npz:`` source).
        models: the rows: family names (trained here) or, with ``runs``, the names of existing runs.
        minutes: training wall minutes per family (None: ``steps`` alone).
        steps: optimizer steps per family (None: ``minutes`` alone).
        threads: torch threads per worker.
        conditional: train class-conditional models (families without conditioning fail their row).
        batch_size, lr, seed: the TrainConfig every family shares (with :data:`TRAIN_SETTINGS`).
        eval_examples: test images in the NLL (the first ones: the same for every row).
        samples: samples per sample-quality score; seed ``seed``.
        max_nfe: cap on the default sampler's network evaluations per sample.
        fast_nfes: the budgets at which a family's ``fast_sampler`` is also scored.
        ood_data: a second dataset (same event shape) whose test split gives the out-of-distribution column.
        curve_points: learning-curve points over the ``minutes`` budget (every ``curve_minutes``).
        curve_examples: test images in each learning-curve point.
        runs: for a comparison of existing runs, name -> run folder (nothing is trained).
        skipped: registered families left out because they cannot model the data, with the reason (a row each in
            the report, so that every registered family appears).
    """

    data: str
    models: tuple[str, ...]
    minutes: float | None = None
    steps: int | None = None
    threads: int = 1
    conditional: bool = False
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    eval_examples: int = 1000
    samples: int = 500
    max_nfe: int = 100
    fast_nfes: tuple[int, ...] = (10, 20)
    ood_data: str | None = None
    curve_points: int = 10
    curve_examples: int = 200
    runs: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.runs and self.minutes is None and self.steps is None:
            raise ValueError("give a training budget: --minutes M (wall minutes per family) or --steps N, or both")
        for name in ("threads", "batch_size", "eval_examples", "samples", "max_nfe", "curve_points",
                     "curve_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if self.samples < 2:
            raise ValueError(f"--samples must be ≥ 2 (a Fréchet distance needs a covariance), got {self.samples}")
        if not self.models:
            raise ValueError("no rows to compare: name families with --models or give run folders")

    @property
    def curve_minutes(self) -> float:
        """Training minutes between learning-curve points."""
        return (self.minutes or 10.0) / self.curve_points

    def to_json(self) -> dict:
        """A JSON-ready dict (tuples as lists)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Protocol:
        """The inverse of :meth:`to_json`."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        return cls(**{**d, "models": tuple(d["models"]), "fast_nfes": tuple(d.get("fast_nfes", (10, 20)))})

    def train_overrides(self) -> dict[str, Any]:
        """The TrainConfig fields of every row."""
        return dict(TRAIN_SETTINGS, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                    steps=self.steps or 10**9, time_limit_minutes=self.minutes, num_threads=self.threads,
                    curve_every_minutes=self.curve_minutes)

    def command(self, models: tuple[str, ...] | None = None, out: str = "OUT") -> str:
        """The ``genmodels compare`` command line that gives this protocol (for ``models``: those rows alone);
        ``curve_examples`` is a Python-only setting (``Protocol(...)``, :func:`run_compare`)."""
        defaults = Protocol(data="", models=("x",), steps=1)
        if self.runs:
            parts = ["genmodels", "compare", *self.runs.values()]
        else:
            parts = ["genmodels", "compare", "--data", self.data, "--models", ",".join(models or self.models)]
            parts += ["--minutes", f"{self.minutes:g}"] if self.minutes is not None else []
            parts += ["--steps", str(self.steps)] if self.steps is not None else []
            parts += ["--threads", str(self.threads)] + (["--conditional"] if self.conditional else [])
            for name in ("batch_size", "lr", "seed"):
                if getattr(self, name) != getattr(defaults, name):
                    parts += [f"--{name.replace('_', '-')}", f"{getattr(self, name):g}"]
        for name in ("eval_examples", "samples", "max_nfe", "curve_points"):
            if getattr(self, name) != getattr(defaults, name):
                parts += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        if self.fast_nfes != defaults.fast_nfes:
            parts += ["--fast-nfes", ",".join(map(str, self.fast_nfes))]
        parts += ["--ood-data", self.ood_data] if self.ood_data else []
        return shlex.join([*parts, "--out", out])


# ---------------------------------------------------------------------------------------------- the rows


def default_models(data: str) -> tuple[list[str], dict[str, str]]:
    """The registered families that can model ``data`` (their preset builds for its spec), and for the others
    why not (the family's own error)."""
    from .data import load_dataset
    from .families import MODELS

    spec = load_dataset(data).spec
    ok, skipped = [], {}
    for name in MODELS.names():
        entry = MODELS.get(name)
        try:
            entry.build(entry.preset(spec), spec)
            ok.append(name)
        except (ValueError, TypeError) as e:
            skipped[name] = str(e).splitlines()[0]
    return ok, skipped


def plan(runs: list[Path], data: str, models: str | None) -> tuple[str, tuple[str, ...], dict[str, str],
                                                                   dict[str, str]]:
    """What ``genmodels compare`` was asked: ``(data, rows, runs, skipped)``: for run folders, their names (made
    unique) and their common dataset; else the ``models`` given (comma-separated) or every family that fits
    ``data`` (:func:`default_models`), with the others in ``skipped``.

    Raises:
        ValueError: no ``data`` and no runs; runs trained on different data.
    """
    from .checkpoint import load_run_config

    runs_map: dict[str, str] = {}
    for r in runs:
        runs_map[r.name if r.name not in runs_map else f"{r.name}_{len(runs_map)}"] = str(r)
    if runs_map:
        datas = {name: load_run_config(path).data for name, path in runs_map.items()}
        if len(set(datas.values())) > 1:
            raise ValueError(f"the runs were trained on different data ({datas}); compare runs of one dataset")
        return data or next(iter(datas.values())), tuple(runs_map), runs_map, {}
    if not data:
        raise ValueError("--data is required (the dataset every family trains on), or give run folders")
    names = tuple(m.strip() for m in (models or "").split(",") if m.strip())
    if names:
        return data, names, {}, {}
    ok, skipped = default_models(data)
    return data, tuple(ok), {}, skipped


def _results(out: Path, name: str) -> Path:
    """A row's result folder, ``OUT/NAME/compare``."""
    return out / name / RESULTS_DIR


def _run_dir(out: Path, protocol: Protocol, name: str) -> Path:
    """A row's run folder: ``OUT/NAME``, or the existing run it names."""
    return Path(protocol.runs[name]) if protocol.runs else out / name


def _read(path: Path) -> dict | None:
    """A JSON file, or None where it is missing or torn."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a kill leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json_dumps(obj, indent=2) + "\n")


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _sample_configs(model: Any, protocol: Protocol) -> list[tuple[str, int | None, list[int]]]:
    """(sampler, steps, budgets) of the rows' sample-quality scores: the default sampler first (at most ``max_nfe``
    evaluations per sample where its step count allows), then the fast sampler at the most steps within each of
    ``fast_nfes`` (``budgets``: the fast budgets a configuration answers; a sampler with two evaluations per step
    spends 4 of a budget of 5)."""
    sampler = model.samplers[0]
    steps = model.default_steps(sampler)
    if steps is not None and (model.nfe(sampler, steps) or 0) > protocol.max_nfe:
        steps = max(1, model.steps_for_nfe(sampler, protocol.max_nfe) or 1)
    configs: list[tuple[str, int | None, list[int]]] = [(sampler, steps, [])]
    if model.fast_sampler is not None:
        for nfe in protocol.fast_nfes:
            s = model.steps_for_nfe(model.fast_sampler, nfe)
            if not s:
                continue
            same = [c for c in configs if c[:2] == (model.fast_sampler, s)]
            if same:
                same[0][2].append(nfe)
            else:
                configs.append((model.fast_sampler, s, [nfe]))
    return configs


def run_row(out: Path, name: str) -> None:
    """One row's worker: train (or resume), then every evaluation stage whose result file is missing.

    Raises:
        whatever a stage raises; :func:`main` records it in ``failed.json``.
    """
    import torch

    from .checkpoint import from_pretrained, load_run_config, load_train_state
    from .core import EvalOptions
    from .jobs import _generator, run_evaluate, run_train, save_samples_grid
    from .metrics.sample_quality import sample_quality
    from .sampling import draw_in_batches

    protocol = Protocol.from_json(_read(out / PROTOCOL_NAME))
    res, run = _results(out, name), _run_dir(out, protocol, name)
    res.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(protocol.threads)
    stage = "train"
    _write(res / "stage.json", {"stage": stage})
    if not protocol.runs and not (res / "train.json").is_file():
        resume = (run / "train_state.pt").is_file()
        result = run_train(None if resume else name, "" if resume else protocol.data, run, resume,
                           protocol.train_overrides(), conditional=protocol.conditional and not resume,
                           curve_examples=protocol.curve_examples)
        _write(res / "train.json", {"steps": result.steps, "images_seen": result.images_seen,
                                    "seconds": result.seconds, "stop_reason": result.stop_reason,
                                    "final_loss": result.final_loss, "peak_rss_mb": _peak_rss_mb()})
    if protocol.runs and not (res / "train.json").is_file() and (run / "train_state.pt").is_file():
        state = load_train_state(run / "train_state.pt")  # an existing run: what its own training did
        _write(res / "train.json", {"steps": int(state["step"]), "images_seen": int(state["images_seen"]),
                                    "seconds": float(state["seconds"]), "stop_reason": None, "peak_rss_mb": None})
    run_config = load_run_config(run)
    model, _ = from_pretrained(run, ema=True, run_config=run_config)
    model.eval()
    _write(res / "info.json", {"family": run_config.model, "description": model.description,
                               "parameters": sum(p.numel() for p in model.parameters()),
                               "nll_kind": model.nll_kind if model.has_likelihood else None,
                               "has_likelihood": model.has_likelihood, "default_sampler": model.samplers[0],
                               "conditional": model.num_classes is not None, "data": run_config.data,
                               "dim": model.spec.dim})
    if model.has_likelihood:
        for stage, data, stem in (("nll", None, "nll"), ("ood", protocol.ood_data, "ood")):
            if (stage == "ood" and not data) or (res / f"{stem}.json").is_file():
                continue
            _write(res / "stage.json", {"stage": stage})
            ev = run_evaluate(run, "test", protocol.eval_examples, EvalOptions(), 100, protocol.seed, False, False,
                              per_example=res / f"{stem}.npy", data=data)
            _write(res / f"{stem}.json", ev)
    dataset = run_config.load_data()
    for k, (sampler, steps, budgets) in enumerate(_sample_configs(model, protocol)):
        nfe = model.nfe(sampler, steps)
        path = res / f"quality_{sampler}_{nfe}.json"
        if path.is_file():
            continue
        _write(res / "stage.json", {"stage": f"samples {sampler} {nfe} NFE"})
        n = protocol.samples
        y = None if model.num_classes is None else torch.arange(n) % model.num_classes
        start = time.perf_counter()  # no inference_mode: Langevin samplers differentiate the model
        drawn = draw_in_batches(model, n, sampler, steps=steps, generator=_generator(protocol.seed), y=y)
        seconds = time.perf_counter() - start
        finite = torch.isfinite(drawn.x0.flatten(1)).all(dim=1)
        x = drawn.x0[finite]
        row = {"sampler": sampler, "steps": steps, "nfe": drawn.nfe, "default": k == 0, "budgets": budgets,
               "n": n, "seconds": seconds,
               "seconds_per_sample": seconds / n, "nonfinite": int((~finite).sum())}
        if len(x):
            row["picture"] = os.path.relpath(save_samples_grid(x[:64], model.spec, path.with_suffix(".png")), out)
        if row["nonfinite"]:  # an unscored row: scoring the finite ones alone would flatter the model
            row["scores_error"] = f"{row['nonfinite']} of {n} samples non-finite"
        else:
            try:
                row["scores"] = sample_quality(x, dataset, generator=_generator(protocol.seed))
            except ValueError as e:  # e.g. images of a dataset without a feature classifier
                row["scores_error"] = str(e).splitlines()[0]
        _write(path, row)
    _write(res / "done.json", {"peak_rss_mb": _peak_rss_mb()})
    (res / "stage.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """The worker's entry point: ``python -m genmodels.compare OUT NAME``. Returns the exit status: 0 done, 1 failed
    (``failed.json`` written), 130 interrupted (nothing written: a rerun continues)."""
    out, name = (argv or sys.argv[1:])[:2]
    out = Path(out)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    try:
        run_row(out, name)
        return 0
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:  # the trainer's SIGTERM exit, after its checkpoint
        return int(e.code or 0) or 143
    except Exception as e:  # any error is this row's failure, reported in its row
        traceback.print_exc()
        stage = (_read(_results(out, name) / "stage.json") or {}).get("stage", "?")
        _write(_results(out, name) / "failed.json",
               {"stage": stage, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
        return 1


# ---------------------------------------------------------------------------------------------- the driver


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (Linux), so ``kill -9`` of compare stops its
    workers too and a rerun never races a stray one."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_env(protocol: Protocol, slot: int, gpus: int) -> dict[str, str]:
    """A worker's environment: its threads, short OpenMP waits (unless the user chose) and its GPU."""
    env = dict(os.environ, OMP_NUM_THREADS=str(protocol.threads), MKL_NUM_THREADS=str(protocol.threads))
    set_short_waits(env)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    return env


def _status(out: Path, name: str) -> str:
    """``done``, ``failed`` or ``pending``, from the row's result files."""
    res = _results(out, name)
    return "done" if (res / "done.json").is_file() else "failed" if (res / "failed.json").is_file() else "pending"


def _say(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _check_protocol(out: Path, protocol: Protocol) -> None:
    """Write ``OUT/compare.json``, or check that a rerun asks for the same protocol.

    Raises:
        ValueError: naming the settings that differ from the saved protocol.
    """
    path = out / PROTOCOL_NAME
    saved = _read(path)
    if saved is None:
        _write(path, protocol.to_json())
        return
    old = Protocol.from_json(saved).to_json()
    diff = [f"{k} {old[k]!r} -> {v!r}" for k, v in protocol.to_json().items() if old.get(k) != v and k != "skipped"]
    if not diff and old["skipped"] != protocol.skipped:  # derived from the registry, not a setting: keep it current
        _write(path, protocol.to_json())
    if diff:
        raise ValueError(f"{out} holds a comparison with other settings ({'; '.join(diff)}); rerun it with its own "
                         f"command ({Protocol.from_json(saved).command(out=str(out))}) or use another --out")


def run_compare(protocol: Protocol, out: Path, jobs: int = 1, retry_failed: bool = False,
                poll_seconds: float = 1.0) -> dict:
    """Run every row's worker (``jobs`` at a time), then :func:`write_report`. Returns the report's summary.

    Raises:
        ValueError: ``jobs`` < 1; a rerun with another protocol; existing runs on different data.
        KeyboardInterrupt: after Ctrl-C, once the workers have checkpointed (a rerun continues).
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be ≥ 1, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    _check_protocol(out, protocol)
    if retry_failed:
        for name in protocol.models:
            (_results(out, name) / "failed.json").unlink(missing_ok=True)
    pending = [n for n in protocol.models if _status(out, n) == "pending"]
    for n in protocol.models:
        if n not in pending:
            _say(f"{n}: {_status(out, n)} already")
    gpus = 0
    with contextlib.suppress(Exception):
        import torch

        gpus = torch.cuda.device_count()
    running: dict[str, tuple[subprocess.Popen, int, float, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                slot = min(set(range(jobs)) - {s for _, s, _, _ in running.values()})
                res = _results(out, name)
                res.mkdir(parents=True, exist_ok=True)
                log = open(res / "worker.log", "a", encoding="utf-8")  # closed when the worker ends
                proc = subprocess.Popen([sys.executable, "-m", "genmodels.compare", str(out), name],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        env=_worker_env(protocol, slot, gpus), preexec_fn=_die_with_parent)
                running[name] = (proc, slot, time.monotonic(), log)
                _say(f"{name}: started (pid {proc.pid}; log {res / 'worker.log'})")
            time.sleep(poll_seconds)
            for name, (proc, _, t0, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                del running[name]
                minutes = (time.monotonic() - t0) / 60
                if rc == 0:
                    _say(f"{name}: done ({minutes:.1f} min)")
                    continue
                failed = _results(out, name) / "failed.json"
                if not failed.is_file():  # died without a word: a signal (the kernel's OOM killer) or a crash
                    why = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
                    _write(failed, {"stage": (_read(_results(out, name) / "stage.json") or {}).get("stage", "?"),
                                    "error": f"the worker died ({why}; out of memory?); see its worker.log"})
                _say(f"{name}: FAILED ({_read(failed)['error']}); the others go on")
    except KeyboardInterrupt:
        _say("interrupted: the workers save a checkpoint; run the same command again to continue")
        for proc, *_ in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc, *_ in running.values():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    return write_report(out)


# ---------------------------------------------------------------------------------------------- statistics


def paired_difference(a_nats: Any, b_nats: Any, dim: int) -> dict[str, float]:
    """The paired difference of two rows' NLLs on the same examples, in bits/dim: mean of ``a − b`` and its standard
    error (std of the per-example differences / √N), and whether it is a tie (|mean| ≤ :data:`TIE_Z` · SE).

    Args:
        a_nats, b_nats: ``[N]`` per-example NLLs in nats of the same N examples. dim: dimensions per example.
    Raises:
        ValueError: arrays of different lengths, or fewer than 2 examples.
    """
    import numpy as np

    a, b = np.asarray(a_nats, dtype=np.float64), np.asarray(b_nats, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired differences need two [N] arrays over the same N ≥ 2 examples, got {a.shape} "
                         f"and {b.shape}")
    d = (a - b) / (dim * math.log(2))
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    return {"diff_bpd": mean, "se_bpd": se, "tied": bool(abs(mean) <= TIE_Z * se)}


def auroc(in_scores: Any, out_scores: Any) -> float:
    """The area under the ROC curve of a detector that calls an example out-of-distribution when its score (bits/dim)
    is high: P(out > in) + ½ P(out = in) (scikit-learn's ``roc_auc_score``). 0.5 is chance; below 0.5 the model
    gives the other dataset *higher* likelihood (Nalisnick et al. 2019, Fig. 1)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([np.asarray(in_scores), np.asarray(out_scores)])
    labels = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
    return float(roc_auc_score(labels, scores))


# ---------------------------------------------------------------------------------------------- the report


def _row(out: Path, protocol: Protocol, name: str) -> dict:
    """Everything known about one row, from its result files."""
    import numpy as np

    res = _results(out, name)
    row: dict[str, Any] = {"name": name, "status": _status(out, name), "run": str(_run_dir(out, protocol, name))}
    if row["status"] == "failed":
        row["error"] = _read(res / "failed.json")
    row["info"] = _read(res / "info.json") or {}
    row["train"] = _read(res / "train.json")
    nll = _read(res / "nll.json")
    if nll is not None:
        row["nll"] = {k: nll.get(k) for k in ("nll_kind", "bpd", "bpd_stderr", "examples", "seconds", "terms_bpd")}
        row["_nats"] = np.load(res / "nll.npy")
    ood = _read(res / "ood.json")
    if ood is not None and nll is not None:
        row["_ood_nats"] = np.load(res / "ood.npy")
        row["ood"] = {"data": ood.get("data"), "bpd": ood.get("bpd"), "bpd_stderr": ood.get("bpd_stderr"),
                      "auroc": auroc(row["_nats"], row["_ood_nats"])}
    row["quality"] = sorted((q for q in (_read(p) for p in res.glob("quality_*.json")) if q),
                            key=lambda q: (not q.get("default", q["sampler"] == row["info"].get("default_sampler")),
                                           q["nfe"] or 0))
    row["curve"] = _curve(_run_dir(out, protocol, name))
    return row


def _curve(run: Path) -> list[dict]:
    """The learning-curve points of a run's metrics.jsonl (those with a bits/dim)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if rec.get("event") == "curve" and rec.get("bpd") is not None:
                points.append({"minutes": rec["minutes"], "step": rec["step"], "bpd": rec["bpd"]})
    return points


def _rank(rows: list[dict]) -> None:
    """Sort the rows with a likelihood by bits/dim and give each its paired difference to the best and to the row
    above; a row tied with the row above shares its rank."""
    scored = sorted((r for r in rows if "nll" in r), key=lambda r: r["nll"]["bpd"])
    rank = 0
    for i, r in enumerate(scored):
        dim = r["info"]["dim"]
        if i == 0:
            rank = 1
        else:
            above = scored[i - 1]
            r["vs_above"] = {"name": above["name"], **paired_difference(r["_nats"], above["_nats"], dim)}
            r["vs_best"] = {"name": scored[0]["name"], **paired_difference(r["_nats"], scored[0]["_nats"], dim)}
            if not r["vs_above"]["tied"]:
                rank = i + 1
        r["rank"] = rank
    rows.sort(key=lambda r: (r.get("rank", 10**6), r.get("nll", {}).get("bpd", math.inf), r["name"]))


def _main_score(q: dict) -> tuple[str, float | None, float | None]:
    """(name, value, floor) of a quality row's first score: ``fd`` for images, ``sliced_w2`` for vectors."""
    scores = q.get("scores") or {}
    for key in ("fd", "sliced_w2", "w2", "mmd2"):
        if key in scores:
            return key, scores[key], scores.get(f"{key}_floor")
    return "fd", None, None


def _fmt(v: Any, digits: int = 3) -> str:
    """A table cell: ``—`` for a missing or non-finite number."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(rows: list[dict], protocol: Protocol) -> tuple[list[str], list[list[str]]]:
    """The report's main table: header and cells (strings), in rank order."""
    header = ["rank", "family", "NLL kind", "test bits/dim", "vs. row above (paired)", "vs. best (paired)"]
    if protocol.ood_data:
        header += [f"{protocol.ood_data} bits/dim", "OOD AUROC"]
    header += ["sample score (default sampler)", "NFE", "ms/sample"]
    header += [f"fast sampler @{n} NFE" for n in protocol.fast_nfes]
    header += ["parameters", "images seen", "train min", "peak MiB"]
    cells = []
    for r in rows:
        nll, info, train = r.get("nll"), r["info"], r.get("train") or {}

        def vs(key: str, r: dict = r) -> str:
            """A paired-difference cell: Δ ± SE bits/dim and the verdict (tied, worse, better)."""
            v = r.get(key)
            if not v:
                return ""
            verdict = "tied" if v["tied"] else ("worse" if v["diff_bpd"] > 0 else "better")
            return f"{v['diff_bpd']:+.4f} ± {v['se_bpd']:.4f} ({verdict})"

        q = r["quality"]
        default = q[0] if q else None
        name, val, floor = _main_score(default) if default else ("", None, None)
        line = [str(r.get("rank", "")), r["name"] + ("" if r["status"] == "done" else f" ({r['status']})"),
                (nll or {}).get("nll_kind") or ("none" if info.get("has_likelihood") is False else "—"),
                f"{nll['bpd']:.4f} ± {nll['bpd_stderr']:.4f}" if nll else "—", vs("vs_above"), vs("vs_best")]
        if protocol.ood_data:
            ood = r.get("ood")
            line += [f"{ood['bpd']:.4f}" if ood else "—", f"{ood['auroc']:.3f}" if ood else "—"]
        score = f"{name} {_fmt(val, 2)} (floor {_fmt(floor, 2)})" if val is not None else (
            (default or {}).get("scores_error", "—")[:60] if default else "—")
        ms = 1000 * default["seconds_per_sample"] if default else None
        line += [score, _fmt((default or {}).get("nfe")), _fmt(ms, 2)]
        for n in protocol.fast_nfes:
            fast = [x for x in q if n in x.get("budgets", ())] or [x for x in q[1:] if x["nfe"] == n]
            spent = f" ({fast[0]['nfe']} NFE)" if fast and fast[0]["nfe"] != n else ""
            line.append(f"{_main_score(fast[0])[0]} {_fmt(_main_score(fast[0])[1], 2)}{spent}" if fast else "")
        line += [f"{info['parameters']:,}" if info.get("parameters") else "—", _fmt(train.get("images_seen")),
                 _fmt(train["seconds"] / 60, 1) if train.get("seconds") is not None else "—",
                 _fmt(max(train.get("peak_rss_mb") or 0, 0) or None, 0)]
        cells.append(line)
    return header, cells


def _figures(rows: list[dict], out: Path) -> dict[str, Path]:
    """The learning curves and quality-vs-time figures (PNG, under ``OUT/figures``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    written = {}
    curves = [r for r in rows if r["curve"]]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        finals = []
        for r in curves:
            xs, ys = [p["minutes"] for p in r["curve"]], [p["bpd"] for p in r["curve"]]
            ax.plot(xs, ys, marker="o", ms=3, label=r["name"])
            finals.append(ys[-1])
        lo, hi = min(min(p["bpd"] for p in r["curve"]) for r in curves), max(finals)
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.6 * (hi - lo + 0.1))
        ax.set_xlabel("training minutes (wall, same threads per family)")
        ax.set_ylabel("test bits/dim (fixed subset)")
        ax.set_title("Learning curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        written["learning_curves"] = figs / "learning_curves.png"
        fig.savefig(written["learning_curves"], dpi=110)
        plt.close(fig)
    points = [(r["name"], q) for r in rows for q in r["quality"] if _main_score(q)[1] is not None]
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, name in enumerate(dict.fromkeys(n for n, _ in points)):
            qs = [q for n, q in points if n == name]
            ax.plot([q["seconds_per_sample"] for q in qs], [_main_score(q)[1] for q in qs], marker="o", ls=":",
                    color=f"C{i % 10}", label=name)
            for q in qs:
                ax.annotate(f"{q['nfe']}", (q["seconds_per_sample"], _main_score(q)[1]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        floor = _main_score(points[0][1])[2]
        if floor is not None:
            ax.axhline(floor, color="grey", ls="--", lw=1, label="floor (real data)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("seconds per sample (labels: NFE)")
        ax.set_ylabel(f"{_main_score(points[0][1])[0]} (lower is better)")
        ax.set_title("Sample quality against sampling time")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        written["quality_vs_time"] = figs / "quality_vs_time.png"
        fig.savefig(written["quality_vs_time"], dpi=110)
        plt.close(fig)
    return written


def _ood_sentence(r: dict) -> str | None:
    """Whether the row reproduces Nalisnick et al. (2019), in one sentence (None without OOD data)."""
    ood = r.get("ood")
    if not ood:
        return None
    a = ood["auroc"]
    if a < 0.5:
        return (f"{r['name']}: **reproduces** Nalisnick et al. — it gives {ood['data']} higher likelihood "
                f"({ood['bpd']:.3f} vs {r['nll']['bpd']:.3f} bits/dim; AUROC {a:.3f} < 0.5).")
    return (f"{r['name']}: does **not** reproduce it — {ood['data']} gets lower likelihood ({ood['bpd']:.3f} vs "
            f"{r['nll']['bpd']:.3f} bits/dim; AUROC {a:.3f}).")


def write_report(out: Path) -> dict:
    """``OUT/results.json``, ``OUT/report.md`` and a self-contained ``OUT/report.html`` (pictures embedded) from the
    rows' result files; rows still running or pending are listed as such. Returns a short summary.

    Raises:
        FileNotFoundError: ``OUT`` holds no comparison (no ``compare.json``).
    """
    saved = _read(out / PROTOCOL_NAME)
    if saved is None:
        raise FileNotFoundError(f"{out} holds no comparison ({PROTOCOL_NAME} is missing); start one with "
                                f"`genmodels compare --data DATA --minutes M --out {out}`")
    protocol = Protocol.from_json(saved)
    rows = [_row(out, protocol, n) for n in protocol.models]
    _rank(rows)
    rows += [{"name": n, "status": "skipped", "error": {"stage": "data", "error": why}, "info": {}, "quality": [],
              "curve": [], "run": None} for n, why in protocol.skipped.items()]
    figs = _figures(rows, out)
    header, cells = _table(rows, protocol)
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    summary = {"out": str(out), "data": protocol.data, "rows": len(rows),
               "done": sum(r["status"] == "done" for r in rows),
               "failed": [r["name"] for r in rows if r["status"] == "failed"],
               "pending": [r["name"] for r in rows if r["status"] == "pending"],
               "skipped": list(protocol.skipped),
               "ranking": [(r["name"], r.get("rank"), r["nll"]["bpd"]) for r in rows if "nll" in r],
               "report": str(out / "report.html")}
    _write(out / "results.json", {"protocol": protocol.to_json(), "command": protocol.command(out=str(out)),
                                  "rows": public, "table": {"header": header, "rows": cells}})
    md = _markdown(out, protocol, rows, header, cells, figs)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", _html(out, protocol, rows, header, cells, figs))
    return summary


def _budget(protocol: Protocol) -> str:
    """The training budget in words."""
    parts = ([f"{protocol.minutes:g} training minute(s)"] if protocol.minutes is not None else []) + (
        [f"{protocol.steps} steps ({protocol.steps * protocol.batch_size:,} images)"] if protocol.steps else [])
    return " or ".join(parts) + f" per family, {protocol.threads} thread(s) each" if parts else "existing runs"


def _examples(rows: list[dict], asked: int) -> int:
    """The number of test images the NLLs used (fewer than asked where the split is smaller)."""
    return next((r["nll"]["examples"] for r in rows if "nll" in r), asked)


def _notes(protocol: Protocol, rows: list[dict]) -> list[str]:
    """The protocol in sentences, under the table."""
    notes = [
        f"Budget: {_budget(protocol)}; batch {protocol.batch_size}, AdamW lr {protocol.lr:g}, EMA half-life "
        f"{TRAIN_SETTINGS['ema_halflife_kimg']:g} kimg, seed {protocol.seed} (the same TrainConfig for every family).",
        f"Test bits/dim: the first {_examples(rows, protocol.eval_examples)} test images of `{protocol.data}`, each "
        "family's default "
        "evaluation options (NLL kind: exact = change of variables or autoregressive; bound = an upper bound, ELBO or "
        "diffusion VLB; estimate = an ODE likelihood, unbiased up to the solver's error, of dequantized data for "
        "discrete data), mean ± standard error. Paired differences use the same images' per-example NLLs: a row is "
        f"**tied** with the row above when |Δ| ≤ {TIE_Z:g} SE, and then shares its rank.",
        f"Sample score: {protocol.samples} samples, seed {protocol.seed}, each family's default sampler with at most "
        f"{protocol.max_nfe} network evaluations per sample (where its step count allows), scored against the test "
        "split in the dataset's classifier features (fd: Fréchet distance; the floor is what real training images "
        "score at the same sample size). Families with a few-step sampler are also scored at the most steps within "
        f"{', '.join(map(str, protocol.fast_nfes))} NFE.",
        f"Learning curves: test bits/dim of the first {protocol.curve_examples} test images every "
        f"{protocol.curve_minutes:g} training minutes (evaluation time excluded from the budget).",
    ]
    if protocol.ood_data:
        notes.append(f"Out-of-distribution: bits/dim of the first {protocol.eval_examples} test images of "
                     f"`{protocol.ood_data}`; AUROC of bits/dim as an in/out detector (1: perfect, 0.5: chance, "
                     "< 0.5: the other data looks *more* likely, Nalisnick et al. 2019).")
    return notes


def _grid_path(out: Path, r: dict) -> Path | None:
    """The sample grid of a row's default sampler, if it drew one."""
    if not r["quality"] or "picture" not in r["quality"][0]:
        return None
    p = Path(r["quality"][0]["picture"])
    return p if p.is_absolute() else out / p


def _markdown(out: Path, protocol: Protocol, rows: list[dict], header: list[str], cells: list[list[str]],
              figs: dict[str, Path]) -> str:
    lines = [f"# genmodels compare: `{protocol.data}`", "", f"`{protocol.command(out=str(out))}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    lines += [""] + [f"- {n}" for n in _notes(protocol, rows)] + [""]
    sentences = [s for s in map(_ood_sentence, rows) if s]
    if sentences:
        lines += ["## Out-of-distribution (Nalisnick et al. 2019)", ""] + [f"- {s}" for s in sentences] + [""]
    failed = [r for r in rows if r["status"] in ("failed", "skipped")]
    if failed:
        lines += ["## Failed and skipped rows", ""]
        lines += [f"- {r['name']} (stage {r['error'].get('stage')}): {r['error']['error']}" for r in failed] + [""]
    for key, title in (("learning_curves", "Learning curves"), ("quality_vs_time", "Sample quality and time")):
        if key in figs:
            lines += [f"## {title}", "", f"![{title}]({figs[key].relative_to(out)})", ""]
    lines += ["## Samples (default sampler)", ""]
    for r in rows:
        g = _grid_path(out, r)
        if g is not None and g.is_file():
            q = r["quality"][0]
            lines += [f"**{r['name']}** ({q['sampler']}, {q['nfe']} NFE)", "", f"![{r['name']}]({g.relative_to(out)})",
                      ""]
    lines += ["## Reproduce a row", ""]
    for r in (r for r in rows if r["status"] != "skipped"):
        lines += [f"- {r['name']}: `{protocol.command((r['name'],), out=str(out))}`" if not protocol.runs else
                  f"- {r['name']}: run folder `{r['run']}`"]
    return "\n".join(lines) + "\n"


def _img(path: Path) -> str:
    """An ``<img>`` with the PNG embedded (the HTML report needs no other file)."""
    return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _html(out: Path, protocol: Protocol, rows: list[dict], header: list[str], cells: list[list[str]],
          figs: dict[str, Path]) -> str:
    import html

    e = html.escape
    table = "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" + "".join(
        "<tr>" + "".join(f'<td class="{"tied" if "tied" in c else ""}">{e(c)}</td>' for c in row) + "</tr>"
        for row in cells) + "</table>"
    parts = [f"<h1>genmodels compare: <code>{e(protocol.data)}</code></h1>",
             f"<p><code>{e(protocol.command(out=str(out)))}</code></p>", table,
             "<ul>" + "".join(f"<li>{e(n).replace('**', '')}</li>" for n in _notes(protocol, rows)) + "</ul>"]
    sentences = [s for s in map(_ood_sentence, rows) if s]
    if sentences:
        parts += ["<h2>Out-of-distribution (Nalisnick et al. 2019)</h2><ul>" +
                  "".join(f"<li>{e(s).replace('**', '')}</li>" for s in sentences) + "</ul>"]
    failed = [r for r in rows if r["status"] in ("failed", "skipped")]
    if failed:
        parts += ["<h2>Failed and skipped rows</h2><ul>" + "".join(
            f"<li>{e(r['name'])} (stage {e(str(r['error'].get('stage')))}): {e(r['error']['error'])}</li>"
            for r in failed) + "</ul>"]
    for key, title in (("learning_curves", "Learning curves"), ("quality_vs_time", "Sample quality and time")):
        if key in figs:
            parts += [f"<h2>{title}</h2>", _img(figs[key])]
    grids = []
    for r in rows:
        g = _grid_path(out, r)
        if g is not None and g.is_file():
            q = r["quality"][0]
            grids.append(f'<figure>{_img(g)}<figcaption>{e(r["name"])} ({e(q["sampler"])}, {q["nfe"]} NFE)'
                         f'</figcaption></figure>')
    parts += ["<h2>Samples (default sampler)</h2>", '<div class="grids">' + "".join(grids) + "</div>"]
    parts += ["<h2>Reproduce a row</h2><ul>" + "".join(
        f"<li>{e(r['name'])}: <code>{e(protocol.command((r['name'],), out=str(out)))}</code></li>" for r in rows
        if r["status"] != "skipped")
        + "</ul>"]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
             "td.tied{background:#fff3c4}.grids{display:flex;flex-wrap:wrap;gap:12px}"
             "figure{margin:0}figure img{width:180px;image-rendering:pixelated}code{font-size:12px}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>genmodels compare: {e(protocol.data)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


if __name__ == "__main__":
    sys.exit(main())
