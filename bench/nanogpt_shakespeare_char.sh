#!/usr/bin/env bash
# nanoGPT's Shakespeare-char configuration, trained by formulac on a GPU, for a text file you
# supply (nanoGPT's own run is on tiny Shakespeare, 1.1 MB: its input.txt).
#
#   bash bench/nanogpt_shakespeare_char.sh input.txt [OUT] [extra formulac train flags...]
#
# nanoGPT (config/train_shakespeare_char.py): 6 layers x 384 dims, 6 heads, context 256,
# dropout 0.2, batch 64, 5000 iterations, AdamW lr 1e-3 (betas 0.9/0.99, weight decay 0.1),
# 100 warm-up iterations, cosine decay to 1e-4, gradient clipping at 1, characters as tokens,
# a 90/10 split. Reference figure (nanoGPT's README): validation loss 1.4697 after about 3 minutes
# on one A100.
#
# Here: the same network through the pre-norm formula on the gpt backbone, the same optimiser,
# 10 epochs of 500 iterations x 64 windows x 256 tokens (= 5000 iterations, 81,920,000 tokens),
# a warm-up of 0.2 epochs (100 iterations), cosine decay to 0 (nanoGPT stops at lr/10), bf16.
# Differences that move the loss a little: formulac validates on the 5% after the first 90% of
# the file (nanoGPT: the last 10%), and on 400 fixed windows instead of 200 random batches.
set -euo pipefail
FILE=${1:?usage: nanogpt_shakespeare_char.sh TEXT_FILE [OUT] [flags...]}
OUT=${2:-runs/nanogpt-shakespeare-char}
shift $(( $# >= 2 ? 2 : 1 ))
FILE=$(realpath "$FILE")
mkdir -p "$(dirname "$OUT")" && OUT=$(realpath "$OUT")
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FORMULA=${FORMULA:-examples/transformers/pre_norm.rec}  # another formula of the zoo: FORMULA=...
start=$(date +%s)
"$PY" -m formulac train "$FORMULA" --backbone gpt --depth 6 \
  -O dim=384 -O heads=6 -O context=256 -O dropout=0.2 \
  --data "text:$FILE" --tokens chars --recipe text \
  --epochs 10 --epoch-tokens 8192000 --batch-size 64 --lr 1e-3 --adam-beta2 0.99 \
  --weight-decay 0.1 --warmup-epochs 0.2 --grad-clip 1 --eval-windows 400 --amp auto \
  --device cuda --out "$OUT" --overwrite "$@"
echo "wall time: $(( $(date +%s) - start )) s (nanoGPT: val loss 1.4697 in about 3 min on an A100)"
"$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print('final val loss', round(s['final_val_loss'], 4), '| bits/byte', round(s['final_val_bits_per_byte'], 4), '| tokens/s', round(s['tokens_per_s']))" "$OUT/summary.json"
"$PY" -m formulac sample "$OUT" --prompt "ROMEO:" --tokens 300 --temperature 0.8 --top-k 200
