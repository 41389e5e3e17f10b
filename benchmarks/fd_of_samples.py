"""Score saved samples (an ``.npz`` with key ``x``, as `genmodels sample` and the NFE sweep's cache write) against a
dataset's test split with the same metrics and floor as `genmodels evaluate --sampler`: Fréchet distance, KID and
precision/recall on the dataset's own classifier features. ``--n`` keeps the first N samples, so runs sampled at
different sizes can be compared at the same N (FD's bias grows as N shrinks).

    python benchmarks/fd_of_samples.py runs/fmnist/nfe_sweep/samples/ancestral_nfe1000_n500_seed1.npz \
        --data fashion-mnist --n 200 --seed 1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from genmodels.metrics.sample_quality import sample_quality


def main() -> None:
    """Parse the arguments and print one JSON line per sample file."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", nargs="+", help="sample files (.npz with key x)")
    ap.add_argument("--data", required=True, help="dataset name, e.g. fashion-mnist")
    ap.add_argument("--n", type=int, default=None, help="keep the first N samples of each file")
    ap.add_argument("--seed", type=int, default=1, help="seed of the metrics' random draws (the sweep uses its --seed)")
    args = ap.parse_args()
    rows = []
    for path in args.npz:
        x = torch.from_numpy(np.load(path)["x"]).float()
        if args.n is not None:
            if len(x) < args.n:
                raise SystemExit(f"{path}: {len(x)} samples, fewer than --n {args.n}")
            x = x[:args.n]
        q = sample_quality(x, args.data, generator=torch.Generator().manual_seed(args.seed))
        rows.append({"samples": path, "n": len(x), **{k: q[k] for k in ("fd", "fd_floor", "kid", "precision",
                                                                          "recall") if k in q}})
        print(json.dumps(rows[-1], default=float))


if __name__ == "__main__":
    main()
