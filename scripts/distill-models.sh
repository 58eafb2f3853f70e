#!/usr/bin/env bash
# The training runs behind models/: the bundled 1-bit student (copied to models/), the float baseline that is
# sign-rounded after training (post-training quantization), and the size/quality curve. Every run
# resumes from its checkpoint, so an interrupted script is simply started again.
#
#   bash scripts/distill-models.sh [RUN...]      RUN: bundled, scratch, ptq, curve-xs, curve-s, curve-m (default: all)
#
# Needs the fixtures (../shared/fixtures or $BONSAI_FIXTURES): the stories260K teacher and the
# TinyStories text. Outputs go to $BONSAI_DISTILL_DIR (default build/distill); `npx vite-node
# scripts/evaluate-students.ts` then measures them and writes models/quality.json and .svg.
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES=${BONSAI_FIXTURES:-../shared/fixtures}
OUT=${BONSAI_DISTILL_DIR:-build/distill}
THREADS=${BONSAI_THREADS:-$(nproc)}
mkdir -p "$OUT"

# Paragraphs 1-100 of the text are the test set (the fixture protocol), 101-200 validation; the
# student trains on the other 4,100 paragraphs and on 4,000 stories sampled from the teacher.
common=(--teacher "$FIXTURES/stories260K/stories260K.gguf" --data "$FIXTURES/tinystories/tinystories_val_head.txt"
        --skip-pieces 100 --val-pieces 100 --generate 4000 --threads "$THREADS" --resume)

run() {
  local name=$1; shift
  # the teacher's samples are the same for every run: made once, shared
  if [[ -f "$OUT/samples.bin" && ! -f "$OUT/$name.gguf.samples.bin" ]]; then cp "$OUT/samples.bin" "$OUT/$name.gguf.samples.bin"; fi
  echo "== $name: bonsai distill $*" >&2
  node dist/cli/main.js distill "${common[@]}" -o "$OUT/$name.gguf" "$@"
  [[ -f "$OUT/samples.bin" ]] || cp "$OUT/$name.gguf.samples.bin" "$OUT/samples.bin"
}

runs=("$@")
[[ ${#runs[@]} -gt 0 ]] || runs=(bundled scratch ptq curve-xs curve-s curve-m)
for r in "${runs[@]}"; do
  case $r in
    # the bundled model: 1,000 float steps, then 3,000 quantization-aware steps from those weights
    bundled) run bundled-float --shape xs --steps 1000 --float --eval-every 250
             run bundled --shape xs --steps 3000 --eval-every 250 --lr 2e-3 --init-from "$OUT/bundled-float.gguf.ckpt"
             cp "$OUT/bundled.gguf" models/tinystories-xs-q1_0.gguf ;;
    # the same shape trained quantization-aware from random weights for 6,000 steps
    scratch) run scratch --shape xs --steps 6000 --eval-every 500 ;;
    # the curve-xs shape and budget, trained in float, then written as float and sign-rounded
    ptq) run ptq-float --shape xs --steps 500 --float --type f32
         run ptq-rounded --checkpoint "$OUT/ptq-float.gguf.ckpt" --shape xs --steps 500 --float ;;
    curve-xs) run curve-xs --shape xs --steps 500 ;;
    curve-s) run curve-s --shape s --steps 500 ;;
    curve-m) run curve-m --shape m --steps 500 ;;
    *) echo "unknown run '$r' (bundled, scratch, ptq, curve-xs, curve-s, curve-m)" >&2; exit 2 ;;
  esac
done
