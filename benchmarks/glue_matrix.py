"""The paper's claim, measured: method x task x seed on the bundled MiniLM and the local GLUE data.

Each experiment is data, one JSON file under ``benchmarks/experiments/`` (which methods, tasks,
seeds, budgets and protocol; ``methods.json`` holds every method's rates); this runner runs one.
Each run is a subprocess (so its peak memory is its own) whose metrics land as one JSON under
``benchmarks/results/<experiment's folder>/<method>/``; a run whose JSON exists is skipped, so
every command resumes where it stopped:

    python benchmarks/glue_matrix.py sweep        # learning rate per method, on one task
    python benchmarks/glue_matrix.py matrix       # Table 1: method x task x seed
    python benchmarks/glue_matrix.py density      # the pruned methods at other budgets
    python benchmarks/glue_matrix.py fulldata --jobs 8 --deadline-minutes 60   # on a GPU
    python benchmarks/glue_matrix.py longer       # every method, twice the passes
    python benchmarks/glue_matrix.py render       # summary.json, BENCHMARKS.md and the plots
    python benchmarks/glue_matrix.py matrix --quick   # a smoke run on tiny subsets, kept apart

``--methods``, ``--tasks`` and ``--seeds`` narrow an experiment. Every method passes over the
data the same number of times at batch 16 and sequence length 128: full finetuning and the
peers that many epochs; diff pruning 2 epochs of L0 training and the rest fixed-mask
finetuning; non-adaptive 2 epochs of finetuning and the rest fixed-mask finetuning.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from _report import RESULTS, run_info
from glue_render import write_all
from run_settings import planned_settings, recorded_settings

HERE = Path(__file__).resolve().parent
GLUE = HERE.parents[1] / "shared" / "data" / "glue"
EXPERIMENTS = HERE / "experiments"
# Every experiment file but the methods' table; a new experiment is a new file.
KINDS = tuple(sorted(p.stem for p in EXPERIMENTS.glob("*.json") if p.stem != "methods"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


METHODS: dict[str, dict] = read_json(EXPERIMENTS / "methods.json")["methods"]
SWEEP_FACTORS = tuple(read_json(EXPERIMENTS / "methods.json")["sweep_factors"])


def experiment(kind: str) -> dict:
    return read_json(EXPERIMENTS / f"{kind}.json")


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
    # Training batches grouped by length (the default of diffprune train since 2026-12-04);
    # the experiments run before then say false, which is how they ran.
    group_by_length: bool = True

    def flags(self) -> list[str]:
        flags = ["--batch-size", str(self.batch_size), "--max-seq-length",
                 str(self.max_seq_length), "--max-train-samples", str(self.max_train_samples),
                 "--max-eval-samples", str(self.max_eval_samples),
                 "--group-by-length" if self.group_by_length else "--no-group-by-length"]
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


def command(run: Run, folder: Path, protocol: Protocol, match_bytes: int,
            adapters_python: str) -> list[str]:
    """The run's command line: ``diffprune train`` for the pruned methods and full finetuning,
    ``peers.py`` for the peers (houlsby under ``adapters_python``)."""
    spec = METHODS[run.method]
    common = ["--task", run.task, "--data-dir", str(GLUE), "--output", str(folder), "--seed",
              str(run.seed), *protocol.flags()]
    rates = [f"--{k.replace('_', '-')}={v:.3g}"
             for k, v in {**run.rates, **spec.get("fixed_rates", {})}.items()]
    if spec["runner"] == "train":
        method = spec.get("variant_of", run.method)
        epochs = (["--epochs", str(protocol.passes)] if method == "full"
                  else ["--epochs", "2", "--mask-epochs", str(protocol.passes - 2)])
        density = ["--density", str(run.density)] if run.density else []
        return [sys.executable, "-m", "diffprune.cli.main", "train", "--method", method,
                *common, *epochs, *rates, *density, *spec.get("flags", [])]
    extra = ["--match-bytes", str(match_bytes)] if spec.get("match_bytes") else []
    python = (adapters_python if spec.get("variant_of", run.method) == "houlsby"
              else sys.executable)
    return [python, str(HERE / "peers.py"), "--method", run.method, *common,
            "--epochs", str(protocol.passes), *rates, *extra]


def diff_bytes(task: str) -> int:
    """Bytes of a structured 0.5% task file for ``task`` (what lora-matched must match)."""
    for method in ("diff-structured", "diff-structured-fixed"):
        for path in sorted((RESULTS / "glue" / method).glob(f"{task}-seed*.json")):
            return read_json(path)["file_bytes"]
    raise FileNotFoundError(f"lora-matched on {task} needs a structured diff run on {task} "
                            "first (its task file's bytes are the target)")


def layout(folder: Path) -> list[dict]:
    """Where a task file's diff lands: nonzeros per tensor (for Figure 2 and all-zero tensors)."""
    from diffprune.layout import per_tensor
    from diffprune.task_file import load_task, task_path

    return per_tensor(load_task(task_path(folder)))


