"""The multi-task bank beside the alternatives: switching, memory, mixed batches, file size.

- switch: median time of one task switch (revert the active 0.5% diff, apply the next) beside
  loading a fully finetuned checkpoint of the same model from a safetensors file (page cache
  warm, which favours the checkpoint) into the live model (the headline), and beside
  ``from_pretrained`` of a finetuned model directory (what a user without a bank would run);
  and, as the ceiling on that ratio for any in-place switch on this machine, one scattered write
  of as many values at random positions of a model-sized buffer;
- memory: process RSS growth for the base with 10 resident tasks beside the base alone, and the
  same ratio from tensor bytes;
- mixed batches: rows per second of batches whose rows cycle over 3 tasks, beside batches of one
  task, at the same batch size;
- bytes per nonzero of the task files (whole file: header and dense head included).

Tasks are the ``--task-file`` given (a trained diff, e.g. runs/rte/diff.safetensors), topped up
to 10 with synthetic 0.5% diffs at uniformly random positions (the worst case for compression).

    python benchmarks/bank.py --quick                                   # < 2 minutes
    python benchmarks/bank.py --task-file runs/rte/diff.safetensors     # full, writes results/

The last line printed is JSON with ``switch_speedup``, ``memory_ratio_10_tasks``,
``mixed_batch_throughput_ratio`` and ``bytes_per_nonzero``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _report import finish, run_info
from safetensors.torch import load_file, save_file

from diffprune.bank import TaskBank
from diffprune.task_file import SparseDiff, TaskDiff, load_task, save_task


def rss_mb() -> float:
    gc.collect()
    try:  # hand freed heap pages back, so RSS shows what is held, not what was once touched
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic_task(bank: TaskBank, template: TaskDiff | None, seed: int,
                   density: float) -> TaskDiff:
    """A 0.5% diff at random positions over the gated tensors of the template (or all but the
    head), with Gaussian values and a random head."""
    g = torch.Generator().manual_seed(seed)
    params = dict(bank.model.named_parameters())
    head_names = list(template.head) if template else ["classifier.weight", "classifier.bias"]
    names = list(template.diffs) if template else [n for n in params if n not in head_names]
    sizes = [params[n].numel() for n in names]
    total = sum(sizes)
    chosen = torch.randperm(total, generator=g)[: round(density * total)].sort().values
    diffs, start = {}, 0
    for name, size in zip(names, sizes):
        local = chosen[(chosen >= start) & (chosen < start + size)] - start
        diffs[name] = SparseDiff(tuple(params[name].shape), local,
                                 torch.randn(local.numel(), generator=g) * 1e-3)
        start += size
    head = {n: torch.randn(params[n].shape, generator=g) * 0.02 for n in head_names}
    return TaskDiff(diffs, head, task={"name": f"synthetic{seed}", "labels": ["0", "1"],
                                       "num_labels": 2},
                    base={**bank.base_info, "fingerprint": bank.base_fingerprint(names)})


def median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--task-file", type=Path, action="append", default=[])
    parser.add_argument("--density", type=float, default=0.005)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=None)
    args = parser.parse_args()
    batch = args.batch or (16 if args.quick else 32)
    seq_len = args.seq_len or (64 if args.quick else 128)
    repeat = 5 if args.quick else 20
    torch.manual_seed(0)

    rss_start = rss_mb()
    bank = TaskBank.from_pretrained(num_labels=2)
    rss_base = rss_mb()
    model_bytes = sum(p.numel() * p.element_size() for p in bank.model.parameters())
    tmp = Path(tempfile.mkdtemp(prefix="bank-bench-"))
    real = [load_task(p) for p in args.task_file]
    files = []
    for i, task in enumerate(real):
        files.append(save_task(task, tmp / f"real{i}.safetensors"))
    template = real[0] if real else None
    for seed in range(10 - len(real)):
        files.append(save_task(synthetic_task(bank, template, seed, args.density),
                               tmp / f"synthetic{seed}.safetensors"))
    for i, path in enumerate(files):
        bank.add(f"t{i}", path)
    rss_tasks = rss_mb()
    rows = bank.describe()
    nonzeros = rows[0]["nonzeros"]

    # Switching beside loading a finetuned checkpoint.
    checkpoint = tmp / "finetuned.safetensors"
    save_file({k: v.clone().contiguous() for k, v in bank.model.state_dict().items()},
              str(checkpoint))
    state = {"next": 0}

    def switch() -> None:
        state["next"] = 1 - state["next"]
        bank.activate(f"t{state['next']}")

    def load_checkpoint() -> None:
        bank.model.load_state_dict(load_file(str(checkpoint)))

    finetuned_dir = tmp / "finetuned"
    bank.model.save_pretrained(finetuned_dir)

    def from_pretrained() -> None:
        type(bank.model).from_pretrained(finetuned_dir)

    # The least any in-place switch can cost: one scattered write of a task's values into a
    # buffer the model's size (a real switch also reverts and reads the base values it covers).
    # Two position sets take turns, as two tasks do, so the cache is no warmer than a switch's.
    buffer = torch.zeros(sum(p.numel() for p in bank.model.parameters()))
    floor_sets = [torch.randperm(buffer.numel())[:nonzeros].sort().values for _ in range(2)]
    floor_values = torch.randn(nonzeros)

    def scattered_write() -> None:
        state["next"] = 1 - state["next"]
        buffer.index_copy_(0, floor_sets[state["next"]], floor_values)

    switch_s = median_time(switch, repeat * 5)
    floor_s = median_time(scattered_write, repeat * 5)
    load_s = median_time(load_checkpoint, repeat)
    from_pretrained_s = median_time(from_pretrained, 3)
    bank.deactivate()

    # Mixed-task batches beside single-task batches.
    ids = torch.randint(1000, 20000, (batch, seq_len))
    mask = torch.ones_like(ids)
    mixed_tasks = [f"t{i % 3}" for i in range(batch)]
    single_s = median_time(lambda: bank.forward("t0", input_ids=ids, attention_mask=mask),
                           repeat)
    mixed_s = median_time(lambda: bank.forward_mixed(mixed_tasks, input_ids=ids,
                                                     attention_mask=mask), repeat)

    file_bytes = [p.stat().st_size for p in files]
    results = {
        "switch_speedup": load_s / switch_s,
        "memory_ratio_10_tasks": (rss_tasks - rss_start) / (rss_base - rss_start),
        "mixed_batch_throughput_ratio": single_s / mixed_s,
        "bytes_per_nonzero": file_bytes[0] / nonzeros,
    }
    report = {
        **run_info(),
        "settings": {"batch": batch, "seq_len": seq_len, "repeat": repeat,
                     "density": args.density, "real_task_files": [str(p) for p in args.task_file]},
        "switch_ms": 1000 * switch_s, "checkpoint_load_ms": 1000 * load_s,
        "scattered_write_ms": 1000 * floor_s, "switch_speedup_ceiling": load_s / floor_s,
        "from_pretrained_ms": 1000 * from_pretrained_s,
        "switch_speedup_vs_from_pretrained": from_pretrained_s / switch_s,
        "rss_mb": {"start": rss_start, "base": rss_base, "base_plus_10_tasks": rss_tasks},
        "tensor_memory_ratio_10_tasks": (model_bytes + sum(r["resident_bytes"] for r in rows))
        / model_bytes,
        "model_bytes": model_bytes, "task_resident_bytes": [r["resident_bytes"] for r in rows],
        "task_file_bytes": file_bytes, "nonzeros_per_task": [r["nonzeros"] for r in rows],
        "bytes_per_nonzero_synthetic": [b / r["nonzeros"] for b, r in
                                        zip(file_bytes[len(real):], rows[len(real):])],
        "single_task_rows_per_s": batch / single_s, "mixed_rows_per_s": batch / mixed_s,
        **results,
    }
    table = "\n".join([
        "| measure | value |", "|---|---|",
        f"| task switch (revert + apply) | {1000 * switch_s:.2f} ms |",
        f"| load finetuned checkpoint (safetensors) | {1000 * load_s:.1f} ms |",
        f"| switch speed-up | {results['switch_speedup']:.1f}x |",
        f"| one scattered write of {nonzeros:,} values (the least a switch can cost) | "
        f"{1000 * floor_s:.2f} ms |",
        f"| ceiling on the speed-up (checkpoint load / that write) | "
        f"{load_s / floor_s:.1f}x |",
        f"| from_pretrained of a finetuned model directory | {1000 * from_pretrained_s:.0f} ms |",
        f"| switch speed-up vs from_pretrained | {from_pretrained_s / switch_s:.0f}x |",
        f"| RSS: base alone / base + 10 tasks | {rss_base - rss_start:.0f} MB / "
        f"{rss_tasks - rss_start:.0f} MB |",
        f"| memory ratio, 10 tasks (RSS) | {results['memory_ratio_10_tasks']:.3f} |",
        f"| memory ratio, 10 tasks (tensor bytes) | {report['tensor_memory_ratio_10_tasks']:.3f} |",
        f"| rows/s single-task / mixed (3 tasks) | {batch / single_s:.1f} / "
        f"{batch / mixed_s:.1f} |",
        f"| mixed-batch throughput ratio | {results['mixed_batch_throughput_ratio']:.3f} |",
        f"| bytes per nonzero (first file) | {results['bytes_per_nonzero']:.3f} |",
    ])
    finish("bank", "Multi-task bank", report, table, results, args.quick)

if __name__ == "__main__":
    main()
