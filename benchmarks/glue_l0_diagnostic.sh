#!/bin/bash
# Does the L0 stage close its gates within the matrix's step budget if alpha moves faster?
# Usage: bash benchmarks/glue_l0_diagnostic.sh  (after `glue_matrix.py sweep`; about 8 minutes)
cd "$(dirname "$0")/.."  # the repository root
source benchmarks/_diagnostic.sh
read DLR MLR LORA_LR < <(chosen_rates)
structured() {
  run "$1" python -m diffprune.cli.main train --method diff-structured --seed 0 --epochs 2 \
    --mask-epochs 2 --diff-lr $DLR --mask-lr $MLR --head-lr 1e-3 "${@:2}"
}
structured stsb-log-alpha-lr-1 --log-alpha-lr 1.0 &
structured stsb-log-alpha-lr-1-lambda-1e-6 --log-alpha-lr 1.0 --l0-lambda 1.25e-6
wait
