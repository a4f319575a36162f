#!/bin/bash
# Stage 1's step time, memory and kernel count beside full finetuning on a GPU: train_cost.py at
# batch 8 and 32 under bf16 autocast (then batch 8 in float32, time allowing), on a randomly
# initialised model of the bundled MiniLM's shape (speed needs no pretrained weights, and a lent
# GPU machine may not have the bundled model's package).
#
#     bash benchmarks/gpu_train_cost.sh            # about 5 minutes on one H100
#
# Each run writes benchmarks/results/train_cost[_bN]_cuda[_bf16].{json,md}; where $OUT is set
# (the device tool's output folder) they are copied there as well. A run that fails or passes
# its time limit is reported and the next one still runs.
cd "$(dirname "$0")/.." || exit 1  # the repository root
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi -L || { echo "no NVIDIA GPU here"; exit 1; }
# what train_cost.py imports (diffprune from src/, so it needs no install here)
python3 -c "import torch, transformers, safetensors, diffprune
print('torch', torch.__version__, '| transformers', transformers.__version__,
      '| cuda', torch.cuda.is_available())" || { echo "missing a package (see above)"; exit 1; }
python3 -c "
from transformers import BertConfig, BertModel
import torch
torch.manual_seed(0)
config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                    num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512)
BertModel(config).save_pretrained('/tmp/random-minilm')" || exit 1
cd benchmarks || exit 1
run() {  # limit in seconds, then train_cost.py's flags
  local limit=$1; shift
  SECONDS=0
  timeout "$limit" python3 train_cost.py --device cuda --model /tmp/random-minilm --seq-len 128 \
    --warmup 5 --steps 30 --methods full,diff-structured,diff "$@"
  echo "== $*: rc $?, ${SECONDS} s"
}
run 200 --batch 8 --bf16
run 150 --batch 32 --bf16
run 150 --batch 8
if [ -n "${OUT:-}" ]; then cp results/train_cost*_cuda* "$OUT"/ 2>/dev/null; fi
ls -l results/train_cost*_cuda* 2>/dev/null