def record(run: Run, folder: Path, cmd: list[str], protocol: Protocol, wall: float,
           threads: str, device: str) -> None:
    """The run's JSON: its metrics, command, settings, protocol and where and how it ran."""
    from diffprune.run_folder import FULL_MODEL, METRICS, RunFolder

    metrics = read_json(RunFolder(folder) / METRICS)
    metrics.update(command=" ".join(cmd), seed=run.seed, rates=run.rates,
                   protocol=vars(protocol), wall_seconds=round(wall, 1), threads=int(threads),
                   device=device, **run.extra)
    settings = recorded_settings(folder)
    if settings is not None:  # what the next runner compares before reusing this run
        metrics["settings"] = settings
    if "file_bytes" in metrics:  # a task file
        metrics["bytes_per_task"] = metrics["file_bytes"]
        metrics["per_tensor"] = layout(folder)
    if run.method == "full":  # the whole finetuned model is the task
        metrics["bytes_per_task"] = sum(
            f.stat().st_size for f in (RunFolder(folder) / FULL_MODEL).glob("*.safetensors"))
        metrics["new_params_pct"] = 100.0
    run.out.parent.mkdir(parents=True, exist_ok=True)
    run.out.write_text(json.dumps(metrics, indent=2) + "\n")


def adopt_diagnostic(run: Run, cmd: list[str], protocol: Protocol) -> bool:
    """Record a diagnostic run (``glue_*diagnostic.sh``) that trained with exactly this run's
    settings as ``run``'s rather than train it again: training is deterministic given the seed.
    Only diagnostics that recorded their settings qualify; the record says where it came from in
    ``adopted_from``; a diagnostic did not time its whole process, so it has ``train_seconds``
    and no ``wall_seconds``."""
    if METHODS[run.method]["runner"] != "train":
        return False
    planned = planned_settings(cmd)
    for path in sorted((RESULTS / "glue-diagnostics").glob(f"{run.task}-*.json")):
        metrics = read_json(path)
        if metrics.get("settings") != planned:
            continue
        metrics.update(seed=run.seed, rates=run.rates, protocol=vars(protocol), threads=1,
                       device="cpu", adopted_from=str(path.relative_to(RESULTS.parent.parent)))
        if "file_bytes" in metrics:
            metrics["bytes_per_task"] = metrics["file_bytes"]
        run.out.parent.mkdir(parents=True, exist_ok=True)
        run.out.write_text(json.dumps(metrics, indent=2) + "\n")
        return True
    return False


