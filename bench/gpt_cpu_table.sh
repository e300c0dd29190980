#!/usr/bin/env bash
# The CPU table of issue 17 (item 5): residual formulas on a small GPT, Debian's fortunes corpus
# (--data text:fortunes, bytes as tokens), 4 layers x 128 dimensions, 4 heads, context 128, a
# budget fixed in optimizer steps (so that machine load changes the time, never the result),
# 3 seeds per formula, compared by `formulac compare` (paired by seed: differences, confidence
# intervals, t-test, Wilcoxon, Friedman with Holm-adjusted p-values).
#
#   bash bench/gpt_cpu_table.sh [OUT]                  # the table (docs/benchmarks.md)
#   BUDGET=tiny bash bench/gpt_cpu_table.sh [OUT]      # a dry run of the same pipeline (minutes)
#   FORMULAS="pre_norm parallel" bash bench/gpt_cpu_table.sh   # a subset (the first is the baseline)
#   FORMULAS="pre_norm hyper_connections_k4 mhc_k4 denseformer_4x2" bash bench/gpt_cpu_table.sh  # issue 18's k = 4 table
#   TABLE_ONLY=1 bash bench/gpt_cpu_table.sh [OUT]     # no training: the table of what finished
#
# Each run uses one thread; JOBS (default 2) runs train at once, each under `nice -n 19` (NICE
# sets another niceness: under a load of 10+, niced runs got 2 % of a core). The
# formulas are trained one after the other (all seeds of one before the next), so that an
# interrupted table holds complete formulas; the same command again reuses finished runs and
# resumes unfinished ones. The last step compares every formula whose runs are all there and
# prints a table of wall and CPU seconds per run (CPU time is what load distorts least).
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
PY=${PYTHON:-.venv/bin/python}
BUDGET=${BUDGET:-full}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-3}
# name -> file: the transformer zoo (A = attention, M = MLP sublayer) and the learned-mixing
# formulas over whole pre-norm blocks (F)
declare -A FILE=(
  [pre_norm]=examples/transformers/pre_norm.rec
  [parallel]=examples/transformers/parallel.rec
  [rezero]=examples/transformers/rezero.rec
  [x0_mixing]=examples/transformers/x0_mixing.rec
  [momentum]=examples/transformers/momentum.rec
  [denseformer]=examples/denseformer.rec
  [hyper_connections_k2]=examples/hyper_connections_k2.rec
  [mhc_k2]=examples/mhc_k2.rec
  [laurel_rw]=examples/laurel_rw.rec
  [hyper_connections_k4]=examples/hyper_connections_k4.rec
  [mhc_k4]=examples/mhc_k4.rec
  [denseformer_4x2]=examples/denseformer_4x2.rec
)
# in order of training (an interrupted table holds the first ones): a learned-mixing formula
# early, so that even a short run compares both kinds
FORMULAS=${FORMULAS:-pre_norm parallel hyper_connections_k2 x0_mixing denseformer rezero mhc_k2 momentum laurel_rw}
if [ "$BUDGET" = tiny ]; then
  OUT=${1:-runs/gpt-cpu-table-tiny}
  SIZE=(--depth 1 -O dim=32 -O heads=2 -O context=32)
  RUN=(--epochs 1 --epoch-tokens 2048 --batch-size 8 --eval-windows 16)
else
  OUT=${1:-runs/gpt-cpu-table}
  # 2 epochs x 48 steps x 32 windows x 128 tokens = 96 steps, 393,216 training tokens: about
  # 50 s of CPU time a run (0.45 s a step on one thread), chosen so that 27 runs niced on the
  # shared 2-core machine had a chance to finish in the time there was (192 steps could not)
  SIZE=(--depth 4 -O dim=128 -O heads=4 -O context=128)
  RUN=(--epochs 2 --epoch-tokens 196608 --batch-size 32 --eval-windows 256)
fi
COMMON=(--backbone gpt "${SIZE[@]}" --data text:fortunes --recipe text "${RUN[@]}" --lr 2e-3
  --amp none --device cpu --threads 1 --seeds "$SEEDS" --no-progress --quiet)
mkdir -p "$OUT"
for name in $FORMULAS; do
  [ -n "${FILE[$name]:-}" ] || { echo "unknown formula $name (one of ${!FILE[*]})" >&2; exit 2; }
done

if [ "${2:-}" = --one ]; then  # one formula's seeds (a compare of it alone), called by xargs below
  name=$3
  nice -n "${NICE:-19}" "$PY" -m formulac compare "${FILE[$name]}" "${COMMON[@]}" -o "$OUT" \
    > "$OUT/logs/$name.log" 2>&1 && echo "$(date -u +%H:%M:%S) $name done" \
    || echo "$(date -u +%H:%M:%S) $name FAILED (see $OUT/logs/$name.log)"
  exit 0
fi
mkdir -p "$OUT/logs"
if [ -z "${TABLE_ONLY:-}" ]; then
  printf '%s\n' $FORMULAS | BUDGET=$BUDGET SEEDS=$SEEDS xargs -P "$JOBS" -I{} bash "$SELF" "$OUT" --one {}
fi

# the formulas whose every seed finished, the first given formula first
DONE=()
for name in $FORMULAS; do
  all=1
  for ((s = 0; s < SEEDS; s++)); do [ -f "$OUT/$name/seed$s/summary.json" ] || all=0; done
  [ $all = 1 ] && DONE+=("$name")
done
if [ ${#DONE[@]} -lt 2 ]; then
  echo "fewer than two formulas finished: ${DONE[*]:-none}" >&2
  exit 1
fi
COPIES=()
for name in "${DONE[@]}"; do COPIES+=("${FILE[$name]}"); done
"$PY" -m formulac compare "${COPIES[@]}" "${COMMON[@]}" -o "$OUT"
cat "$OUT/comparison.md"
"$PY" - "$OUT" "${DONE[@]}" <<'EOF'
import json, statistics, sys
from pathlib import Path

out, names = Path(sys.argv[1]), sys.argv[2:]
print("\n| model | wall s/run | train CPU s/run | tokens/s (wall) |")
print("|---|---:|---:|---:|")
for name in names:
    runs = [json.loads(p.read_text()) for p in sorted((out / name).glob("seed*/summary.json"))]
    wall = statistics.mean(r["wall_time_s"] for r in runs)
    cpu = statistics.mean(r["train_cpu_time_s"] for r in runs)
    tps = statistics.mean(r["tokens_per_s"] for r in runs)
    print(f"| {name} | {wall:.1f} | {cpu:.1f} | {tps:,.0f} |")
EOF
