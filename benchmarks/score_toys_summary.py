"""Tabulate `benchmarks/score_toys.sh` over seeds: mean ± s.d. (over seeds) of sliced W2, exact W2 and MMD² for each
toy and model, with the real-vs-real floor, as a Markdown table. The floor moves with the seed (the held-out points
and the real sample it scores are drawn with it), so the sliced W2 is also given minus its own seed's floor.

    python benchmarks/score_toys_summary.py [runs/score_toys]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LABELS = {
    "ebm_dsm": "EBM (DSM σ = 0.1; Langevin)",
    "ebm_ssm": "EBM (sliced SM; Langevin)",
    "ebm_esm": "EBM (explicit SM, exact trace; Langevin)",
    "ncsn": "NCSN (multi-σ DSM; annealed Langevin)",
    "ddpm": "DDPM (L_simple; ancestral)",
}
METRICS = ("sliced_w2", "w2", "mmd2")


def fmt(values: list[float], digits: int) -> str:
    """'mean ± s.d.' over seeds (just the value for one seed)."""
    m = statistics.fmean(values)
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(root: Path) -> None:
    """Print the Markdown table of every sweep.json under ``root``."""
    table: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    floors: dict[tuple[str, str], dict[str, float]] = {}  # (toy, seed) -> the floor of that seed's samples
    nfe: dict[tuple[str, str], int] = {}
    for sweep in sorted(root.glob("*/*/nfe_sweep/sweep.json")):
        toy, run = sweep.parts[-4], sweep.parts[-3]
        seeded = "_s" in run and run.rsplit("_s", 1)[1].isdigit()
        model, seed = run.rsplit("_s", 1) if seeded else (run, "0")
        row = json.loads(sweep.read_text())["rows"][0]
        nfe[toy, model] = row["nfe"]
        for k in METRICS:
            table[toy, model][k].append(row["quality"][k])
        table[toy, model]["excess"].append(row["quality"]["sliced_w2"] - row["quality"]["sliced_w2_floor"])
        floors[toy, seed] = {k: row["quality"][f"{k}_floor"] for k in METRICS}
    print("| toy | model (loss; sampler, NFE) | seeds | sliced W2 | sliced W2 − floor (same seed) | exact W2 (POT) "
          "| MMD² |")
    print("|---|---|---|---|---|---|---|")
    for toy in sorted({t for t, _ in table}):
        for model in LABELS:
            if (toy, model) not in table:
                continue
            v = table[toy, model]
            label = LABELS[model].replace(")", f", {nfe[toy, model]})")
            print(f"| {toy} | {label} | {len(v['w2'])} | {fmt(v['sliced_w2'], 3)} | {fmt(v['excess'], 3)} | "
                  f"{fmt(v['w2'], 3)} | {fmt(v['mmd2'], 4)} |")
        f = {k: [fl[k] for (t, _), fl in floors.items() if t == toy] for k in METRICS}
        print(f"| {toy} | *floor (real vs real)* | | *{fmt(f['sliced_w2'], 3)}* | | *{fmt(f['w2'], 3)}* | "
              f"*{fmt(f['mmd2'], 4)}* |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/score_toys"))
