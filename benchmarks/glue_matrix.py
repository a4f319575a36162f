"""The paper's claim, measured: method x task x seed on the bundled MiniLM and the local GLUE data.

Three kinds of run, each a subprocess (so its peak memory is its own) whose metrics land as one
JSON per run under ``benchmarks/results/``; a run whose JSON exists is skipped, so every command
resumes where it stopped:

    python benchmarks/glue_matrix.py sweep        # learning rate per method, on one task
    python benchmarks/glue_matrix.py matrix       # method x task x seed at the swept rates
    python benchmarks/glue_matrix.py density      # 0.1 / 0.25 / 0.5 / 1% for the diff methods
                                                  # on RTE, MRPC, STS-B (seed 0; --seeds 3)
    python benchmarks/glue_matrix.py fulldata --jobs 8 --deadline-minutes 60   # on a GPU
    python benchmarks/glue_matrix.py longer --tasks stsb   # every method, twice the passes
    python benchmarks/glue_matrix.py render       # summary.json, BENCHMARKS.md and the plots
    python benchmarks/glue_matrix.py matrix --quick   # a smoke run on tiny subsets, kept apart

Every method passes over the data 4 times at batch 16 and sequence length 128: full finetuning
and the peers 4 epochs; diff pruning 2 epochs of L0 training and 2 of fixed-mask finetuning;
non-adaptive 2 epochs of finetuning and 2 of fixed-mask finetuning. ``longer`` gives every
method 8 passes: the peers and full finetuning 8 epochs, the pruned methods the same first stage
and 6 epochs of fixed-mask finetuning. ``--max-train-samples``
(recorded in each JSON) bounds the training set so that the matrix fits a 2-core CPU;
``fulldata`` is the same matrix on whole training sets, for a machine with a GPU, most telling
runs first, so that a deadline cuts off the least. The written
analysis that BENCHMARKS.md shows beside the numbers lives in ``results/glue_notes.md``;
``glue_l0_diagnostic.sh`` runs the L0 stage with faster gates for the report's Table 3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from _report import RESULTS, run_info
from glue_report import flag_changes, flag_values, write_all

HERE = Path(__file__).resolve().parent
GLUE = HERE.parents[1] / "shared" / "data" / "glue"
DIFF_METHODS = ("full", "diff-structured", "diff", "nonadaptive", "diff-structured-fixed",
                "diff-fixed")
PEER_METHODS = ("houlsby", "lora", "lora-pooler", "lora-matched", "bitfit", "last-layer")
# Rows that run another row's method with other flags: the paper's fixed λ (the matrix's diff
# rows before density control was the default) keep their own folders and rows.
VARIANTS = {"diff-structured-fixed": ("diff-structured", ["--density-control", "fixed"]),
            "diff-fixed": ("diff", ["--density-control", "fixed"])}
PRUNED = ("diff-structured", "diff", "nonadaptive")
TASKS = ("rte", "mrpc", "stsb", "cola", "sst2")
SEEDED_TASKS = ("rte", "mrpc", "stsb")  # three seeds; the others one
DENSITIES = (0.001, 0.0025, 0.005, 0.01)

# The centre of each method's sweep. Diff pruning's are those of the README's RTE run; the others
# are each library's usual rates for a small BERT. The sweep multiplies every rate of a method by
# the same factor (the diff methods' head rate stays 1e-3: it is the same head for every method).
BASE_RATES = {
    "full": {"full_lr": 5e-5},
    "diff-structured": {"diff_lr": 1e-4, "mask_lr": 1e-3},
    "diff": {"diff_lr": 1e-4, "mask_lr": 1e-3},
    "nonadaptive": {"full_lr": 5e-5, "mask_lr": 1e-3},
    "houlsby": {"lr": 3e-4},
    "lora": {"lr": 5e-4},
    "lora-pooler": {"lr": 5e-4},  # LoRA's swept rate: the same adapter, the pooler trained too
    "lora-matched": {"lr": 5e-4},
    "bitfit": {"lr": 1e-3},
    "last-layer": {"lr": 1e-4},
}
FIXED_RATES = {m: {"head_lr": 1e-3} for m in ("diff-structured", "diff", *VARIANTS)}
SWEEP_FACTORS = (1 / 3, 1.0, 3.0)


@dataclass
class Protocol:
    """What every run of one kind shares; recorded in each run's JSON."""

    max_train_samples: int = 1000
    max_eval_samples: int = 0
    batch_size: int = 16
    max_seq_length: int = 128
    quick: bool = False
    # Passes over the data per method. The pruned methods keep their first stage at 2 epochs
    # (L0 training, or non-adaptive's finetuning) and give the rest to fixed-mask finetuning.
    passes: int = 4

    def flags(self) -> list[str]:
        flags = ["--batch-size", str(self.batch_size), "--max-seq-length",
                 str(self.max_seq_length), "--max-train-samples", str(self.max_train_samples),
                 "--max-eval-samples", str(self.max_eval_samples)]
        return flags + (["--max-steps", "4"] if self.quick else [])