def device_name() -> str:
    """What the runs train on (Accelerate picks the GPU where there is one)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def execute(runs: list[Run], scratch: Path, protocol: Protocol, jobs: int,
            deadline: float | None = None, adapters_python: str = sys.executable,
            threads: int | None = None) -> None:
    """Run what has no JSON yet, ``jobs`` at a time, each with its share of the CPU threads.

    After ``deadline`` (a ``time.time()``) no run starts, and runs still going are stopped;
    they leave no JSON, so the next invocation runs them again from the start."""
    todo = [r for r in runs if not r.out.is_file()]
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)  # default: a share of the CPUs
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    device = device_name()
    print(f"{len(runs) - len(todo)} of {len(runs)} runs done already; training on {device}",
          flush=True)

    def attempt(run: Run) -> None:
        name = run.out.relative_to(run.out.parents[2]).with_suffix("")  # glue/<method>/<run>
        if deadline is not None and time.time() >= deadline:
            return
        folder = scratch / name
        match = diff_bytes(run.task) if METHODS[run.method].get("match_bytes") else 0
        cmd = command(run, folder, protocol, match, adapters_python)
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
        list(pool.map(attempt, todo))


def chosen_rates(sweep_dir: Path) -> dict[str, dict[str, float]]:
    """Each method's rates from the sweep (best dev score); the centre rates where none ran.
    A variant takes the rates of the method it varies: the same tuning budget."""
    chosen = {m: dict(spec["rates"]) for m, spec in METHODS.items() if "rates" in spec}
    for method in chosen:
        results = [read_json(p) for p in (sweep_dir / method).glob("*.json")]
        if results:
            chosen[method] = max(results, key=lambda r: r["dev"][r["metric"]])["rates"]
    for method, spec in METHODS.items():
        if "variant_of" in spec:
            chosen[method] = dict(chosen[spec["variant_of"]])
    return chosen


def sweep_runs(methods, task: str, out: Path) -> list[Run]:
    """Each method at SWEEP_FACTORS; where the best so far sits at an edge, one step beyond it.

    Run the sweep again after it ends: a best rate at the edge of the grid is not an optimum, so
    every method gets the same rule (another factor of 3 outwards) until its best is inside."""
    runs = []
    for method in methods:
        factors = set(SWEEP_FACTORS)
        done = [read_json(p) for p in (out / method).glob("*.json")]
        if done:
            factors |= {r["lr_factor"] for r in done}
            best = max(done, key=lambda r: r["dev"][r["metric"]])["lr_factor"]
            if best == max(factors):
                factors.add(best * 3)
            elif best == min(factors):
                factors.add(best / 3)
        for factor in sorted(factors):
            rates = {k: v * factor for k, v in METHODS[method]["rates"].items()}
            runs.append(Run(method, task, 0, rates, out / method / f"{task}-x{factor:.2f}.json",
                            extra={"lr_factor": factor}))
    return runs


def matrix_runs(methods, tasks, seeds: int, seeded: list[str], rates: dict,
                out: Path) -> list[Run]:
    return [Run(m, t, s, rates[m], out / m / f"{t}-seed{s}.json")
            for m in methods for t in tasks for s in range(seeds if t in seeded else 1)]


def by_priority(runs: list[Run], tasks: list[str]) -> list[Run]:
    """Whole-data runs in the order that answers the most if a deadline cuts them short: seed 0
    before other seeds, SST-2 (67k examples, 8 to 27 times each other task's) last, and within
    each the claim's own pair (full, structured) first, then the other pruned methods, then the
    peers."""
    group = {"full": 0, "diff-structured": 0, "diff": 1, "nonadaptive": 1,
             "diff-structured-fixed": 1, "diff-fixed": 1}
    return sorted(runs, key=lambda r: (r.task == "sst2", r.seed > 0, r.seed,
                                       group.get(r.method, 2), tasks.index(r.task)))


def density_runs(methods, tasks, seeds: int, densities: list[float], rates: dict, out: Path,
                 matrix: Path, table_budget: float) -> list[Run]:
    """Seed by seed, the outer budgets first (smallest, largest, then the rest), so a sweep cut
    short still spans them; Table 1's own budget is its run."""
    inner = sorted(densities)[1:-1]
    runs = []
    for seed in range(seeds):
        for density in sorted(densities, key=lambda d: (d in inner, d)):
            for method in methods:
                for task in tasks:
                    name = f"{task}-d{density:g}-seed{seed}.json"
                    if density == table_budget and (matrix / method /
                                                    f"{task}-seed{seed}.json").is_file():
                        continue  # the matrix's own run is this point
                    runs.append(Run(method, task, seed, rates[method], out / method / name,
                                    density=density, extra={"density": density}))
    return runs


def plan(kind: str, args: argparse.Namespace, results: Path) -> tuple[list[Run], Protocol]:
    """The runs of one experiment (``experiments/<kind>.json``), narrowed by the flags."""
    from diffprune.config import DiffPruneConfig

    spec = experiment(kind)
    methods = args.methods or spec["methods"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"unknown methods {unknown}; experiments/methods.json has {sorted(METHODS)}")
    tasks = args.tasks or spec["tasks"]
    seeds = args.seeds or spec.get("seeds", 1)
    protocol = Protocol(**spec["protocol"], quick=args.quick)
    if args.max_train_samples is not None:
        protocol.max_train_samples = args.max_train_samples
    if args.quick:  # a smoke run: a few steps on a few examples
        protocol.max_train_samples = protocol.max_eval_samples = 64
    out, rates = results / spec["results"], chosen_rates(results / "glue-sweep")
    if kind == "sweep":
        return sweep_runs(methods, tasks[0], out), protocol
    if "densities" in spec:  # a density sweep; its Table 1 budget is its matrix's own run
        pruned = [m for m in methods if METHODS[m]["runner"] == "train" and
                  METHODS[m].get("variant_of", m) != "full"]
        matrix = results / spec.get("matrix", "glue")
        return density_runs(pruned, tasks, seeds, spec["densities"], rates, out, matrix,
                            DiffPruneConfig().density), protocol
    runs = matrix_runs(methods, tasks, seeds, spec.get("seeded_tasks", tasks), rates, out)
    if spec.get("order") == "priority":
        runs = by_priority(runs, tasks)
    return runs, protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=(*KINDS, "render"),
                        help="an experiment of benchmarks/experiments/, or render")
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per seeded task (default: the experiment's)")
    parser.add_argument("--max-train-samples", type=int, default=None,
                        help="training examples per task (0: all; default: the experiment's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--scratch", type=Path, default=Path("runs/glue-matrix"))
    parser.add_argument("--deadline-minutes", type=float, default=None,
                        help="start no run after this, and stop those still going")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per run (default: the CPUs shared among --jobs)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--adapters-python", default=sys.executable,
                        help="houlsby runs under this interpreter: AdapterHub's `adapters` pins "
                             "an older Transformers, so give it its own venv (see peers.py)")
    args = parser.parse_args()
    results = RESULTS
    if args.quick:  # a smoke run never mixes with the committed results
        results = Path(tempfile.mkdtemp(prefix="glue-matrix-quick-"))
        args.scratch = results / "runs"
    started = time.time()
    if args.kind != "render":
        runs, protocol = plan(args.kind, args, results)
        deadline = (None if args.deadline_minutes is None
                    else started + 60 * args.deadline_minutes)
        execute(runs, args.scratch, protocol, args.jobs, deadline, args.adapters_python,
                args.threads)
        if runs and not args.quick:
            info = {**run_info(), "seconds": round(time.time() - started, 1)}
            (results / f"glue_{args.kind}_last_run.json").write_text(
                json.dumps(info, indent=2) + "\n")
    print(write_all(results, chosen_rates(results / "glue-sweep"), GLUE,
                    write_markdown=not args.quick))


if __name__ == "__main__":
    main()
