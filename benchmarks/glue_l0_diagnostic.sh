#!/bin/bash
# Does the L0 stage close its gates within the matrix's step budget if alpha moves faster?
# Usage: bash benchmarks/glue_l0_diagnostic.sh  (after `glue_matrix.py sweep`; about 8 minutes)
cd "$(dirname "$0")/.."  # the repository root
read DLR MLR < <(python -c "import sys; sys.path.insert(0,'benchmarks'); from glue_matrix import chosen_rates, RESULTS; r=chosen_rates(RESULTS/'glue-sweep')['diff-structured']; print(f\"{r['diff_lr']:.3g} {r['mask_lr']:.3g}\")")
mkdir -p benchmarks/results/glue-diagnostics
run() {
  name=$1; shift
  out=runs/glue-diag/$name
  [ -f benchmarks/results/glue-diagnostics/$name.json ] && return
  rm -rf $out
  cmd="python -m diffprune.cli.main train --method diff-structured --task stsb --data-dir ../shared/data/glue --output $out --seed 0 --batch-size 16 --max-seq-length 128 --max-train-samples 1000 --epochs 2 --mask-epochs 2 --diff-lr $DLR --mask-lr $MLR --head-lr 1e-3 $*"
  OMP_NUM_THREADS=1 $cmd > /dev/null 2>&1 && python -c "
import json,sys; m=json.load(open('$out/metrics.json')); m['command']=sys.argv[1]; json.dump(m, open('benchmarks/results/glue-diagnostics/$name.json','w'), indent=2)" "$cmd"
}
run stsb-log-alpha-lr-1 --log-alpha-lr 1.0 &
run stsb-log-alpha-lr-1-lambda-1e-6 --log-alpha-lr 1.0 --l0-lambda 1.25e-6
wait