@dataclass
class Run:
    method: str
    task: str
    seed: int
    rates: dict[str, float]
    out: Path  # the result JSON
    density: float | None = None
    extra: dict = field(default_factory=dict)  # recorded beside the metrics


ADAPTERS_PYTHON = sys.executable  # houlsby: a Python whose environment has `adapters`


def command(run: Run, folder: Path, protocol: Protocol, match_bytes: int) -> list[str]:
    common = ["--task", run.task, "--data-dir", str(GLUE), "--output", str(folder), "--seed",
              str(run.seed), *protocol.flags()]
    rates = [f"--{k.replace('_', '-')}={v:.3g}"
             for k, v in {**run.rates, **FIXED_RATES.get(run.method, {})}.items()]
    if run.method in DIFF_METHODS:
        method, variant = VARIANTS.get(run.method, (run.method, []))
        epochs = (["--epochs", str(protocol.passes)] if method == "full"
                  else ["--epochs", "2", "--mask-epochs", str(protocol.passes - 2)])
        density = ["--density", str(run.density)] if run.density else []
        return [sys.executable, "-m", "diffprune.cli.main", "train", "--method", method,
                *common, *epochs, *rates, *density, *variant]
    extra = ["--match-bytes", str(match_bytes)] if run.method == "lora-matched" else []
    python = ADAPTERS_PYTHON if run.method == "houlsby" else sys.executable
    return [python, str(HERE / "peers.py"), "--method", run.method, *common,
            "--epochs", str(protocol.passes), *rates, *extra]


def diff_bytes(task: str) -> int:
    """Bytes of a structured 0.5% task file for ``task`` (what lora-matched must match)."""
    for path in sorted((RESULTS / "glue" / "diff-structured-fixed").glob(f"{task}-seed*.json")):
        return json.loads(path.read_text())["file_bytes"]
    return 313_755  # the README's RTE task file; 0.5% MiniLM task files take 310-320 kB


def layout(folder: Path) -> list[dict]:
    """Where a task file's diff lands: nonzeros per tensor (for Figure 2 and all-zero tensors)."""
    from diffprune.layout import per_tensor
    from diffprune.task_file import load_task, task_path

    return per_tensor(load_task(task_path(folder)))


def record(run: Run, folder: Path, cmd: list[str], protocol: Protocol, wall: float,
           threads: str, device: str) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.update(command=" ".join(cmd), seed=run.seed, rates=run.rates,
                   protocol=vars(protocol), wall_seconds=round(wall, 1), threads=int(threads),
                   device=device, **run.extra)
    if "file_bytes" in metrics:  # a task file
        metrics["bytes_per_task"] = metrics["file_bytes"]
        metrics["per_tensor"] = layout(folder)
    if run.method == "full":  # the whole finetuned model is the task
        metrics["bytes_per_task"] = sum(
            f.stat().st_size for f in (folder / "model").glob("*.safetensors"))
        metrics["new_params_pct"] = 100.0
    run.out.parent.mkdir(parents=True, exist_ok=True)
    run.out.write_text(json.dumps(metrics, indent=2) + "\n")


