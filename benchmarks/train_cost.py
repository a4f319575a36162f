"""Training cost of diff pruning beside full finetuning: step time and peak memory.

Same model, batch and sequence length for every method. Time: all methods in one process with
their steps interleaved (the order rotating), so that the drift of a shared machine, which moves
a full-finetuning step between 3 and 4.4 s here, hits every method alike; the ratio is the
median over iterations of (method step / full-finetuning step of the same iteration), a step
being forward + backward + clipping + AdamW. Memory: each method alone in a fresh process, peak
RSS minus RSS after imports (model, optimiser state, activations and every temporary).

    python benchmarks/train_cost.py --quick            # < 2 minutes, last line is JSON
    python benchmarks/train_cost.py                    # full mode, writes benchmarks/results/

The last line printed is JSON with ``step_time_ratio`` and ``peak_memory_ratio`` (diff pruning
over full finetuning; lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _report import finish, run_info

METHODS = ("full", "diff-structured", "diff")
# Beside the defaults, on request (--methods): stage 1 with torch's AdamW (float32 moments), to
# measure what the bfloat16 moments save.
VARIANTS = {"diff-structured-f32-moments": {"structured": True, "moment_dtype": "float32"},
            # the same stage 1 with its kernels compiled by torch.compile instead of the C++ ones
            "diff-structured-compiled": {"structured": True, "kernels": "compile"}}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_step(method: str, args: argparse.Namespace):
    """Build one method's model and optimiser; returns a closure doing one full training step."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    from diffprune import DiffPruneConfig, build_optimizer, get_diffprune_model
    from diffprune.loading import default_model_path

    logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model or default_model_path(), num_labels=2).train()
    kernels = "native"
    if method == "full":
        # The same fused AdamW kernel that build_optimizer uses, so only the method differs.
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, fused=True)

        def loss_and_clip(ids, labels):
            model(input_ids=ids, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)

        def after_step():
            pass
    else:
        from diffprune.density_control import DensityController

        settings = dict(VARIANTS.get(method, {"structured": method == "diff-structured"}))
        kernels = settings.pop("kernels", "native")
        config = DiffPruneConfig(**settings, fused=not args.eager)
        model = get_diffprune_model(model, config).train()
        optimizer, _ = build_optimizer(model, num_training_steps=1000)
        # The default stage 1 includes density control: its per-step work is timed too.
        control = DensityController.for_stage(config, 1000, model.expected_density())

        def loss_and_clip(ids, labels):
            (model(input_ids=ids, labels=labels).loss + model.penalty()).backward()
            model.clip_grad_norms()

        def after_step():
            if control is not None:
                model.drift_gates(control.update(model.last_density()))

    ids = torch.randint(1000, 20000, (args.batch, args.seq_len))
    labels = torch.randint(0, 2, (args.batch,))

    from diffprune.kernels import use_backend

    def step() -> float:
        with use_backend(kernels):
            start = time.perf_counter()
            loss_and_clip(ids, labels)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            after_step()
            return time.perf_counter() - start

    return step


