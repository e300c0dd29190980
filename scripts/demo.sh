#!/usr/bin/env bash
# The main job: the whole method on Fashion-MNIST in under 10 minutes on 2 CPU cores, set-up
# included (docs/benchmarks.md, "The main job").
#   1. check and analyse the zoo; diff ResNet against the two-step family;
#   2. search the family x_<n+1> = x_n + a*x_<n-1> + F(x_n) over a in [-0.9, 0.9]: the analysis
#      rejects the expanding members untrained (--require stable), Hyperband stops poor trials
#      early, selection is on a validation split held out from the training set; the search
#      ranks on a small budget (2 epochs of 18,000 images per trial);
#   3. confirm the best member against ResNet: both retrained with the full recipe (4 epochs)
#      and 3 seeds on all 60,000 training images and tested on all 10,000 test images, with a
#      paired t-test.
# Outputs in out/demo/ (FORMULAC_DEMO_OUT): report.md (a one-page report), leaderboard.json,
# best.rec, history.png, properties.png, confirm/ (the confirmation's runs and comparison),
# phases.tsv (each phase's wall and CPU seconds).
set -euo pipefail
START=$(date +%s.%N)
cd "$(dirname "$0")/.."
OUT=${FORMULAC_DEMO_OUT:-out/demo}
mkdir -p "$OUT"
PHASES="$OUT/phases.tsv"
printf 'phase\tstart_unix\twall_s\tcpu_s\n' >"$PHASES"
PHASE=setup
PHASE_START=$START
PHASE_CPU=0

children_cpu() {  # CPU seconds (user + system) of every finished child process so far
  # `times` is a builtin run in this shell: in a $(...) subshell it would count no children
  times >"$OUT/.times"
  CHILDREN_CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] }
    printf "%.1f", s }' "$OUT/.times")
}

next_phase() {  # end the current phase (its wall and CPU seconds to $PHASES), start the next
  local now cpu
  now=$(date +%s.%N)
  children_cpu
  cpu=$CHILDREN_CPU
  awk -v p="$PHASE" -v t0="$PHASE_START" -v t1="$now" -v c0="$PHASE_CPU" -v c1="$cpu" \
    'BEGIN { printf "%s\t%.1f\t%.1f\t%.1f\n", p, t0, t1 - t0, c1 - c0 }' >>"$PHASES"
  PHASE=$1
  PHASE_START=$now
  PHASE_CPU=$cpu
}

bash scripts/setup.sh demo  # the demo extra only: no test tools, no system packages
FC=.venv/bin/formulac

# FORMULAC_DEMO_DATA=synthetic runs it all on the synthetic data set (a quick check)
DATA=${FORMULAC_DEMO_DATA:-fashion-mnist}
have_fashion() { [ -e /usr/share/datasets/fashion-mnist ] || [ -n "${FORMULAC_DATA:-}" ]; }
if [ "$DATA" = fashion-mnist ] && ! have_fashion && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
    || echo "could not install dataset-fashion-mnist"
fi
if [ "$DATA" = fashion-mnist ] && have_fashion; then
  DATA_NAME="Fashion-MNIST"
  INPUT=(--in-channels 1 --input-size 28)
else
  [ "$DATA" = fashion-mnist ] && echo "Fashion-MNIST is not available here: the search and the confirmation run on the synthetic data set instead"
  DATA=synthetic
  DATA_NAME="the synthetic data set (not Fashion-MNIST)"
  INPUT=(--in-channels 3 --input-size 32)
fi

next_phase analysis
echo "== check the zoo"
$FC check examples/*.rec
echo "== analyze: ResNet, and the two-step family with its coefficient a left free"
$FC analyze examples/resnet.rec --depth 8
$FC analyze examples/two_step_free.rec --depth 8
$FC diff examples/resnet.rec examples/two_step_free.rec --depth 8 || true  # exit 1: "they differ"

# The network of every run: ResNet-8 on cifar-resnet, stages of 32/64/128 channels at half
# resolution (a stride-2 stem), 4 epochs of the fashion recipe: the cheapest point measured
# that stays above 91.6 % on the test set with a margin (docs/benchmarks.md).
NET=(--backbone cifar-resnet --depth 8 -O width=32 -O stem_stride=2)
$FC info examples/two_step_free.rec --set a=-0.5 "${NET[@]}" "${INPUT[@]}"

next_phase search+confirmation
echo "== search the two-step family on $DATA_NAME, then confirm the best member against ResNet"
# a fresh study each time (the same command would otherwise continue the finished one)
rm -rf "$OUT/study.db" "$OUT/study.db-wal" "$OUT/study.db-shm" "$OUT/study.db.lock" \
  "$OUT/trials" "$OUT/confirm" "$OUT/timings.jsonl"
# 8 trials over a in [-0.9, 0.9] (the positive half expands and is rejected untrained), two
# single-thread workers (one per core). The search only ranks the members, so it trains each on
# a small budget: 2 epochs of the first 20,000 training images (18,000 train, 2,000 held out to
# select on), Hyperband stopping the poor ones after epoch 1. The confirmation retrains the best
# and ResNet with the full recipe (4 epochs on all 60,000 images), 3 seeds, two runs at a time,
# and tests them on all 10,000 test images. The budget (docs/benchmarks.md): the confirmation
# takes about two thirds of the 10 minutes; with sampler seed 0, 4 of the 8 draws expand and are
# rejected, and each worker trains 3 or 4 epochs of 18,000 images.
$FC search examples/two_step_free.rec --space a=-0.9:0.9 --require stable \
  --trials 8 --workers 2 --threads 1 --sampler-seed 0 "${NET[@]}" --data "$DATA" --recipe fashion \
  --limit-train 20000 --epochs 2 \
  --confirm 1 --seeds 3 --baseline examples/resnet_post.rec --confirm-epochs 4 --confirm-limit-train all \
  --out "$OUT"

next_phase report
echo "== the confirmation on the test set: the verdict"
.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["confirmation"]["text"])' \
  "$OUT/leaderboard.json"
echo "== the winner, read back by the analyser"
$FC analyze "$OUT/best.rec" --depth 8
next_phase done

TOTAL=$(awk -v t0="$START" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }')
children_cpu
printf 'total\t%s\t%s\t%s\n' "$START" "$TOTAL" "$CHILDREN_CPU" >>"$PHASES"
rm -f "$OUT/.times"
echo "== done in $(printf '%.0f' "$TOTAL") s on $DATA_NAME; in $OUT:"
echo "   report.md         the one-page report: leaderboard, figures, confirmation"
echo "   leaderboard.json  every trial (values, state, validation accuracy, analysis) and the confirmation"
echo "   best.rec          the winning formula (formulac analyze $OUT/best.rec)"
echo "   history.png, properties.png, objective.png   the figures"
echo "   confirm/          the confirmation's runs; confirm/comparison.md its table and tests"
echo "   phases.tsv        wall and CPU seconds of each phase"