def lora_twin(run: Run) -> Path:
    """Where ``lora``'s run with the same task and seed as ``run`` records its JSON."""
    return run.out.parents[1] / "lora" / run.out.name


def reuse_lora(run: Run) -> bool:
    """Record ``lora``'s run as ``lora-matched``'s where the matched rank is lora's own.

    A 0.5% MiniLM task file (310-320 kB) fits LoRA at rank 8 on query and value (295 kB), so
    lora-matched would repeat lora's run step for step: same rank, rates and seed (the sweep
    ran both and got identical scores at every rate). The copy says so in ``reused_from``."""
    twin = lora_twin(run)
    if run.method != "lora-matched" or not twin.is_file():
        return False
    lora = json.loads(twin.read_text())
    if lora["rates"] != run.rates:
        return False
    from peers import LORA_RANK, lora_rank

    from diffprune.data.glue import get_task
    from diffprune.loading import load_base

    _, model, head = load_base(None, get_task(run.task))
    match_bytes = diff_bytes(run.task)
    if lora_rank("lora-matched", model, head, match_bytes) != LORA_RANK:
        return False
    lora.update(method="lora-matched", reused_from=str(twin.relative_to(run.out.parents[2])),
                match_bytes=match_bytes)
    run.out.parent.mkdir(parents=True, exist_ok=True)
    run.out.write_text(json.dumps(lora, indent=2) + "\n")
    return True


def adopt_diagnostic(run: Run, cmd: list[str], protocol: Protocol) -> bool:
    """Record a diagnostic run (``glue_*diagnostic.sh``) that trained this very command, flag for
    flag, as ``run``'s rather than train it again: training is deterministic given the seed (the
    steps diagnostic's L0 stage matched Table 1's to the digit at every seed). The record says
    where it came from in ``adopted_from``; the diagnostic did not time its whole process, so it
    has ``train_seconds`` and no ``wall_seconds``."""
    for path in sorted((RESULTS / "glue-diagnostics").glob(f"{run.task}-*.json")):
        metrics = json.loads(path.read_text())
        if flag_changes(" ".join(cmd), metrics["command"]):
            continue
        metrics.update(seed=run.seed, rates=run.rates, protocol=vars(protocol), threads=1,
                       device="cpu", adopted_from=str(path.relative_to(RESULTS.parent.parent)))
        if "file_bytes" in metrics:
            metrics["bytes_per_task"] = metrics["file_bytes"]
        folder = Path(flag_values(metrics["command"])["--output"])
        if folder.is_dir():  # its task file, where this checkout still has it
            metrics["per_tensor"] = layout(folder)
        run.out.parent.mkdir(parents=True, exist_ok=True)
        run.out.write_text(json.dumps(metrics, indent=2) + "\n")
        return True
    return False


