"""The tables of benchmarks/conditional.sh, from the run folders it wrote (markdown on stdout).

    python benchmarks/conditional_summary.py benchmarks/results/conditional

Table 1 (mnist5k): per family, the unconditional and the conditional run at the same budget: steps trained, test
bits/dim of −log p(x) (unconditional run), of −log p(x | y), of the conditional run's own marginal
−log Σ_y p(y) p(x | y) and of −log p(x | ∅); the paired difference −log p(x | y) − (−log p(x)) in nats per image
with its paired standard error (the same test images: example difficulty cancels); the generative classifier's
accuracy and the feature classifier's on the same images. Table 2: the guidance sweep (RUN/guidance_sweep/sweep.md).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np


def _steps(run: Path) -> tuple[int, float]:
    """(steps, minutes) of a run's last metrics line."""
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in last if "step" in r and "seconds" in r]
    return (rows[-1]["step"], rows[-1]["seconds"] / 60) if rows else (0, float("nan"))


def main() -> None:
    """Print the tables described in the module docstring."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/conditional")
    print("| family | steps (uncond / cond) | −log p(x), uncond. run | −log p(x \\| y) | −log Σ p(y)p(x \\| y) | "
          "−log p(x \\| ∅) | Δ = −log p(x\\|y) − (−log p(x)), nats/image | generative classifier | "
          "feature classifier |")
    print("|---|---|---|---|---|---|---|---|---|")
    for family in ("ddpm", "vae", "pixelcnn", "realnvp"):
        u, c = out / f"m5k-{family}", out / f"m5k-{family}-cond"
        if not (u / "eval_test.json").is_file() or not (c / "eval_test.json").is_file():
            continue
        eu, ec = json.loads((u / "eval_test.json").read_text()), json.loads((c / "eval_test.json").read_text())
        a, b = np.load(u / "eval_test.npy"), np.load(c / "eval_test.npy")
        d = b - a
        cond = ec["conditional"]
        (su, mu), (sc, mc) = _steps(u), _steps(c)
        kind = eu["nll_kind"]
        print(f"| {family} ({kind}) | {su} / {sc} ({mu:.1f} / {mc:.1f} min) | "
              f"{eu['bpd']:.4f} ± {eu['bpd_stderr']:.4f} | {ec['bpd']:.4f} ± {ec['bpd_stderr']:.4f} | "
              f"{cond['marginal_bpd']:.4f} ± {cond['marginal_bpd_stderr']:.4f} | "
              f"{cond['null_bpd']:.4f} | {d.mean():+.2f} ± {d.std(ddof=1) / math.sqrt(len(d)):.2f} | "
              f"{cond['accuracy']:.1%} | {cond.get('feature_classifier_accuracy', float('nan')):.1%} |")
    sweep = out / "fm-ddpm-cond" / "guidance_sweep" / "sweep.md"
    if sweep.is_file():
        print("\nFashion-MNIST, conditional DDPM, guidance sweep (DDIM 50 steps):\n")
        print(sweep.read_text())


if __name__ == "__main__":
    main()
