#!/usr/bin/env bash
# The two-step family a in [-0.9, 0.9] on cifar-resnet-20, Fashion-MNIST, 24 trials with pruning,
# then --confirm 2 --seeds 3 against ResNet. Writes DIR/bench.json: wall time, best a, counts of
# rejected and pruned trials, epochs saved against training every trial to the end, the search
# machinery's overhead per trial (storage, sampler, analysis) as a fraction of trial time, and
# the confirmation table.
#
#   bash bench/search_two_step.sh [DIR] [extra formulac search flags]
#   BUDGET=reduced bash bench/search_two_step.sh runs/bench-search   # a quick end-to-end check
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bench-search}; shift || true
if [ "${BUDGET:-full}" = reduced ]; then
  LIMITS=(--trials 8 --epochs 2 --limit-train 2000 --limit-test 1000 --confirm 1 --seeds 2)
else
  LIMITS=(--trials 24 --epochs 4 --confirm 2 --seeds 3)
fi
start=$(date +%s.%N)
.venv/bin/formulac search examples/two_step_free.rec --space a=-0.9:0.9 --require stable \
  --data fashion-mnist --backbone cifar-resnet --depth 20 --baseline examples/resnet_post.rec \
  --sampler-seed 0 --no-progress "${LIMITS[@]}" --out "$OUT" "$@"
end=$(date +%s.%N)
.venv/bin/python - "$OUT" "$start" "$end" "${BUDGET:-full}" <<'PY'
import json, sys, platform, os
out, start, end, budget = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
b = json.load(open(f"{out}/leaderboard.json"))
epochs = b["settings"]["train"]["epochs"]
trials = b["trials"]
trained = sum(t["epochs"] for t in trials if t["state"] != "rejected")
full = epochs * len(trials)
per_epoch = [t["seconds"] / t["epochs"] for t in trials if t["state"] == "complete" and t["epochs"] and t["seconds"]]
sec_per_epoch = sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None
result = {
    "budget": budget,
    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    "wall_time_s": end - start,
    "best": b["best"] and {"a": b["best"]["params"].get("a"), "val_accuracy": b["best"]["val_accuracy"]},
    "counts": b["counts"],
    "epochs_trained": trained,
    "epochs_if_every_trial_ran_to_the_end": full,
    "time_saved_s_estimate": None if sec_per_epoch is None else (full - trained) * sec_per_epoch,
    "overhead": b["overhead"],
    "confirmation": b["confirmation"] and b["confirmation"]["markdown"],
}
json.dump(result, open(f"{out}/bench.json", "w"), indent=2)
print(json.dumps(result, indent=2))
PY
