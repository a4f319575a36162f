"""Training cost of diff pruning beside full finetuning: step time and peak memory.

Same model, batch and sequence length for every method. Time: all methods in one process with
their steps interleaved (the order rotating), so that the drift of a shared machine, which moves
a full-finetuning step between 3 and 4.4 s here, hits every method alike; the ratio is the
median over iterations of (method step / full-finetuning step of the same iteration), a step
being forward + backward + clipping + AdamW. Memory: each method alone in a fresh process, peak
RSS minus RSS after imports (model, optimiser state, activations and every temporary).

    python benchmarks/train_cost.py --quick            # < 2 minutes, last line is JSON
    python benchmarks/train_cost.py                    # full mode, writes benchmarks/results/
    python benchmarks/train_cost.py --device cuda --bf16   # on a GPU, under bf16 autocast

On a GPU, time is measured between synchronisations and memory is the peak of torch's CUDA
allocator (tensors only) minus what was allocated before the model was built. Every method's
table row also counts what one step launches, from torch.profiler: kernels (and copies) on a
GPU, where a step's fixed cost is its launches, and operator calls on the CPU.

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
    device = torch.device(args.device)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model or default_model_path(), num_labels=2).train().to(device)
    # bf16 autocast around the forward pass only, as torch recommends; the parameters, the
    # gates and the optimizers stay float32
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    kernels = "native"
    if method == "full":
        # The same fused AdamW kernel that build_optimizer uses, so only the method differs.
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, fused=True)

        def loss_and_clip(ids, labels):
            with autocast:
                loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
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
            with autocast:
                loss = model(input_ids=ids, labels=labels).loss
            (loss + model.penalty()).backward()
            model.clip_grad_norms()

        def after_step():
            if control is not None:
                model.drift_gates(control.update(model.last_density()))

    ids = torch.randint(1000, 20000, (args.batch, args.seq_len)).to(device)
    labels = torch.randint(0, 2, (args.batch,)).to(device)
    # a GPU runs asynchronously: a step's time is only known once its work has finished
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    from diffprune.kernels import use_backend

    def step() -> float:
        with use_backend(kernels):
            sync()
            start = time.perf_counter()
            loss_and_clip(ids, labels)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            after_step()
            sync()
            return time.perf_counter() - start

    return step


def memory_worker(args: argparse.Namespace) -> dict:
    """One method alone in this process: peak RSS over a few steps, minus RSS after imports."""
    import torch

    torch.manual_seed(0)
    cuda = args.device.startswith("cuda")
    baseline = torch.cuda.memory_allocated() / 2**20 if cuda else _rss_mb()
    step = make_step(args.worker, args)
    times = [step() for _ in range(args.warmup + args.steps)]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"method": args.worker, "step_times_s": times[args.warmup:],
            "memory": "cuda allocator" if cuda else "process RSS",
            "baseline_mb": baseline, "peak_mb": peak, "train_memory_mb": peak - baseline}


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
    launches = {m: launches_per_step(steps[m], args.device) for m in methods}  # after timing
    return {"step_times_s": times, "launches_per_step": launches,
            "threads": torch.get_num_threads()}


def launches_per_step(step, device: str) -> int:
    """What one step launches, from torch.profiler: kernels, copies and sets on a GPU (the
    step's fixed cost there), operator calls on the CPU."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
    kind = DeviceType.CUDA if cuda else DeviceType.CPU
    return sum(1 for e in prof.events() if e.device_type == kind)


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    parser.add_argument("--bf16", action="store_true",
                        help="forward passes under bfloat16 autocast (every method alike)")


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
           "--methods", args.methods, "--device", args.device, *extra] + (
               ["--model", args.model] if args.model else []) + (["--bf16"] if args.bf16 else [])
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
                   "train_memory_mb": mem["train_memory_mb"], "peak_mb": mem["peak_mb"],
                   "launches_per_step": timing["launches_per_step"][m], "steps": len(times)}
    return rows


def table(rows: dict, device: str) -> str:
    full = rows["full"]
    launches = ("GPU kernels and copies per step" if device.startswith("cuda")
                else "operator calls per step")
    lines = ["| method | median step (s) | paired step ratio vs full | training memory (MB) "
             f"| vs full | {launches} |", "|---|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['median_step_s']:.3f} | {r['median_paired_ratio']:.2f}x | "
                     f"{r['train_memory_mb']:.0f} | "
                     f"{r['train_memory_mb'] / full['train_memory_mb']:.2f}x | "
                     f"{r['launches_per_step']:,} |")
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
    parser.add_argument("--eager", action="store_true",
                        help="stage 1's math eagerly (neither C++ kernels nor torch.compile)")
    add_device_flags(parser)
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
                     "malloc_default": args.malloc_default, "device": args.device,
                     "device_name": device_name(args.device), "bf16": args.bf16},
        "methods": rows, **result, "memory_runs": memory, "timing_run": timing,
    }
    # One results file per batch size, device and precision: batch 32 on the CPU in float32
    # keeps the historical name.
    name = ("train_cost" + ("" if args.batch == 32 else f"_b{args.batch}")
            + ("" if args.device == "cpu" else f"_{args.device.split(':')[0]}")
            + ("_bf16" if args.bf16 else ""))
    title = (f"Training cost (batch {args.batch}, {report['settings']['device_name']}"
             f"{', bf16 autocast' if args.bf16 else ''})")
    finish(name, title, report, table(rows, args.device), result, args.quick)


def device_name(device: str) -> str:
    """The accelerator's name for the report (the CPU's platform is in run_info already)."""
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


if __name__ == "__main__":
    main()
