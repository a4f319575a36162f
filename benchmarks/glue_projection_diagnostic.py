"""Why does structured diff pruning lose more at projection than unstructured?

Projection keeps the top 0.5% of one random draw of the diff, delta = z * w (times the group
gate z_g in the structured variant), as the paper does (SPEC §2). A group gate that draws 0
empties its whole tensor for the ranking, and one that draws between 0 and 1 scales the whole
tensor down; an element gate only moves one entry. This script measures that.

For a run of ``glue_l0_diagnostic.sh`` (its exact `train` command, read from its JSON), it trains
the L0 stage again exactly as `train` does, then projects copies of the model several ways and
scores each on dev, before any fixed-mask finetuning:
  - the draw `train` made (seed + 1): its score must equal the run's recorded
    `dev_after_projection`, which checks that the L0 stage was reproduced;
  - further draws (seeds + 2, + 3, ...): how much a draw matters;
  - the deterministic gate of Louizos et al., z = clamp(sigmoid(alpha) (r - l) + l, 0, 1), which
    the paper does not use.
With ``--finetune`` the deterministic projection then gets the run's fixed-mask stage, to compare
its final score with the run's.

    python benchmarks/glue_projection_diagnostic.py stsb-fast-gates-mask-epochs-6-structured-seed0
    python benchmarks/glue_projection_diagnostic.py --table   # the Markdown table of every result

About 6 minutes a run on one core, 15 with ``--finetune``. Results:
benchmarks/results/glue-diagnostics/projection/<run>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from _report import RESULTS
from glue_render import projection_table

DIAGNOSTICS = RESULTS / "glue-diagnostics"
OUT = DIAGNOSTICS / "projection"


def settings_of(run_name: str):
    """The run's DiffPruneConfig and TrainSettings, parsed by `train`'s own parser."""
    from diffprune.cli.main import build_parser
    from diffprune.cli.train import settings_from_args

    recorded = json.loads((DIAGNOSTICS / f"{run_name}.json").read_text())
    argv = shlex.split(recorded["command"])
    argv = argv[argv.index("train"):]
    out = argv.index("--output") + 1
    argv[out] = f"runs/glue-diag/projection-{run_name}"  # never the original run's folder
    return recorded, *settings_from_args(build_parser().parse_args(argv))


def deterministic_diffs(model) -> list[torch.Tensor]:
    """delta = z_hat * w with Louizos et al.'s test-time gate (and the group's, if structured)."""
    def gate(log_alpha):
        hc = model.hc
        return (torch.sigmoid(log_alpha) * (hc.right - hc.left) + hc.left).clamp(0.0, 1.0)

    diffs = []
    with torch.no_grad():
        for site in model.sites:
            diff = gate(model.tensor(site, "log_alpha")) * model.tensor(site, "diff")
            if model.diffprune_config.structured:
                diff = diff * gate(model.tensor(site, "group_log_alpha"))
            diffs.append(diff)
    return diffs


def group_gates(model) -> dict:
    """How sure the group gates are: per tensor P(z_g = 0) and P(0 < z_g < 1)."""
    from diffprune.gates import prob_nonzero, prob_one

    if not model.diffprune_config.structured:
        return {}
    zero, partial = [], []
    with torch.no_grad():
        for site in model.sites:
            log_alpha = model.tensor(site, "group_log_alpha")
            p_nonzero, p_one = float(prob_nonzero(log_alpha, model.hc)), float(
                prob_one(log_alpha, model.hc))
            zero.append(1 - p_nonzero)
            partial.append(p_nonzero - p_one)
    return {"tensors": len(zero), "expected_zeroed_per_draw": sum(zero),
            "expected_partial_per_draw": sum(partial), "max_p_zero": max(zero),
            "max_p_partial": max(partial)}


def emptied(model, diffs: list[torch.Tensor]) -> int:
    """Tensors a draw emptied: all-zero diff where w is not (their group gate drew 0)."""
    return sum(bool((d == 0).all() and (model.tensor(s, "diff") != 0).any())
               for s, d in zip(model.sites, diffs))


def kept_energy(projected, diffs: list[torch.Tensor]) -> float:
    """Share of the diff's squared norm that the projection kept."""
    kept = sum(float((projected.tensor(s, "values") ** 2).sum()) for s in projected.sites)
    return kept / sum(float((d.float() ** 2).sum()) for d in diffs)


def analyse(run_name: str, draws: int, finetune: bool) -> dict:
    from diffprune.model import DiffPruneModel
    from diffprune.optim import build_optimizer
    from diffprune.training.recipe import _fixed_mask, _Run, make_accelerator
    from diffprune.training.stage import Stage

    recorded, config, settings = settings_of(run_name)
    if settings.method in ("diff", "diff-structured"):  # as train_task does
        config = replace(config, structured=settings.method == "diff-structured")
    start = time.time()
    torch.manual_seed(settings.seed)
    Path(settings.output).mkdir(parents=True, exist_ok=True)
    run = _Run(config, settings, make_accelerator())
    # The L0 stage exactly as recipe._diff_model runs it.
    model = DiffPruneModel(run.base, run.config, missing_keys=run.missing).train()
    steps = run.steps(settings.epochs)
    optimizer, scheduler = build_optimizer(model, steps)
    run.stage(Stage("l0", "L0 training", steps, select_best=False, clip=model.clip_grad_norms),
              model, optimizer, scheduler)
    metric = run.spec.metric
    result = {"run": run_name, "method": settings.method, "seed": settings.seed,
              "metric": metric, "density_before_projection": model.expected_density(),
              "dev_after_l0": run.score(model)[0], "groups": group_gates(model),
              "recorded": {k: recorded[k]["dev"][metric] if k != "dev" else recorded[k][metric]
                           for k in ("dev_after_l0", "dev_after_projection", "dev")}}
    result["draws"] = []
    for draw in range(draws):
        projected = copy.deepcopy(model)
        torch.manual_seed(settings.seed + 1 + draw)  # draw 0 is the one `train` made
        diffs = projected.sample_diff()
        projected.set_diff(diffs, None, projected._gate_log_probs())
        result["draws"].append({"seed": settings.seed + 1 + draw,
                                "emptied_tensors": emptied(model, diffs),
                                "kept_energy": kept_energy(projected, diffs),
                                "dev_after_projection": run.score(projected)[0]})
    projected = copy.deepcopy(model)
    diffs = deterministic_diffs(model)
    projected.set_diff(diffs, None, projected._gate_log_probs())
    result["deterministic"] = {"kept_energy": kept_energy(projected, diffs),
                               "dev_after_projection": run.score(projected)[0]}
    if finetune:
        final = _fixed_mask(run, projected)
        result["deterministic"]["dev"] = final[run.data.selection_split][metric]
        result["deterministic"]["best_step"] = run.metrics["best_step"]
    result["seconds"] = round(time.time() - start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="names of glue-diagnostics runs")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.runs:
        result = analyse(name, args.draws, args.finetune)
        result["command"] = "python " + " ".join(sys.argv)
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.table or not args.runs:
        print(projection_table(OUT))


if __name__ == "__main__":
    main()