def device_name() -> str:
    """What the runs train on (Accelerate picks the GPU where there is one)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def execute(runs: list[Run], scratch: Path, protocol: Protocol, jobs: int,
            deadline: float | None = None) -> None:
    """Run what has no JSON yet, ``jobs`` at a time, each with its share of the CPU threads.

    After ``deadline`` (a ``time.time()``) no run starts, and runs still going are stopped;
    they leave no JSON, so the next invocation runs them again from the start."""
    todo = [r for r in runs if not r.out.is_file()]
    # lora-matched goes last: most of its runs are copies that wait for their LoRA twin
    # (below), and a copy waiting in the middle of the queue would idle a worker.
    todo.sort(key=lambda r: r.method == "lora-matched")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    device = device_name()
    print(f"{len(runs) - len(todo)} of {len(runs)} runs done already; training on {device}",
          flush=True)

    # lora-matched waits for a twin still training in this call rather than repeat it: the
    # twin comes earlier in ``todo``, so it has started by the time its copy's turn comes.
    finished = {r.out: threading.Event() for r in todo}

    def one(run: Run) -> None:
        try:
            attempt(run)
        finally:
            finished[run.out].set()

    def attempt(run: Run) -> None:
        name = run.out.relative_to(run.out.parents[2]).with_suffix("")  # glue/<method>/<run>
        if run.method == "lora-matched" and lora_twin(run) in finished:
            finished[lora_twin(run)].wait()
        if reuse_lora(run):
            print(f"[{time.strftime('%H:%M:%S')}] reused lora's run for {name}", flush=True)
            return
        if deadline is not None and time.time() >= deadline:
            return
        folder = scratch / name
        cmd = command(run, folder, protocol, diff_bytes(run.task))
        if adopt_diagnostic(run, cmd, protocol):
            print(f"[{time.strftime('%H:%M:%S')}] adopted a diagnostic run for {name}", flush=True)
            return
        if folder.exists():  # a run killed earlier: start it again from nothing
            shutil.rmtree(folder)
        print(f"[{time.strftime('%H:%M:%S')}] start {name}", flush=True)
        began = time.time()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=None if deadline is None else deadline - began)
        except subprocess.TimeoutExpired:
            print(f"  stopped at the deadline: {name}", flush=True)
            return
        if done.returncode != 0:
            print(f"  failed ({done.returncode}) {run.out.stem}: {done.stderr.strip()[-800:]}",
                  flush=True)
            return
        record(run, folder, cmd, protocol, time.time() - began, env["OMP_NUM_THREADS"], device)
        print(f"[{time.strftime('%H:%M:%S')}] done  {name}", flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))


def chosen_rates(sweep_dir: Path) -> dict[str, dict[str, float]]:
    """Each method's rates from the sweep (best dev score); the base rates where none ran."""
    chosen = {m: dict(r) for m, r in BASE_RATES.items()}
    for method in BASE_RATES:
        results = [json.loads(p.read_text()) for p in (sweep_dir / method).glob("*.json")]
        if results:
            best = max(results, key=lambda r: r["dev"][r["metric"]])
            chosen[method] = best["rates"]
    # Rows that were not swept take the rates of the row they vary: the same tuning budget.
    for variant, (method, _) in VARIANTS.items():
        chosen[variant] = dict(chosen[method])
    chosen["lora-pooler"] = dict(chosen["lora"])
    return chosen


def sweep_runs(methods, task: str, out: Path) -> list[Run]:
    """Each method at SWEEP_FACTORS; where the best so far sits at an edge, one step beyond it.

    Run the sweep again after it ends: a best rate at the edge of the grid is not an optimum, so
    every method gets the same rule (another factor of 3 outwards) until its best is inside."""
    runs = []
    for method in methods:
        factors = set(SWEEP_FACTORS)
        done = [json.loads(p.read_text()) for p in (out / method).glob("*.json")]
        if done:
            factors |= {r["lr_factor"] for r in done}
            best = max(done, key=lambda r: r["dev"][r["metric"]])["lr_factor"]
            if best == max(factors):
                factors.add(best * 3)
            elif best == min(factors):
                factors.add(best / 3)
        for factor in sorted(factors):
            rates = {k: v * factor for k, v in BASE_RATES[method].items()}
            runs.append(Run(method, task, 0, rates, out / method / f"{task}-x{factor:.2f}.json",
                            extra={"lr_factor": factor}))
    return runs


def matrix_runs(methods, tasks, seeds: int, rates: dict, out: Path) -> list[Run]:
    return [Run(m, t, s, rates[m], out / m / f"{t}-seed{s}.json")
            for m in methods for t in tasks for s in range(seeds if t in SEEDED_TASKS else 1)]


def by_priority(runs: list[Run]) -> list[Run]:
    """Whole-data runs in the order that answers the most if a deadline cuts them short: seed 0
    before other seeds, SST-2 (67k examples, 8 to 27 times each other task's) last, and within
    each the claim's own pair (full, structured) first, then the other pruned methods, then the
    peers."""
    group = {"full": 0, "diff-structured": 0, "diff": 1, "nonadaptive": 1,
             "diff-structured-fixed": 1, "diff-fixed": 1}
    return sorted(runs, key=lambda r: (r.task == "sst2", r.seed > 0, r.seed,
                                       group.get(r.method, 2), TASKS.index(r.task)))


