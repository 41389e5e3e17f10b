"""Paired comparison of per-example NLLs saved by `genmodels evaluate` (the .npy next to each eval JSON).

Two models evaluated on the same examples: the standard error of the *difference* of their means is far smaller
than either mean's own standard error (example difficulty cancels), so this is how to tell whether one bound is
really lower than another.

    python benchmarks/paired_nll.py --dim 784 runs/a/eval_test_iwae5000.npy runs/b/eval_test_iwae5000.npy ...

prints, for each file, its mean NLL (nats per example and bits/dim) with its standard error, and its difference to
the first file with the paired standard error.
"""

from __future__ import annotations

import argparse
import math

import numpy as np


def main() -> None:
    """Print the table described in the module docstring (markdown)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help=".npy files of per-example NLLs in nats (the first is the reference)")
    ap.add_argument("--dim", type=int, required=True, help="dimensions per example (784 for 28×28 images)")
    args = ap.parse_args()
    arrays = [np.load(f).astype(np.float64) for f in args.files]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise SystemExit(f"the files hold different numbers of examples: {[len(a) for a in arrays]}")
    bpd = 1.0 / (args.dim * math.log(2))
    print(f"{n} examples; differences against {args.files[0]} (negative: lower NLL than it)\n")
    print("| file | nats | bits/dim | Δ nats (paired s.e.) | Δ bits/dim |")
    print("|---|---|---|---|---|")
    for f, a in zip(args.files, arrays, strict=True):
        d = a - arrays[0]
        se = a.std(ddof=1) / math.sqrt(n)
        dse = d.std(ddof=1) / math.sqrt(n)
        print(f"| {f} | {a.mean():.2f} ± {se:.2f} | {a.mean() * bpd:.4f} ± {se * bpd:.4f} | "
              f"{d.mean():+.2f} ± {dse:.2f} | {d.mean() * bpd:+.4f} ± {dse * bpd:.4f} |")


if __name__ == "__main__":
    main()
