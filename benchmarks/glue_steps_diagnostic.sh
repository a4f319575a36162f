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
read DLR MLR LORA_LR < <(python -c "import sys; sys.path.insert(0,'benchmarks'); from glue_matrix import chosen_rates, RESULTS; r=chosen_rates(RESULTS/'glue-sweep'); print(f\"{r['diff-structured']['diff_lr']:.3g} {r['diff-structured']['mask_lr']:.3g} {r['lora']['lr']:.3g}\")")
mkdir -p benchmarks/results/glue-diagnostics
COMMON="--task stsb --data-dir ../shared/data/glue --batch-size 16 --max-seq-length 128 --max-train-samples 1000"
run() {
  name=$1; shift
  out=runs/glue-diag/$name
  [ -f benchmarks/results/glue-diagnostics/$name.json ] && return
  rm -rf $out
  cmd="$* --output $out $COMMON"
  OMP_NUM_THREADS=1 $cmd > /dev/null 2>&1 && python -c "
import json,sys; m=json.load(open('$out/metrics.json')); m['command']=sys.argv[1]; json.dump(m, open('benchmarks/results/glue-diagnostics/$name.json','w'), indent=2)" "$cmd"
}
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
