#!/bin/bash
# Do the 1,000-example subset's weakest runs come back with more steps? Runs on STS-B at the
# sweep's rates, each against its own Table 1 run (same seed):
#   structured diff pruning with 3x the fixed-mask epochs, seeds 0-2 (the projection's loss not
#   recovered?);
#   LoRA rank 8 with 4x the epochs, seed 0 (its best step is the last one in every STS-B run).
# A diagnostic, not a matrix entry: Table 1 keeps the same epochs for every method.
# Usage: bash benchmarks/glue_steps_diagnostic.sh  (after `glue_matrix.py sweep`; about an hour
# on two cores)
cd "$(dirname "$0")/.."  # the repository root
source benchmarks/_diagnostic.sh
read DLR MLR < <(rates_of diff-structured diff_lr mask_lr)
read LORA_LR < <(rates_of lora lr)
structured() {
  run stsb-structured-mask-epochs-6-seed$1 python -m diffprune.cli.main train --method diff-structured \
    --epochs 2 --mask-epochs 6 --diff-lr $DLR --mask-lr $MLR --head-lr 1e-3 --seed $1
}
structured 0 &
run stsb-lora-epochs-16 python benchmarks/peers.py --method lora --epochs 16 --lr $LORA_LR --seed 0
wait
structured 1 &
structured 2
wait
