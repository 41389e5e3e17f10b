#!/usr/bin/env python
"""Training throughput with and without a competing busy process: our thread defaults against one thread and
against torch's own defaults (issue 18).

Configurations (each a fresh process: OpenMP reads its wait policy once, when torch loads):

- ``one``: 1 thread (``--threads 1``);
- ``before``: what ``genmodels train`` did before issue 18: torch's default thread count, no wait policy set
  (libgomp's default: spin for a while at each barrier, then sleep);
- ``ours``: what it does now: :func:`genmodels.threads.configure_threads` with no count (the usable cores, libgomp's
  default waits) and its :class:`~genmodels.threads.ThreadTuner` fed every step, as the trainer does. It runs for
  ``--ours-seconds`` (default 150: past the tuner's first re-probe at 120 s), so its probes are paid inside the
  measurement: the tuner starts after the warm-up steps that every configuration skips.

Each is measured idle and while this script keeps one core busy with a spinning process it starts and stops itself
(``python -c "while True: pass"``). The step is the Fashion-MNIST DDPM's (batch 64, the CLI's default config):
``model.loss(x).mean()`` + backward + AdamW. Rounds alternate the configurations; per configuration we report the
median images/s over rounds, and the ratios the issue asks for, measured in the same run:

- contended ``ours`` / contended ``one`` (≥ 0.8);
- idle ``ours`` / idle ``before`` (within 5%).

Usage::

    python benchmarks/threads_contention.py                # 3 rounds × 6 measurements (~20 minutes)
    python benchmarks/threads_contention.py --rounds 1 --steps 3 --ours-seconds 10   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "threads_contention.json"
CONFIGS = ("one", "before", "ours")
_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def worker(config: str, steps: int, warmup: int, ours_seconds: float) -> None:
    """One measurement (in its own process): prints a JSON line with images/s and the threads used."""
    import torch

    from genmodels import threads as T
    from genmodels.data import load_dataset
    from genmodels.families import MODELS
    from genmodels.jobs import model_config

    if config == "one":
        T.configure_threads(1)
    ds = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = MODELS.get("ddpm").build(model_config("ddpm", ds.spec), ds.spec)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    g = torch.Generator().manual_seed(0)
    x = ds.train[:64]

    def step() -> None:
        loss = model.loss(x, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if config == "ours":
        T.configure_threads()  # no count asked for: the usable cores, and the tuner
    done, t0 = 0, time.perf_counter()
    while (done < steps) if config != "ours" else (time.perf_counter() - t0 < ours_seconds or done < steps):
        ts = time.perf_counter()
        step()
        T.record(time.perf_counter() - ts)  # no tuner (one, before): does nothing
        done += 1
    dt = time.perf_counter() - t0
    tuner = T.tuner()
    print(json.dumps({"config": config, "threads": torch.get_num_threads(), "steps": done,
                      "policy": {k: os.environ[k] for k in _WAIT_VARS if k in os.environ},
                      "changes": [] if tuner is None else [[a, b] for a, b, _ in tuner.changes],
                      "images_per_sec": done * 64 / dt}))


def _measure(config: str, steps: int, warmup: int, ours_seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (*_WAIT_VARS, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, __file__, "--worker", config, "--steps", str(steps), "--warmup",
                          str(warmup), "--ours-seconds", str(ours_seconds)], env=env, capture_output=True, text=True,
                         timeout=1200)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=CONFIGS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ours-seconds", type=float, default=150.0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.warmup, args.ours_seconds)
        return
    sys.path.insert(0, str(HERE))
    import _machine

    results: dict[str, list[float]] = {}
    threads: dict[str, int] = {}
    for r in range(args.rounds):
        for contended in (False, True):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if contended else None
            try:
                time.sleep(0.5 if busy else 0)
                for config in CONFIGS if r % 2 == 0 else CONFIGS[::-1]:
                    m = _measure(config, args.steps, args.warmup, args.ours_seconds)
                    key = f"{config}{' busy' if contended else ''}"
                    results.setdefault(key, []).append(m["images_per_sec"])
                    threads[config] = m["threads"]
                    print(f"round {r} {key:12s} {m['threads']} thread(s) at the end, switches {m['changes']}, "
                          f"{m['steps']} steps, policy {m['policy']}: {m['images_per_sec']:.1f} img/s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    med = {k: statistics.median(v) for k, v in results.items()}
    ratios = {"busy: ours / one": med["ours busy"] / med["one busy"],
              "busy: before / one": med["before busy"] / med["one busy"],
              "idle: ours / before": med["ours"] / med["before"],
              "idle: ours / one": med["ours"] / med["one"]}
    print("| configuration | threads | idle img/s | one core busy img/s |\n|---|---|---|---|")
    for c in CONFIGS:
        print(f"| {c} | {threads[c]} | {med[c]:.1f} | {med[c + ' busy']:.1f} |")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": _machine.machine(),
                                    "images_per_sec": results, "median": med, "threads": threads,
                                    "ratios": ratios, "steps": args.steps, "ours_seconds": args.ours_seconds,
                                    "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    main()
