#!/usr/bin/env bash
# Conditional generation (issue 16), every number of BENCHMARKS.md's "Conditional generation" section:
#
#  1. mnist5k, four families (DDPM, VAE, PixelCNN, RealNVP), each trained unconditionally and class-conditionally for
#     the same number of steps (batch 64; a wall-clock cap MINUTES stops both if the machine is slow), side by side on
#     one thread each: the test NLL of both, the paired difference
#     −log p(x | y) − (−log p(x)) in nats per image (benchmarks/paired_nll.py on the per-example files), and the
#     conditional model's generative-classifier accuracy on the 1000 test images (`evaluate --classify`).
#  2. Fashion-MNIST: a class-conditional DDPM, the guidance sweep over w ∈ {0, 0.5, 1, 2, 4} (`genmodels guidance`),
#     the per-class grid at the best w, and RePaint / replacement inpainting of test images.
#  3. Fashion-MNIST: an unconditional PixelCNN and its exact raster-order completion of the same test images.
#
# Usage: bash benchmarks/conditional.sh [OUT] (default benchmarks/results/conditional). Budgets: STEPS_<family>
# (mnist5k: ddpm 400, vae 3000, pixelcnn 500, realnvp 600), MINUTES (their cap, default 20), FMNIST_STEPS (the
# Fashion-MNIST DDPM, default 1843, capped at FMNIST_MINUTES = 120), PIXELCNN_MINUTES (default 18). Two jobs run at a time,
# one thread each, with OpenMP waiting passively (a busy core then costs little: BENCHMARKING.md). Rerunning resumes
# every unfinished training run and skips finished steps.
set -euo pipefail
OUT=${1:-benchmarks/results/conditional}
MINUTES=${MINUTES:-20}
declare -A STEPS=([ddpm]=${STEPS_ddpm:-400} [vae]=${STEPS_vae:-3000} [pixelcnn]=${STEPS_pixelcnn:-500}
                  [realnvp]=${STEPS_realnvp:-600})
FMNIST_MINUTES=${FMNIST_MINUTES:-120}
FMNIST_STEPS=${FMNIST_STEPS:-1843}
PIXELCNN_MINUTES=${PIXELCNN_MINUTES:-18}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
G="genmodels"

train() {  # train NAME MODEL DATA MINUTES STEPS [flags...]: a run in $OUT/NAME, resumed if it exists
  local name=$1 model=$2 data=$3 minutes=$4 steps=$5; shift 5
  if [[ -f $OUT/$name/train_state.pt ]]; then  # a finished run is refused ("nothing left to train"): go on
    $G train --out "$OUT/$name" --resume --minutes "$minutes" --steps "$steps" --threads 1 --no-progress \
      >>"$OUT/$name.train.log" 2>&1 || true
  else
    $G train "$model" --data "$data" --out "$OUT/$name" --minutes "$minutes" --steps "$steps" --threads 1 \
      --sample-every 0 --no-progress "$@" >"$OUT/$name.train.log" 2>&1
  fi
}

evaluate() {  # evaluate NAME [flags...]: test NLL (+ per-example .npy) into $OUT/NAME/eval_test.json
  local name=$1; shift
  [[ -f $OUT/$name/eval_test.json ]] || $G evaluate "$OUT/$name" --threads 1 --no-progress "$@" >/dev/null
}

# PHASE=mnist5k or PHASE=fmnist runs one part (default: both, then the tables)
if [[ ${PHASE:-all} != fmnist ]]; then
# 1. mnist5k: unconditional and conditional at the same budget, two at a time (JOBS=1: one)
FAMILIES=(${FAMILIES:-ddpm vae pixelcnn realnvp})
for f in "${FAMILIES[@]}"; do  # JOBS=1 runs them one at a time (beside a Fashion-MNIST run, say)
  train "m5k-$f" "$f" mnist5k "$MINUTES" "${STEPS[$f]}" & [[ ${JOBS:-2} == 1 ]] && wait
  train "m5k-$f-cond" "$f" mnist5k "$MINUTES" "${STEPS[$f]}" --conditional &
  wait
done
for f in "${FAMILIES[@]}"; do
  evaluate "m5k-$f" & [[ ${JOBS:-2} == 1 ]] && wait
  evaluate "m5k-$f-cond" --classify &
  wait
done

fi
if [[ ${PHASE:-all} != mnist5k ]]; then
# 2 and 3. Fashion-MNIST: the conditional DDPM and the PixelCNN side by side
train fm-ddpm-cond ddpm fashion-mnist "$FMNIST_MINUTES" "$FMNIST_STEPS" --conditional --lr 1e-3 --checkpoint-every 500 &
train fm-pixelcnn pixelcnn fashion-mnist "$PIXELCNN_MINUTES" 1000000 --lr 1e-3 &
wait
[[ -f $OUT/fm-ddpm-cond/guidance_sweep/sweep.json ]] || \
  $G guidance "$OUT/fm-ddpm-cond" --scales 0,0.5,1,2,4 --sampler ddim --steps 50 --n-per-class 20 --threads 1 \
    --no-progress >"$OUT/fm-guidance.json" &
$G inpaint "$OUT/fm-pixelcnn" --images test:0-15 --mask top --samples 2 --threads 1 --no-progress \
  --out "$OUT/inpaint_pixelcnn_top.png" >"$OUT/inpaint_pixelcnn.json"
$G inpaint "$OUT/fm-ddpm-cond" --images test:0-15 --mask top --method repaint --steps 100 --jump-length 10 \
  --jump-n-sample 5 --samples 2 --threads 1 --no-progress --out "$OUT/inpaint_repaint_top.png" >"$OUT/inpaint_repaint.json"
$G inpaint "$OUT/fm-ddpm-cond" --images test:0-15 --mask top --method replace --steps 100 --samples 2 \
  --threads 1 --no-progress --out "$OUT/inpaint_replace_top.png" >"$OUT/inpaint_replace.json"
wait
# the per-class grid at the w with the lowest Fréchet distance among those recognized ≥ 90% (else the most recognized)
best=$(python -c "import json; r=json.load(open('$OUT/fm-ddpm-cond/guidance_sweep/sweep.json'))['rows']; \
ok=[x for x in r if x['class_accuracy'] >= 0.9]; \
print((min(ok, key=lambda x: x['quality']['fd']) if ok else max(r, key=lambda x: x['class_accuracy']))['guidance_scale'])")
$G sample "$OUT/fm-ddpm-cond" --class all --n 100 --guidance "$best" --sampler ddim --steps 50 --threads 1 \
  --no-progress --out "$OUT/fm_per_class_w$best.png" >"$OUT/fm-per-class.json"
fi

# the tables
python benchmarks/conditional_summary.py "$OUT"
