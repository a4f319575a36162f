"""The methods users would pick instead of diff pruning, trained the way diffprune trains.

    python benchmarks/peers.py --method lora --task rte --data-dir ../shared/data/glue \
        --output runs/peers/lora-rte

Methods: ``bitfit`` (biases and head), ``last-layer`` (the last encoder layer, pooler and head),
``lora`` (PEFT, rank 8 on query and value: PEFT's default for sequence classification, which
leaves BERT's pooler frozen), ``lora-pooler`` (the same, with the pooler trained in full as
``modules_to_save``, as full finetuning and diff pruning train it), ``lora-matched`` (PEFT, the rank
whose stored size matches a 0.5% diff of the same model, ``--match-bytes``), ``houlsby``
(AdapterHub ``adapters``, ``double_seq_bn``, its head trained and BERT's pooler frozen) and
``houlsby-pooler`` (the same with the pooler trained in full, as for ``lora-pooler``). Both need
``adapters``, which pins an older Transformers, so run this script from its own environment:
``python -m venv .venv-adapters && .venv-adapters/bin/pip install torch==2.13.0 adapters -e .``).

Data, loaders, the step loop, best-dev selection and metrics.json are diffprune's own, so only
the choice of trainable parameters differs from ``diffprune train --method full``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from diffprune.data.tokenize import sequence_limit
from diffprune.loading import load_base
from diffprune.optim import adamw, linear_decay
from diffprune.training.data import load_task_data, make_loader
from diffprune.training.evaluate import evaluate
from diffprune.training.recipe import make_accelerator, peak_memory_mb
from diffprune.training.settings import TrainSettings
from diffprune.training.stage import Stage, StageContext, run_stage

PEERS = ("bitfit", "last-layer", "lora", "lora-pooler", "lora-matched", "houlsby",
         "houlsby-pooler")
BYTES_PER_VALUE = 4  # peers store float32 tensors (safetensors), as their libraries save them


def _freeze_all_but(model: torch.nn.Module, keep) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(keep(name))


def _last_layer_prefix(model: torch.nn.Module) -> str:
    layers = sorted({n.split(".layer.")[1].split(".")[0] for n, _ in model.named_parameters()
                     if ".layer." in n}, key=int)
    return f".layer.{layers[-1]}."


def lora_rank_for_bytes(model: torch.nn.Module, target_bytes: int, head_bytes: int) -> int:
    """The LoRA rank on query and value whose stored adapter + head fits ``target_bytes``."""
    per_rank = sum(m.in_features + m.out_features for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and n.endswith(("query", "value")))
    return max(1, (target_bytes - head_bytes) // (per_rank * BYTES_PER_VALUE))


LORA_RANK = 8


def _is_head(name: str, head: list[str]) -> bool:
    return any(name.endswith(h) or h in name for h in head)


def lora_rank(method: str, model: torch.nn.Module, head: list[str], match_bytes: int) -> int:
    """``lora``: rank 8; ``lora-matched``: the rank whose adapter + head fits ``match_bytes``."""
    if method in ("lora", "lora-pooler"):
        return LORA_RANK
    head_bytes = sum(p.numel() for n, p in model.named_parameters() if _is_head(n, head)) * 4
    return lora_rank_for_bytes(model, match_bytes, head_bytes)


def prepare(method: str, model: torch.nn.Module, head: list[str], match_bytes: int):
    """The model with only the method's parameters trainable (PEFT / adapters wrap it)."""
    is_head = lambda n: _is_head(n, head)  # noqa: E731
    if method == "bitfit":
        _freeze_all_but(model, lambda n: n.endswith(".bias") or is_head(n))
        return model, {}
    if method == "last-layer":
        prefix = _last_layer_prefix(model)
        _freeze_all_but(model, lambda n: prefix in n or ".pooler." in n or is_head(n))
        return model, {}
    if method in ("lora", "lora-pooler", "lora-matched"):
        from peft import LoraConfig, TaskType, get_peft_model

        head_modules = sorted({h.rsplit(".", 1)[0] for h in head})
        if method == "lora-pooler":  # BERT's pooler was never trained for classification here
            head_modules.append("pooler")
        rank = lora_rank(method, model, head, match_bytes)
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank,
                            lora_dropout=0.1, target_modules=["query", "value"],
                            modules_to_save=head_modules)
        return get_peft_model(model, config), {"lora_rank": rank}
    if method in ("houlsby", "houlsby-pooler"):
        try:
            import adapters
        except ImportError:
            raise SystemExit("houlsby needs AdapterHub's `adapters` (it pins an older "
                             "Transformers): run this script from its own environment, see "
                             "the module docstring") from None
        adapters.init(model)
        model.add_adapter("task", config="double_seq_bn")
        model.train_adapter("task")
        model.set_active_adapters("task")
        pooler = method == "houlsby-pooler"  # BERT's pooler was never trained for classification
        for name, param in model.named_parameters():
            if is_head(name) or (pooler and ".pooler." in name):
                param.requires_grad_(True)
        return model, {"adapter_config": "double_seq_bn"}
    raise SystemExit(f"unknown method {method!r}; one of {PEERS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=PEERS)
    parser.add_argument("--task", default="rte")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--group-by-length", default=True,
                        action=argparse.BooleanOptionalAction,
                        help="batch by length, as diffprune train does by default")
    parser.add_argument("--max-train-samples", type=int, default=0)
    parser.add_argument("--max-eval-samples", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-bytes", type=int, default=0,
                        help="lora-matched: bytes of the 0.5%% diff to match")
    args = parser.parse_args()
    start = time.time()
    torch.manual_seed(args.seed)
    settings = TrainSettings(task=args.task, data_dir=args.data_dir, model=args.model,
                             output=str(args.output), max_train_samples=args.max_train_samples,
                             max_eval_samples=args.max_eval_samples, seed=args.seed)
    data = load_task_data(settings)
    tokenizer, model, head = load_base(args.model, data.spec)
    base_params = sum(p.numel() for n, p in model.named_parameters() if n not in head)
    model, extra = prepare(args.method, model, head, args.match_bytes)
    trainable = [p for p in model.parameters() if p.requires_grad]
    new_params = sum(p.numel() for p in trainable)

    acc = make_accelerator()
    length = sequence_limit(model, tokenizer, args.max_seq_length)
    generator = torch.Generator().manual_seed(args.seed)
    train = make_loader(tokenizer, data.train, args.batch_size, length, shuffle=True,
                        generator=generator, group_by_length=args.group_by_length)
    dev = {s: make_loader(tokenizer, d, 64, length, shuffle=False) for s, d in data.dev.items()}

    def score(m):
        scores = evaluate(m, dev, data.spec)
        return scores[data.selection_split][data.spec.metric], scores

    args.output.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(acc, acc.prepare_data_loader(train), generator, args.seed, args.output,
                       score, log=print)
    per_epoch = len(ctx.loader)
    steps = max(1, round(per_epoch * args.epochs))
    steps = min(steps, args.max_steps) if args.max_steps else steps
    optimizer = adamw(trainable, lr=args.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(steps))
    stage = Stage(args.method, args.method, steps, select_best=True,
                  clip=lambda: torch.nn.utils.clip_grad_norm_(trainable, 1.0))
    state = run_stage(ctx, stage, acc.prepare_model(model), model, optimizer, scheduler)
    metrics = {"task": data.spec.name, "method": args.method, "metric": data.spec.metric,
               "dev": state.best_scores[data.selection_split], "dev_splits": state.best_scores,
               "best_step": state.best_step, "steps": steps, "new_params": new_params,
               "new_params_pct": 100 * new_params / base_params,
               "bytes_per_task": new_params * BYTES_PER_VALUE, "lr": args.lr,
               "train_seconds": round(time.time() - start, 1), "peak_memory_mb": peak_memory_mb(),
               **extra}
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(args.output / "checkpoint", ignore_errors=True)
    print(json.dumps({"dev": metrics["dev"], "new_params_pct": metrics["new_params_pct"]}))


if __name__ == "__main__":
    main()
