#!/usr/bin/env python
"""Summary of benchmarks/precision_quality.sh: per model, the training images/s of each precision (median over the
logged windows, the two runs side by side), and the test bounds with the paired difference on the same examples
(each run's per-example nats, same evaluation seed), in bits/dim.

    python benchmarks/precision_summary.py runs/precision
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np


def _speed(run: Path) -> float:
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(l["images_per_sec"] for l in lines if "images_per_sec" in l)


def _eval(run: Path, precision: str) -> tuple[dict, np.ndarray]:
    return (json.loads((run / f"eval_test_{precision}.json").read_text()),
            np.load(run / f"eval_test_{precision}.npy"))


def main(out: Path) -> None:
    rows = []
    for model in ("ddpm", "vdm"):
        fp32, bf16 = out / f"{model}-fp32", out / f"{model}-bf16"
        if not (fp32 / "eval_test_fp32.json").exists():
            continue
        (e32, n32), (e16, n16), (e16b, n16b) = _eval(fp32, "fp32"), _eval(bf16, "fp32"), _eval(bf16, "bf16")
        dim = e32["nats"] / e32["bpd"] / math.log(2)  # nats = bpd · D · ln 2

        def diff(a: np.ndarray, b: np.ndarray, dim: float = dim) -> str:
            d = (a - b) / (dim * math.log(2))
            return f"{d.mean():+.4f} ± {d.std(ddof=1) / math.sqrt(len(d)):.4f}"

        s32, s16 = _speed(fp32), _speed(bf16)
        rows.append(f"| {model} | {s32:.1f} | {s16:.1f} | {s16 / s32:.2f}× | {e32['bpd']:.4f} | {e16['bpd']:.4f} | "
                    f"{diff(n16, n32)} | {e16b['bpd']:.4f} | {diff(n16b, n16)} | {len(n32)} |")
    print("| model | fp32 img/s | bf16 img/s | bf16/fp32 | bound fp32-trained | bound bf16-trained | "
          "Δ training (paired) | bf16-trained, evaluated in bf16 | Δ evaluation (paired) | test images |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/precision"))
