#!/usr/bin/env bash
# Exact-likelihood models on the 28×28 datasets (issue 7): train one family on one dataset for a step budget on one
# thread, then its exact test bits/dim (all test images) and its pictures. Results: runs/exact/DATA/MODEL/eval_test.json.
#   bash benchmarks/exact_models.sh MODEL DATA STEPS [BATCH]
# e.g. bash benchmarks/exact_models.sh realnvp mnist5k 1200
# Two of these run side by side on a 2-core machine (one thread each: no oversubscription).
set -euo pipefail
MODEL=$1; DATA=$2; STEPS=$3; BATCH=${4:-64}
RUN=runs/exact/$DATA/$MODEL
export OMP_NUM_THREADS=1
if [ -f "$RUN/train_state.pt" ]; then
  genmodels train --out "$RUN" --resume --steps "$STEPS" --threads 1 --no-progress
else
  genmodels train "$MODEL" --data "$DATA" --out "$RUN" --steps "$STEPS" --batch-size "$BATCH" --lr 1e-3 \
    --threads 1 --sample-every 0 --log-every 100 --no-progress
fi
genmodels evaluate "$RUN" --no-progress > "$RUN/eval.log" 2>&1
genmodels pictures "$RUN" > "$RUN/pictures.log" 2>&1
python - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
e = json.load(open(run + "/eval_test.json"))
m = [json.loads(l) for l in open(run + "/metrics.jsonl")][-1]
print(f"{run}: {e['nll_kind']} test bits/dim {e['bpd']:.4f} ± {e['bpd_stderr']:.4f} ({e['examples']} images), "
      f"{m['step']} steps, {m['seconds'] / 60:.1f} min")
PY
