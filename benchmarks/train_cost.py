"""Training cost of diff pruning beside full finetuning: step time and peak memory.

Each method runs in a fresh worker process (so peak RSS is its own), on the same model, batch
and sequence length, with rounds alternating between methods so that drift on a shared machine
hits both. Step time is the median over timed steps of forward + backward + clipping + AdamW
step; memory is the worker's peak RSS minus its RSS after imports (model, optimizer state,
activations and every temporary, i.e. what training costs).

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


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args: argparse.Namespace) -> dict:
    """One method, one process: returns per-step times and memory."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    from diffprune import DiffPruneConfig, build_optimizer, get_diffprune_model
    from diffprune.data_paths import default_model_path

    logging.set_verbosity_error()
    torch.manual_seed(0)
    baseline = _rss_mb()
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model or default_model_path(), num_labels=2)
    model.train()
    if args.method == "full":
        # The same fused AdamW kernel that build_optimizer uses, so only the method differs.
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, fused=True)
        trainable = model.parameters

        def step(ids, labels):
            out = model(input_ids=ids, labels=labels)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(list(trainable()), 1.0)
    else:
        config = DiffPruneConfig(structured=args.method == "diff-structured", fused=not args.eager)
        model = get_diffprune_model(model, config).train()
        optimizer, _ = build_optimizer(model, num_training_steps=1000)

        def step(ids, labels):
            out = model(input_ids=ids, labels=labels)
            (out.loss + model.penalty()).backward()
            model.clip_grad_norms()

    ids = torch.randint(1000, 20000, (args.batch, args.seq_len))
    labels = torch.randint(0, 2, (args.batch,))
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step(ids, labels)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": args.method, "step_times_s": times, "baseline_rss_mb": baseline,
            "peak_rss_mb": peak, "train_memory_mb": peak - baseline,
            "threads": torch.get_num_threads()}


def run_worker(method: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--batch", str(args.batch),
           "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--warmup",
           str(args.warmup)] + (["--model", args.model] if args.model else []) + (
           ["--eager"] if args.eager else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict], methods: list[str]) -> dict:
    rows = {}
    for m in methods:
        mine = [r for r in runs if r["method"] == m]
        times = [t for r in mine for t in r["step_times_s"]]
        rows[m] = {"median_step_s": statistics.median(times), "min_step_s": min(times),
                   "train_memory_mb": max(r["train_memory_mb"] for r in mine),
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in mine), "steps": len(times)}
    return rows


def table(rows: dict) -> str:
    full = rows["full"]
    lines = ["| method | median step (s) | vs full | training memory (MB) | vs full |",
             "|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['median_step_s']:.3f} | "
                     f"{r['median_step_s'] / full['median_step_s']:.2f}x | "
                     f"{r['train_memory_mb']:.0f} | "
                     f"{r['train_memory_mb'] / full['train_memory_mb']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one round (< 2 min)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--methods", default="full,diff-structured,diff")
    parser.add_argument("--model", default=None, help="base model path (default: bundled MiniLM)")
    parser.add_argument("--eager", action="store_true", help="gate kernels without torch.compile")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.method = args.worker
        print(json.dumps(worker(args)))
        return
    args.steps = args.steps or (3 if args.quick else 12)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    rounds = args.rounds or (1 if args.quick else 2)
    methods = ["full", "diff-structured"] if args.quick else args.methods.split(",")
    runs = []
    for r in range(rounds):
        order = methods if r % 2 == 0 else methods[::-1]
        for m in order:
            print(f"round {r + 1}/{rounds}: {m}", file=sys.stderr, flush=True)
            runs.append(run_worker(m, args))
    rows = summarise(runs, methods)
    result = {
        "step_time_ratio": rows["diff-structured"]["median_step_s"] / rows["full"]["median_step_s"],
        "peak_memory_ratio": (rows["diff-structured"]["train_memory_mb"]
                              / rows["full"]["train_memory_mb"]),
    }
    report = {
        **run_info(),
        "settings": {"batch": args.batch, "seq_len": args.seq_len, "steps": args.steps,
                     "warmup": args.warmup, "rounds": rounds, "eager": args.eager},
        "methods": rows, **result, "runs": runs,
    }
    finish("train_cost", "Training cost", report, table(rows), result, args.quick)

if __name__ == "__main__":
    main()
