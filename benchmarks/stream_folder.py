#!/usr/bin/env python
"""A folder of N RGB 32×32 PNGs trained streamed from disk against the same folder held in memory (issue 18).

Writes N PNGs (default 200 000; smooth random blobs, so they compress like photos rather than noise) once, then
trains ``genmodels train ddpm`` on ``folder:DIR?stream=true`` and on ``folder:DIR?stream=false`` (uint8 levels in
memory) with the same settings, alternating, each for ``--steps`` steps after loading. Reported per mode: images/s
of the last logged window (the first excludes start-up), the peak resident memory of the process tree (sum of RSS,
which counts pages shared by forked DataLoader workers in each; and the sum of PSS, which splits them fairly), and
the start-up seconds. The issue's bar: streamed PSS < 1.5 GB and streamed images/s ≥ 0.9× in memory.

    python benchmarks/stream_folder.py --n 200000 --steps 60 --dir /tmp/png200k
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_pngs(root: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    have = len(list(root.glob("*.png")))
    if have >= n:
        return
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(have, n):
        c = rng.uniform(0, 32, (3, 2))
        img = np.stack([127 + 120 * np.sin(xx / (3 + c[k, 0] / 4) + yy / (3 + c[k, 1] / 4)) for k in range(3)], -1)
        Image.fromarray(img.astype(np.uint8)).save(root / f"{i // 1000:03d}_{i:06d}.png")


def _tree(pid: int) -> list[int]:
    kids = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        return []
    return [pid] + [p for k in kids for p in _tree(k)]


def _memory(pids: list[int]) -> tuple[int, int]:
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def train(root: Path, stream: str, steps: int, out: Path, threads: int, workers: int | None) -> dict:
    run = out / f"run-{stream}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    cmd = [str(Path(sys.executable).parent / "genmodels"), "train", "ddpm", "--data", f"folder:{root}?stream={stream}",
           "--steps", str(steps), "--batch-size", "64", "--channels", "16", "--threads", str(threads),
           "--sample-every", "0", "--log-every", str(steps // 3), "--checkpoint-every", "0", "--no-progress",
           "--precision", "fp32", "--out", str(run)] + (["--workers", str(workers)] if workers is not None else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = _memory(_tree(proc.pid))
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.5)
    err = proc.stderr.read()
    if proc.returncode:
        raise RuntimeError(err[-2000:])
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_seconds = lines[-1]["seconds"]
    return {"stream": stream, "images_per_sec": lines[-1]["images_per_sec"], "peak_rss_gb": peak_rss / 1e9,
            "peak_pss_gb": peak_pss / 1e9, "wall_seconds": time.perf_counter() - t0,
            "startup_seconds": time.perf_counter() - t0 - train_seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/png200k"))
    ap.add_argument("--out", type=Path, default=Path("runs/stream_folder"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    write_pngs(args.dir, args.n)
    print(f"{args.n} PNGs in {args.dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in range(args.rounds):
        for stream in ("true", "false") if r % 2 == 0 else ("false", "true"):
            row = train(args.dir, stream, args.steps, args.out, args.threads, args.workers)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    best = {s: max(r["images_per_sec"] for r in rows if r["stream"] == s) for s in ("true", "false")}
    print(f"streamed / in memory images/s: {best['true'] / best['false']:.2f}")


if __name__ == "__main__":
    main()
