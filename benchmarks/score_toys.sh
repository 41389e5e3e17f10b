#!/usr/bin/env bash
# Score-based models against DDPM on the 2-D toys (issue 6): train each for the same steps, draw 1000 samples with
# each family's own sampler at ≈ 1000 network evaluations, and score them against held-out data (sliced W2, exact W2
# by POT, MMD²) with the real-vs-real floor. Results: runs/score_toys/TOY/MODEL[_sSEED]/nfe_sweep/sweep.json;
# `python benchmarks/score_toys_summary.py` tabulates them over seeds (mean ± s.d.).
#   SEED=1 THREADS=1 bash benchmarks/score_toys.sh [STEPS] [TOYS...]      # SEED (default 0): weights, data order, sampler
set -euo pipefail
STEPS=${1:-4000}; shift || true
TOYS=${@:-8gaussians moons}
SEED=${SEED:-0}
THREADS=${THREADS:-2}   # torch threads per process (1 when two jobs share 2 cores)
export OMP_NUM_THREADS=$THREADS
OUT=runs/score_toys
SUFFIX=$([ "$SEED" = 0 ] && echo "" || echo "_s$SEED")
COMMON=(--steps "$STEPS" --lr 1e-3 --threads "$THREADS" --no-progress --log-every 1000 --seed "$SEED")
for toy in $TOYS; do
  declare -A RUNS=(
    [ebm_dsm]="ebm --set loss_type=dsm"
    [ebm_ssm]="ebm --set loss_type=ssm"
    [ebm_esm]="ebm --set loss_type=esm"
    [ncsn]="ncsn"
    [ddpm]="ddpm"
  )
  for name in ebm_dsm ebm_ssm ebm_esm ncsn ddpm; do
    run=$OUT/$toy/$name$SUFFIX
    [ -f "$run/model.safetensors" ] || genmodels train ${RUNS[$name]} --data "$toy" --out "$run" "${COMMON[@]}"
    case $name in
      ebm_*) sampler=langevin; nfe=1001 ;;
      ncsn) sampler=annealed; nfe=1001 ;;
      ddpm) sampler=ancestral; nfe=1000 ;;
    esac
    genmodels evaluate "$run" --sampler "$sampler" --nfe "$nfe" --n 1000 --seed "$SEED" --no-progress \
      > "$run/sweep.log" 2>&1
    python - "$run" <<'PY'
import json, sys
d = json.load(open(sys.argv[1] + "/nfe_sweep/sweep.json"))
for r in d["rows"]:
    q = r["quality"]
    print(f"{sys.argv[1]}: {r['sampler']} NFE {r['nfe']}  sliced W2 {q['sliced_w2']:.4f} (floor {q['sliced_w2_floor']:.4f})  "
          f"W2 {q['w2']:.4f} (floor {q['w2_floor']:.4f})  MMD² {q['mmd2']:.5f}")
PY
  done
done
