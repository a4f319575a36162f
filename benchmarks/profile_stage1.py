"""Where a stage-1 (L0) step's time goes, beside a full-finetuning step: torch.profiler on CPU.

    python benchmarks/profile_stage1.py --batch 8 --seq-len 128 --steps 3

Builds the bundled MiniLM as ``train_cost.py`` does (the same step: forward, backward, clipping,
AdamW, and density control for the L0 method), warms up, profiles ``--steps`` steps of each
method and groups the operators' self CPU time into the parts of a step: the gates' kernels,
the noise, the optimizer (everything inside its step), the model's matmuls and the rest. Writes
``results/profile_stage1.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json

from _report import RESULTS, run_info
from train_cost import add_device_flags, add_malloc_flag, make_step, run_as_diffprune_train

# Operator name fragments -> the part of a step they belong to (first match wins).
PARTS = [
    ("noise (torch.rand)", ("aten::uniform_", "aten::rand")),
    ("gate kernels (compiled)", ("CompiledFxGraph", "CompiledFunction", "TorchDynamo",
                                 "Torch-Compiled", "inductor", "GatedDiff")),
    ("dropout masks", ("aten::bernoulli",)),
    ("optimizer (AdamW)", ("_fused_adamw", "adamw", "_foreach")),
    ("matmuls", ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("gradient clipping", ("aten::norm", "linalg_vector_norm", "clip_grad")),
]


def _inside_optimizer(event) -> bool:
    """Whether a profiled call ran inside ``Optimizer.step`` (torch records each step)."""
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False


def profile(method: str, args: argparse.Namespace) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    step = make_step(method, args)
    for _ in range(args.warmup):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = [step() for _ in range(args.steps)]
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    parts: dict[str, float] = {name: 0.0 for name, _ in PARTS}
    parts["other"] = 0.0
    for e in prof.events():  # each call, so that what runs inside the optimizer's step counts
        if e.self_cpu_time_total <= 0:  # there (its compiled kernels look like the gates')
            continue
        part = "optimizer (AdamW)" if _inside_optimizer(e) else next(
            (name for name, keys in PARTS if any(k in e.name for k in keys)), "other")
        parts[part] += e.self_cpu_time_total / 1e3 / args.steps  # ms per step
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"method": method, "step_s": sorted(seconds)[len(seconds) // 2],
            "parts_ms": {k: round(v, 1) for k, v in parts.items()},
            "operator_calls": sum(e.count for e in events) // args.steps,
            "top": [{"op": e.key, "ms": round(e.self_cpu_time_total / 1e3 / args.steps, 1),
                     "calls": e.count // args.steps} for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--methods", default="full,diff-structured")
    parser.add_argument("--model", default=None)
    parser.add_argument("--eager", action="store_true")
    add_device_flags(parser)  # on a GPU the profile still shows CPU time: what launching costs
    add_malloc_flag(parser)
    args = parser.parse_args()
    run_as_diffprune_train(args)
    rows = [profile(m, args) for m in args.methods.split(",")]
    report = {**run_info(), "settings": vars(args), "methods": rows}
    (RESULTS / "profile_stage1.json").write_text(json.dumps(report, indent=2) + "\n")
    parts = list(rows[0]["parts_ms"])
    lines = [f"# Where a step's time goes (batch {args.batch}, sequence {args.seq_len})", "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}  ",
             f"Machine: {report['machine']}", "",
             "Self CPU time per step, ms, from torch.profiler (profiling adds overhead: compare "
             "the parts, not the totals with train_cost.py).", "",
             "| part | " + " | ".join(r["method"] for r in rows) + " |",
             "|---" * (len(rows) + 1) + "|"]
    lines += [f"| {p} | " + " | ".join(f"{r['parts_ms'][p]:.1f}" for r in rows) + " |"
              for p in parts]
    lines += ["| operator calls per step | " + " | ".join(str(r["operator_calls"]) for r in rows)
              + " |", "| step (s, while profiled) | "
              + " | ".join(f"{r['step_s']:.3f}" for r in rows) + " |", ""]
    for r in rows:
        lines += [f"Top operators, {r['method']}:", "", "| operator | ms | calls |",
                  "|---|---|---|"]
        lines += [f"| `{t['op']}` | {t['ms']} | {t['calls']} |" for t in r["top"]] + [""]
    (RESULTS / "profile_stage1.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