def memory_worker(args: argparse.Namespace) -> dict:
    """One method alone in this process: peak RSS over a few steps, minus RSS after imports."""
    import torch

    torch.manual_seed(0)
    baseline = _rss_mb()
    step = make_step(args.worker, args)
    times = [step() for _ in range(args.warmup + args.steps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": args.worker, "step_times_s": times[args.warmup:],
            "baseline_rss_mb": baseline, "peak_rss_mb": peak, "train_memory_mb": peak - baseline}


def timing_worker(args: argparse.Namespace) -> dict:
    """Every method in one process, steps interleaved (order rotating), so that the machine's
    drift, large on a shared host, hits all methods alike."""
    import torch

    torch.manual_seed(0)
    methods = args.methods.split(",")
    steps = {m: make_step(m, args) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(args.warmup + args.steps):
        order = methods[i % len(methods):] + methods[:i % len(methods)]
        for m in order:
            t = steps[m]()
            if i >= args.warmup:
                times[m].append(t)
    return {"step_times_s": times, "threads": torch.get_num_threads()}


def add_malloc_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc as it is (diffprune train keeps freed memory "
                             "for reuse: diffprune/training/allocator.py)")


def run_as_diffprune_train(args: argparse.Namespace) -> None:
    """Keep freed memory, as diffprune train does, unless --malloc-default."""
    if not args.malloc_default:
        from diffprune.training.allocator import keep_freed_memory

        keep_freed_memory()


def run_worker(args: argparse.Namespace, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--batch", str(args.batch), "--seq-len", str(args.seq_len),
           "--methods", args.methods, *extra] + (["--model", args.model] if args.model else [])
    cmd += (["--eager"] if args.eager else []) + (
        ["--malloc-default"] if args.malloc_default else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(memory: list[dict], timing: dict, methods: list[str]) -> dict:
    full = timing["step_times_s"]["full"]
    rows = {}
    for m in methods:
        times = timing["step_times_s"][m]
        mem = next(r for r in memory if r["method"] == m)
        rows[m] = {"median_step_s": statistics.median(times),
                   "median_paired_ratio": statistics.median(t / f for t, f in zip(times, full)),
                   "train_memory_mb": mem["train_memory_mb"], "peak_rss_mb": mem["peak_rss_mb"],
                   "steps": len(times)}
    return rows


def table(rows: dict) -> str:
    full = rows["full"]
    lines = ["| method | median step (s) | paired step ratio vs full | training memory (MB) "
             "| vs full |", "|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['median_step_s']:.3f} | {r['median_paired_ratio']:.2f}x | "
                     f"{r['train_memory_mb']:.0f} | "
                     f"{r['train_memory_mb'] / full['train_memory_mb']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (< 2 min)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--methods", default=None, help="comma-separated; 'full' is the baseline")
    parser.add_argument("--model", default=None, help="base model path (default: bundled MiniLM)")
    parser.add_argument("--eager", action="store_true", help="gate kernels without torch.compile")
    add_malloc_flag(parser)
    parser.add_argument("--worker", choices=METHODS + tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--timing-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.methods = args.methods or ("full,diff-structured" if args.quick else ",".join(METHODS))
    if args.worker or args.timing_worker:
        run_as_diffprune_train(args)  # every method alike
        print(json.dumps(memory_worker(args) if args.worker else timing_worker(args)))
        return
    methods = args.methods.split(",")
    steps = args.steps or (3 if args.quick else 16)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    memory = []
    for m in methods:
        print(f"memory: {m}", file=sys.stderr, flush=True)
        memory.append(run_worker(args, "--worker", m, "--steps", "1", "--warmup", "1"))
    print("timing: " + ", ".join(methods) + " interleaved", file=sys.stderr, flush=True)
    timing = run_worker(args, "--timing-worker", "--steps", str(steps), "--warmup", str(warmup))
    rows = summarise(memory, timing, methods)
    result = {
        "step_time_ratio": rows["diff-structured"]["median_paired_ratio"],
        "peak_memory_ratio": (rows["diff-structured"]["train_memory_mb"]
                              / rows["full"]["train_memory_mb"]),
    }
    report = {
        **run_info(),
        "settings": {"batch": args.batch, "seq_len": args.seq_len, "timed_steps": steps,
                     "warmup": warmup, "eager": args.eager,
                     "malloc_default": args.malloc_default},
        "methods": rows, **result, "memory_runs": memory, "timing_run": timing,
    }
    # One results file per batch size: the default batch keeps the historical name.
    name = "train_cost" if args.batch == 32 else f"train_cost_b{args.batch}"
    finish(name, f"Training cost (batch {args.batch})", report, table(rows), result, args.quick)

if __name__ == "__main__":
    main()