def density_runs(methods, tasks, seeds: int, rates: dict, out: Path,
                 matrix: Path) -> list[Run]:
    """Seed by seed, the outer budgets first (0.1%, 1%, then 0.25%), so a cut-short sweep still
    spans them."""
    runs = []
    for seed in range(seeds):
        for density in sorted(DENSITIES, key=lambda d: (d == 0.0025, d)):
            for method in methods:
                for task in tasks:
                    name = f"{task}-d{density:g}-seed{seed}.json"
                    if density == 0.005 and (matrix / method / f"{task}-seed{seed}.json").is_file():
                        continue  # the matrix's own run is this point
                    runs.append(Run(method, task, seed, rates[method], out / method / name,
                                    density=density, extra={"density": density}))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("sweep", "matrix", "density", "fulldata", "longer",
                                         "render"))
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per task: 1 by default for density, else 3 (the matrix "
                             "gives CoLA and SST-2 one)")
    parser.add_argument("--passes", type=int, default=8, help="passes over the data (longer)")
    parser.add_argument("--sweep-task", default="stsb")
    parser.add_argument("--max-train-samples", type=int, default=1000,
                        help="training examples per task (0: all); the sweep uses half")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--scratch", type=Path, default=Path("runs/glue-matrix"))
    parser.add_argument("--deadline-minutes", type=float, default=None,
                        help="start no run after this, and stop those still going")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--adapters-python", default=sys.executable,
                        help="houlsby runs under this interpreter: AdapterHub's `adapters` pins "
                             "an older Transformers, so give it its own venv (see peers.py)")
    args = parser.parse_args()
    global ADAPTERS_PYTHON
    ADAPTERS_PYTHON = args.adapters_python
    results = RESULTS
    if args.quick:  # a smoke run never mixes with the committed results
        results = Path(tempfile.mkdtemp(prefix="glue-matrix-quick-"))
        args.scratch = results / "runs"
    sweep, matrix, density, fulldata, longer = (
        results / "glue-sweep", results / "glue", results / "glue-density",
        results / "glue-fulldata", results / "glue-longer")
    methods = args.methods or [*DIFF_METHODS, *PEER_METHODS]
    if args.seeds is None:  # the sweep over budgets is one seed unless asked
        args.seeds = 1 if args.kind == "density" else 3
    protocol = Protocol(max_train_samples=args.max_train_samples, quick=args.quick,
                        passes=args.passes if args.kind == "longer" else Protocol.passes)
    if args.quick:  # a smoke run: a few steps on a few examples
        protocol.max_train_samples = protocol.max_eval_samples = 64
    elif args.kind == "fulldata":
        protocol.max_train_samples = 0
    elif args.kind == "sweep":  # half the training set, a third of STS-B's dev set
        protocol.max_train_samples = args.max_train_samples // 2
        protocol.max_eval_samples = 500
    started = time.time()
    if args.kind == "sweep":
        runs = sweep_runs(methods, args.sweep_task, sweep)
    elif args.kind == "matrix":
        runs = matrix_runs(methods, args.tasks or TASKS, args.seeds, chosen_rates(sweep), matrix)
    elif args.kind == "fulldata":
        runs = by_priority(matrix_runs(methods, args.tasks or TASKS, args.seeds,
                                       chosen_rates(sweep), fulldata))
    elif args.kind == "longer":  # Table 1's rates: a new sweep would be tuning Table 1 lacked
        runs = by_priority(matrix_runs(methods, args.tasks or ("stsb",), args.seeds,
                                       chosen_rates(sweep), longer))
    elif args.kind == "density":
        runs = density_runs([m for m in methods if m in PRUNED], args.tasks or SEEDED_TASKS,
                            args.seeds, chosen_rates(sweep), density, matrix)
    else:
        runs = []
    deadline = None if args.deadline_minutes is None else started + 60 * args.deadline_minutes
    if runs:
        execute(runs, args.scratch, protocol, args.jobs, deadline)
    info = {**run_info(), "seconds": round(time.time() - started, 1)}
    if runs and not args.quick:
        (results / f"glue_{args.kind}_last_run.json").write_text(json.dumps(info, indent=2) + "\n")
    print(write_all(results, chosen_rates(sweep), GLUE, write_markdown=not args.quick))


if __name__ == "__main__":
    main()
