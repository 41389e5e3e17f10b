#!/usr/bin/env python
"""Training throughput with and without a competing busy process: our thread defaults against one thread and
against torch's own defaults (issue 18).

Configurations (each a fresh process: OpenMP reads its wait policy once, when torch loads):

- ``one``: 1 thread (``--threads 1``);
- ``before``: what ``genmodels train`` did before issue 18: torch's default thread count, no wait policy set
  (libgomp's default: spin for a while at each barrier, then sleep);
- ``ours``: what it does now: :func:`genmodels.threads.configure_threads` with no count (the usable cores, libgomp's
  default waits) and its :class:`~genmodels.threads.ThreadTuner` fed every step, as the trainer does. The tuner
  starts after the warm-up steps that every configuration skips, so its first probes (each candidate count tried
  for a step or two) are paid inside the measurement.

Every measurement runs for ``--seconds`` (default 60, at least ``--steps`` steps): the same window for all three,
because this machine's speed drifts over minutes (one thread, idle: 26–35 img/s across one run) and a short window
against a long one compares the drift. A 60 s window holds the tuner's start-up probes and no re-probe (every 120 s):
it charges the tuner more than a long run would.

Each is measured idle and while this script keeps one core busy with a spinning process it starts and stops itself
(``python -c "while True: pass"``). The step is the Fashion-MNIST DDPM's (batch 64, the CLI's default config):
``model.loss(x).mean()`` + backward + AdamW. Rounds alternate the configurations; per configuration we report the
median images/s over rounds, and the ratios the issue asks for, each taken within a round (the two configurations
run back to back), then their median and minimum over rounds (BENCHMARKING.md):

- contended ``ours`` / contended ``one`` (≥ 0.8);
- idle ``ours`` / idle ``before`` (within 5%).

Usage::

    python benchmarks/threads_contention.py                # 3 rounds × 6 measurements of 60 s (~20 minutes)
    python benchmarks/threads_contention.py --rounds 1 --steps 3 --seconds 5   # smoke
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
ORDER_IDLE = ("one", "before", "ours")
ORDER_BUSY = ("before", "one", "ours")
PAIRS = {"busy: ours / one": ("ours busy", "one busy"), "busy: before / one": ("before busy", "one busy"),
         "idle: ours / before": ("ours", "before"), "idle: ours / one": ("ours", "one")}
"""The ratios reported: per round (the two measured minutes apart at most), then their median and minimum."""
_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def worker(config: str, steps: int, warmup: int, seconds: float) -> None:
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
    while time.perf_counter() - t0 < seconds or done < steps:
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


def _measure(config: str, steps: int, warmup: int, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (*_WAIT_VARS, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, __file__, "--worker", config, "--steps", str(steps), "--warmup",
                          str(warmup), "--seconds", str(seconds)], env=env, capture_output=True, text=True,
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
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.warmup, args.seconds)
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
                order = ORDER_BUSY if contended else ORDER_IDLE  # the two configurations compared run back to back
                for config in order if r % 2 == 0 else order[::-1]:
                    m = _measure(config, args.steps, args.warmup, args.seconds)
                    key = f"{config}{' busy' if contended else ''}"
                    results.setdefault(key, []).append(m["images_per_sec"])
                    threads[key] = m["threads"]
                    print(f"round {r} {key:12s} {m['threads']} thread(s) at the end, switches {m['changes']}, "
                          f"{m['steps']} steps, policy {m['policy']}: {m['images_per_sec']:.1f} img/s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    med = {k: statistics.median(v) for k, v in results.items()}
    per_round = {k: [a / b for a, b in zip(results[num], results[den], strict=True)] for k, (num, den) in PAIRS.items()}
    ratios = {k: {"median": statistics.median(v), "min": min(v), "per_round": v} for k, v in per_round.items()}
    print("| configuration | idle: threads at the end | idle img/s | busy: threads at the end | one core busy img/s |\n"
          "|---|---|---|---|---|")
    for c in CONFIGS:
        print(f"| {c} | {threads[c]} | {med[c]:.1f} | {threads[c + ' busy']} | {med[c + ' busy']:.1f} |")
    for k, v in ratios.items():
        print(f"{k}: median {v['median']:.2f}, min {v['min']:.2f} (per round: "
              f"{', '.join(f'{x:.2f}' for x in v['per_round'])})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": _machine.machine(),
                                    "images_per_sec": results, "median": med, "threads": threads,
                                    "ratios": ratios, "steps": args.steps, "seconds": args.seconds,
                                    "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    main()
