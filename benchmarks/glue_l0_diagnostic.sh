#!/bin/bash
# Does the L0 stage close its gates within the matrix's step budget if alpha moves faster? And
# with the gates closed and the `longer` protocol's 6 fixed-mask epochs, does the paper's order
# (structured >= unstructured) come back? Last, structured with fast element gates but the
# paper's rate for its group gates: do fast group gates close whole tensors too early? Then the
# three pruned methods with those gates at 0.1%, where the paper's methods differ most, at
# three seeds, and at 0.25% and 1% at seed 0, to span the density sweep's budgets.
# Usage: bash benchmarks/glue_l0_diagnostic.sh  (after `glue_matrix.py sweep`; about 2.5 hours
# on two cores: 30 minutes for the first pair of runs, 13 per seed, then 20 per group of three)
cd "$(dirname "$0")/.."  # the repository root
source benchmarks/_diagnostic.sh
read DLR MLR < <(rates_of diff-structured diff_lr mask_lr)
# pruned NAME METHOD MASK_EPOCHS SEED FLAGS...: at the sweep's rates, gates as FLAGS say.
pruned() {
  run "$1" python -m diffprune.cli.main train --method "$2" --seed "$4" --epochs 2 \
    --mask-epochs "$3" --diff-lr $DLR --mask-lr $MLR --head-lr 1e-3 "${@:5}"
}
FAST_GATES="--log-alpha-lr 1.0 --l0-lambda 1.25e-6"
pruned stsb-log-alpha-lr-1 diff-structured 2 0 --log-alpha-lr 1.0 &
pruned stsb-log-alpha-lr-1-lambda-1e-6 diff-structured 2 0 $FAST_GATES
wait
for seed in 0 1 2; do
  pruned stsb-fast-gates-mask-epochs-6-structured-seed$seed diff-structured 6 $seed $FAST_GATES &
  pruned stsb-fast-gates-mask-epochs-6-unstructured-seed$seed diff 6 $seed $FAST_GATES
  wait
done
for seed in 0 1 2; do  # three runs on the two cores at once
  pruned stsb-fast-gates-slow-groups-mask-epochs-6-structured-seed$seed diff-structured 6 $seed \
    $FAST_GATES --group-log-alpha-lr 0.1 &
done
wait
read NA_FULL_LR NA_MASK_LR < <(rates_of nonadaptive full_lr mask_lr)
for seed in 0 1 2; do
  pruned stsb-d0.001-fast-gates-slow-groups-structured-seed$seed diff-structured 6 $seed \
    $FAST_GATES --group-log-alpha-lr 0.1 --density 0.001 &
  pruned stsb-d0.001-fast-gates-unstructured-seed$seed diff 6 $seed $FAST_GATES --density 0.001 &
  run stsb-d0.001-mask-epochs-6-nonadaptive-seed$seed python -m diffprune.cli.main train \
    --method nonadaptive --seed $seed --epochs 2 --mask-epochs 6 --full-lr $NA_FULL_LR \
    --mask-lr $NA_MASK_LR --density 0.001
  wait
done
for density in 0.0025 0.01; do  # seed 0 only
  pruned stsb-d$density-fast-gates-slow-groups-structured-seed0 diff-structured 6 0 \
    $FAST_GATES --group-log-alpha-lr 0.1 --density $density &
  pruned stsb-d$density-fast-gates-unstructured-seed0 diff 6 0 $FAST_GATES --density $density &
  run stsb-d$density-mask-epochs-6-nonadaptive-seed0 python -m diffprune.cli.main train \
    --method nonadaptive --seed 0 --epochs 2 --mask-epochs 6 --full-lr $NA_FULL_LR \
    --mask-lr $NA_MASK_LR --density $density
  wait
done
