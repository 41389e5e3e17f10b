#!/usr/bin/env python
"""``genmodels train`` in fp32 at one thread: this checkout against an earlier commit, in the same run (issue 18's
"fp32 stays": precision, threads and uint8 data reworked the trainer; its fp32 step must not get slower).

Each measurement is a fresh process running that version's command line,
``genmodels train ddpm --data fashion-mnist --steps N --threads 1 --log-every 5`` (the CLI's default DDPM, batch 64;
this checkout adds ``--precision fp32``, the earlier commit has no such option and trains in fp32), and reads the
images/s of the logged windows from its ``metrics.jsonl``, the first window (start-up) left out. The earlier commit
runs from a ``git worktree`` with its ``src`` first on ``PYTHONPATH``. Rounds alternate the order; we report the
per-round ratio (this / earlier), its median and minimum (BENCHMARKING.md).

    python benchmarks/trainer_vs_commit.py --base 2889c39 --steps 30 --rounds 3   # 2889c39: before issue 18
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(src: Path, steps: int, new: bool, out: Path) -> float:
    """Median images/s of the logged windows after the first, for the CLI under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-c", "from genmodels.cli import app; app()", "train", "ddpm", "--data", "fashion-mnist",
           "--steps", str(steps), "--threads", "1", "--log-every", "5", "--out", str(out)]
    if new:
        cmd += ["--precision", "fp32"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out.parent)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    rates = [r["images_per_sec"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if "images_per_sec" in r]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the earlier commit")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.base], check=True,
                       capture_output=True)
        try:
            ratios = []
            for r in range(args.rounds):
                got = {}
                for name in ("this", "base") if r % 2 == 0 else ("base", "this"):
                    src = ROOT / "src" if name == "this" else tree / "src"
                    got[name] = measure(src, args.steps, name == "this", Path(tmp) / f"run-{name}-{r}")
                ratios.append(got["this"] / got["base"])
                print(f"round {r}: this {got['this']:.1f} img/s, {args.base} {got['base']:.1f} img/s, "
                      f"ratio {ratios[-1]:.3f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"this / {args.base}: median {statistics.median(ratios):.3f}, min {min(ratios):.3f} "
          f"(per round: {', '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()
