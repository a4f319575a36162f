"""How much of a training batch is padding, with random batches and with length grouping.

A batch is padded to its longest example, and a step's cost follows the padded size. This counts
padded tokens per real token over one epoch of each GLUE task's training set, batched as
``diffprune train`` batches it (the bundled tokenizer, pairs truncated longest-first), at random
and grouped by length (``diffprune/data/length_groups.py``). Tokenization only: no model runs.

    python benchmarks/padding.py                       # all local tasks, writes results/padding.*
    python benchmarks/padding.py --tasks rte --quick   # print only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _report import finish, run_info


def padded_per_real(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return padded / sum(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rte,mrpc,stsb,cola,sst2")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/glue")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, default=0, help="0 = the whole set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="print only, write nothing")
    args = parser.parse_args()

    import torch
    from torch.utils.data import BatchSampler, RandomSampler

    from diffprune.data.glue import get_task, load_glue
    from diffprune.data.length_groups import LengthGroupedBatches
    from diffprune.data.tokenize import encode
    from diffprune.loading import load_tokenizer

    tokenizer = load_tokenizer(None)
    rows = []
    for name in args.tasks.split(","):
        train = load_glue(get_task(name), args.data_dir).train.head(args.max_train_samples)
        lengths = [len(f["input_ids"]) for f in encode(tokenizer, train.texts,
                                                       args.max_seq_length)]
        gen = torch.Generator().manual_seed(args.seed)
        random = list(BatchSampler(RandomSampler(range(len(lengths)), generator=gen),
                                   args.batch_size, drop_last=False))
        grouped = list(LengthGroupedBatches(lengths, args.batch_size, gen))
        rows.append({"task": name, "examples": len(lengths),
                     "mean_tokens": sum(lengths) / len(lengths),
                     "at_limit": sum(n >= args.max_seq_length for n in lengths) / len(lengths),
                     "random": padded_per_real(random, lengths),
                     "grouped": padded_per_real(grouped, lengths)})
    table = "\n".join(
        ["| task | examples | mean tokens | at the limit | padded/real, random | grouped | "
         "grouped/random |", "|---|---|---|---|---|---|---|"]
        + [f"| {r['task']} | {r['examples']:,} | {r['mean_tokens']:.1f} "
           f"| {100 * r['at_limit']:.1f}% | {r['random']:.2f} "
           f"| {r['grouped']:.2f} | {r['grouped'] / r['random']:.2f}x |"
           for r in rows])
    report = {**run_info(), "settings": {**vars(args), "data_dir": str(args.data_dir)},
              "rows": rows}
    finish("padding", "Padding per real token, random and length-grouped batches", report,
           table, {r["task"]: round(r["grouped"] / r["random"], 3) for r in rows}, args.quick)


if __name__ == "__main__":
    main()
