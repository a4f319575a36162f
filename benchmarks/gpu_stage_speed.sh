#!/bin/bash
# Steps per second of each training stage on a GPU, eager gate math beside torch.compile'd: one
# process, a randomly initialised model of the bundled MiniLM's shape (speed needs no pretrained
# weights, so only config and tokenizer travel), RTE, batch 16, 40 steps per stage.
# Usage: bash benchmarks/gpu_stage_speed.sh [FOLDER with the base's config.json and tokenizer]
# (about 1 minute on one H100). Prints tqdm's rate lines; results/gpu_stage_speed.md keeps a run.
cd "$(dirname "$0")/.."  # the repository root
CONFIG=${1:-$(python3 -c "from diffprune.loading import default_model_path as p; print(p())")}
python3 -c "
import sys, torch
from transformers import AutoTokenizer, BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(sys.argv[1])).save_pretrained('/tmp/random-minilm')
AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained('/tmp/random-minilm')" "$CONFIG" \
  > /dev/null 2>&1 || exit 1
C="--task rte --data-dir ../shared/data/glue --model /tmp/random-minilm --batch-size 16
   --max-seq-length 128 --max-train-samples 1000 --max-eval-samples 64 --epochs 1 --mask-epochs 1
   --max-steps 40 --diff-lr 3e-4 --mask-lr 3e-3 --head-lr 1e-3"
for fused in --no-fused --fused; do
  SECONDS=0
  python3 -m diffprune.cli.main train --method diff $fused $C --output /tmp/speed$fused \
    > /tmp/speed$fused.log 2>&1
  echo "== $fused: rc $?, ${SECONDS} s in all"
  tr '\r' '\n' < /tmp/speed$fused.log | grep -E "it/s" | awk 'NR % 10 == 0' | cut -c1-160
done
