#!/usr/bin/env bash
# bf16 against fp32 training (issue 18): the Fashion-MNIST DDPM and VDM, trained from the same seed for the same
# number of steps in each precision (two single-thread processes side by side, passive OpenMP waits), then each
# run's test bound evaluated on the same examples with the same seed in fp32 (the training precision's effect), and
# the bf16 run's bound also evaluated in bf16 (the evaluation precision's effect). Summary:
# benchmarks/precision_summary.py (paired differences on the same examples).
#
#   STEPS=1000 LIMIT=2000 OUT=runs/precision bash benchmarks/precision_quality.sh
set -euo pipefail
STEPS=${STEPS:-1000}
LIMIT=${LIMIT:-2000}
OUT=${OUT:-runs/precision}
MODELS=${MODELS:-"ddpm vdm"}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
for m in $MODELS; do
  for p in fp32 bf16; do
    [ -f "$OUT/$m-$p/train_state.pt" ] && continue
    genmodels train "$m" --data fashion-mnist --steps "$STEPS" --precision "$p" --threads 1 --sample-every 0 \
      --no-progress --out "$OUT/$m-$p" > "$OUT/$m-$p.train.log" 2>&1 &
  done
  wait
  for spec in fp32:fp32 bf16:fp32 bf16:bf16; do
    p=${spec%%:*}; e=${spec##*:}
    genmodels evaluate "$OUT/$m-$p" --limit "$LIMIT" --precision "$e" --threads 1 --no-progress \
      --out "$OUT/$m-$p/eval_test_$e.json" > "$OUT/$m-$p.eval_$e.log" 2>&1 &
    [ "$spec" = "bf16:fp32" ] && wait
  done
  wait
done
python "$(dirname "$0")/precision_summary.py" "$OUT"
