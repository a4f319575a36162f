# Shared by the glue_*diagnostic.sh scripts (sourced from the repository root): single STS-B runs
# at Table 1's protocol, each recorded with its command in benchmarks/results/glue-diagnostics/.
mkdir -p benchmarks/results/glue-diagnostics
COMMON="--task stsb --data-dir ../shared/data/glue --batch-size 16 --max-seq-length 128 --max-train-samples 1000"

# One method's rates from the sweep: `read A B < <(rates_of nonadaptive full_lr mask_lr)`.
rates_of() {
  python -c "import sys; sys.path.insert(0,'benchmarks'); from glue_matrix import chosen_rates, RESULTS; r=chosen_rates(RESULTS/'glue-sweep')[sys.argv[1]]; print(*(f'{r[k]:.3g}' for k in sys.argv[2:]))" "$@"
}

# run NAME COMMAND...: train once (skipped if NAME's result exists), one thread, into runs/glue-diag.
run() {
  name=$1; shift
  out=runs/glue-diag/$name
  [ -f benchmarks/results/glue-diagnostics/$name.json ] && return
  rm -rf $out
  cmd="$* --output $out $COMMON"
  OMP_NUM_THREADS=1 $cmd > /dev/null 2>&1 && python -c "
import json,sys; sys.path.insert(0,'benchmarks'); from run_settings import recorded_settings; m=json.load(open('$out/metrics.json')); m['command']=sys.argv[1]; m['settings']=recorded_settings('$out'); json.dump(m, open('benchmarks/results/glue-diagnostics/$name.json','w'), indent=2)" "$cmd"
}
