"""The GLUE runs aggregated: summaries, the density sweep's points, and every verdict.

Everything the report states is computed here from the run JSONs under
``benchmarks/results/glue*/`` and returned as data (numbers and met / missed); the renderer
(``glue_render.py``) only formats it. ``tests/test_glue_verdicts.py`` covers each verdict on
small fixture results.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

TASKS = ("rte", "mrpc", "stsb", "cola", "sst2")
TASK_TITLES = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "sst2": "SST-2"}
ORDER = ("full", "diff-structured", "diff", "nonadaptive", "nonadaptive-last",
         "diff-structured-w-rate-held", "diff-w-rate-held", "diff-structured-fixed", "diff-fixed",
         "houlsby", "houlsby-pooler", "lora", "lora-pooler", "lora-matched", "bitfit",
         "last-layer")
PRUNED = ("diff-structured", "diff", "nonadaptive")
# The same three with the paper's fixed λ for the L0 methods (the rows before density control).
PRUNED_FIXED = ("diff-structured-fixed", "diff-fixed", "nonadaptive")
# The same three with non-adaptive pruning's diff taken from full finetuning's last state, so
# that dev picks once per run for every method (a diagnostic: the goal is on PRUNED).
PRUNED_LAST = ("diff-structured", "diff", "nonadaptive-last")
LABELS = {"diff-structured-fixed": "diff-structured, paper's fixed λ",
          "diff-fixed": "diff, paper's fixed λ", "lora-pooler": "lora + pooler",
          "houlsby-pooler": "houlsby + pooler",
          "nonadaptive-last": "nonadaptive from the last state",
          # runs of the default from before stage 1's w rate followed the density
          "diff-structured-w-rate-held": "diff-structured, stage 1's w rate held",
          "diff-w-rate-held": "diff, stage 1's w rate held"}
# A peer with and without BERT's pooler trained: the claim is held against the better of each.
PEER_FAMILIES = {"LoRA": ("lora", "lora-pooler"), "Houlsby": ("houlsby", "houlsby-pooler")}
CONTROLLED = ("diff-structured", "diff")  # rows whose stage 1 steers to a density target
ALL_PRUNED = (*PRUNED, "nonadaptive-last", "diff-structured-fixed", "diff-fixed",
              "diff-structured-w-rate-held", "diff-w-rate-held")

# The paper's Table 1 (BERT-large, GLUE test server), in our method names.
PAPER = {
    "full": {"sst2": 94.1, "cola": 59.6, "mrpc": 88.9, "stsb": 86.6, "rte": 71.2, "pct": "100%"},
    "houlsby": {"sst2": 94.0, "cola": 59.5, "mrpc": 89.5, "stsb": 86.9, "rte": 71.5,
                "pct": "3.6%"},
    "last-layer": {"sst2": 91.6, "cola": 40.2, "mrpc": 80.1, "stsb": 67.3, "rte": 58.6,
                   "pct": "3.8%"},
    "nonadaptive": {"sst2": 93.6, "cola": 51.2, "mrpc": 81.5, "stsb": 78.2, "rte": 61.5,
                    "pct": "0.5%"},
    "diff": {"sst2": 93.8, "cola": 60.5, "mrpc": 87.0, "stsb": 83.5, "rte": 68.1, "pct": "0.5%"},
    "diff-structured": {"sst2": 94.1, "cola": 61.1, "mrpc": 89.7, "stsb": 86.0, "rte": 70.6,
                        "pct": "0.5%"},
}

# What the paper reports beside Table 1: all-zero tensors after structured and unstructured
# diff pruning (%), and the expected density the L0 term alone reached (range and mean, %).
PAPER_FACTS = {"all_zero_structured": 13, "all_zero_unstructured": 6.5,
               "l0_density": (0.6, 3.3), "l0_density_mean": 1.4}


def load_runs(folder: Path) -> dict[str, list[dict]]:
    """method -> its run JSONs under ``folder``."""
    if not folder.is_dir():
        return {}
    found = {d.name: [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
             for d in folder.iterdir() if d.is_dir()}
    return in_order(found)


def in_order(runs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The methods that have runs, in the tables' order (ORDER, then by name)."""
    return {m: runs[m] for m in sorted(runs, key=lambda m: (m not in ORDER, ORDER.index(m)
                                                            if m in ORDER else m)) if runs[m]}


def score(run: dict) -> float:
    return 100 * run["dev"][run["metric"]]


def group(runs: list[dict], key: str, default: str | None = None) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for r in runs:
        grouped.setdefault(r.get(key, default), []).append(r)
    return grouped


def by_task(runs: list[dict]) -> dict[str, list[dict]]:
    return group(runs, "task")


def by_device(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs from before devices were recorded trained on this CPU."""
    return dict(sorted(group(runs, "device", "cpu").items()))


def summarise(matrix: dict[str, list[dict]]) -> dict:
    """method -> task -> mean score (GLUE points), with avg, bytes and new-parameter share."""
    summary: dict = {}
    for method, runs in matrix.items():
        row: dict = {}
        grouped = by_task(runs)
        for task in [t for t in TASKS if t in grouped]:
            scores = [score(r) for r in grouped[task]]
            row[task] = statistics.mean(scores)
            row[f"{task}_std"] = statistics.stdev(scores) if len(scores) > 1 else 0.0
            row[f"{task}_seeds"] = len(scores)
        row["tasks"] = [t for t in TASKS if t in grouped]
        row["avg"] = statistics.mean(row[t] for t in row["tasks"])
        row["bytes_per_task"] = round(statistics.mean(r.get("bytes_per_task", 0) for r in runs))
        pct = [r.get("new_params_pct", 100 * r.get("density_after_projection", 1.0))
               for r in runs]
        row["new_params_pct"] = round(statistics.mean(pct), 3)
        row["train_seconds"] = round(statistics.mean(r["train_seconds"] for r in runs), 1)
        row["peak_memory_mb"] = round(max(r["peak_memory_mb"] for r in runs), 1)
        on = by_device(runs)
        if list(on) != ["cpu"]:  # say where; a mean over a GPU's and a CPU's times means nothing
            row["by_device"] = {
                d: {"train_seconds": round(statistics.mean(r["train_seconds"] for r in rs), 1),
                    "peak_memory_mb": round(max(r["peak_memory_mb"] for r in rs), 1)}
                for d, rs in on.items()}
        row["runs"] = len(runs)
        ranks = {r["lora_rank"] for r in runs if "lora_rank" in r}
        if ranks:
            row["lora_rank"] = sorted(ranks)
        summary[method] = row
    return summary


def write_summary(path: Path, summary: dict) -> None:
    """The summary as JSON, scores to 0.01 points. Tables format the unrounded means: rounding
    twice would show 86.1486 as 86.2."""
    def two_places(row: dict) -> dict:
        return {k: round(v, 2) if k in (*TASKS, "avg") or k.endswith("_std") else v
                for k, v in row.items()}
    path.write_text(json.dumps({m: two_places(row) for m, row in summary.items()}, indent=2)
                    + "\n")


def majority_class(data_dir: Path, train_examples: int) -> dict[str, float]:
    """Task -> dev score of one constant answer: the most common label of the training subset
    (its mean score for STS-B, whose Spearman is then 0). The floor a method must clear to have
    learned anything; on MRPC it is already 81 F1."""
    import numpy as np

    from diffprune.data.glue import get_task, read_split
    from diffprune.data.metrics import glue_metrics

    floor = {}
    for name in TASKS:
        task = get_task(name)
        if not (data_dir / task.folder).is_dir():
            continue
        train = read_split(data_dir, task, "train").labels[:train_examples or None]
        gold = np.asarray(read_split(data_dir, task, "dev").labels)
        constant = statistics.mode(train) if task.labels else statistics.mean(train)
        floor[name] = 100 * glue_metrics(task.metric, np.full(len(gold), constant),
                                         gold)[task.metric]
    return floor


def density_seeds(density: dict[str, list[dict]]) -> dict[str, set[int]]:
    """task -> the seeds the density sweep ran on it."""
    return {task: {r["seed"] for r in rs}
            for task, rs in by_task([r for rs in density.values() for r in rs]).items()}


def at_sweep_seeds(runs: list[dict], seeds: dict[str, set[int]]) -> list[dict]:
    """The runs at the seeds the density sweep ran on their task."""
    return [r for r in runs if r["seed"] in seeds.get(r["task"], ())]


def density_points(density: dict[str, list[dict]], matrix: dict[str, list[dict]]) -> dict:
    """method -> density -> task -> scores over seeds, the 0.5% point taken from the matrix's
    runs at the seeds the sweep ran that method on that task (so that every budget of a method
    averages the same seeds)."""
    points: dict = {}
    for method in ALL_PRUNED:
        for r in density.get(method, []):
            (points.setdefault(method, {}).setdefault(r["density"], {})
             .setdefault(r["task"], []).append(score(r)))
        if method in points:
            seeds = density_seeds({method: density[method]})
            for r in at_sweep_seeds(matrix.get(method, []), seeds):
                points[method].setdefault(0.005, {}).setdefault(r["task"], []).append(score(r))
    return points


def point_means(points: dict) -> dict:
    """method -> density -> task -> mean score over seeds."""
    return {m: {d: {t: statistics.mean(s) for t, s in by_task.items()}
                for d, by_task in by_density.items()} for m, by_density in points.items()}


def density_means(means: dict) -> dict:
    """method -> density -> mean over the tasks, where every task swept has that point (the
    paper's Figure 1 plots such an average)."""
    tasks = {t for m in means.values() for d in m.values() for t in d}
    return {method: {d: statistics.mean(by_task.values())
                     for d, by_task in by_density.items() if set(by_task) == tasks}
            for method, by_density in means.items()}


def control_rows(matrix: dict[str, list[dict]]) -> list[dict]:
    """Per run of the L0 methods: density before projection against its target, the dev change
    at projection and the final score (what density control is for)."""
    rows = []
    for method in (*CONTROLLED, "diff-structured-fixed", "diff-fixed"):
        for r in sorted(matrix.get(method, []), key=lambda r: (TASKS.index(r["task"]), r["seed"])):
            if "dev_after_l0" not in r:
                continue
            metric, split = r["metric"], r.get("selection_split", "dev")
            before = 100 * r["dev_after_l0"][split][metric]
            after = 100 * r["dev_after_projection"][split][metric]
            target = r.get("density_target")
            rows.append({"method": method, "task": r["task"], "seed": r["seed"],
                         "density": r["density_before_projection"], "target": target,
                         "off_target": (None if target is None else
                                        r["density_before_projection"] / target - 1),
                         "dev_after_l0": before, "drop": before - after, "final": score(r)})
    return rows


def final_stage_steps(run: dict) -> tuple[int, int]:
    """(best step, steps) of a run's last training stage: the step whose dev score it kept."""
    if "best_step" in run:
        return run["best_step"], run.get("mask_steps", run.get("steps"))
    return run["full_best_step"], run["full_steps"]


def flag_values(command: str) -> dict[str, str]:
    """``--flag value`` and ``--flag=value`` pairs of a command line (a bare flag maps to "")."""
    tokens, flags = command.split(), {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            name, _, value = token.partition("=")
            if not value and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
            flags[name] = value
    return flags


def _same_value(a: str | None, b: str | None) -> bool:
    try:  # 1e-3 and 0.001 are one rate
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


PATH_FLAGS = ("--output", "--data-dir")  # where a run writes and reads, not what it trains
FLAG_DEFAULTS = {"--max-eval-samples": "0"}  # the whole dev set, said or not


def flag_changes(command: str, base: str) -> dict[str, tuple[str | None, str | None]]:
    """flag -> (value in ``command``, value in ``base``) for every flag that trains differently:
    rates compared as numbers, paths ignored, a flag left out read as its default."""
    new, old = ({**FLAG_DEFAULTS, **flag_values(c)} for c in (command, base))
    return {k: (new.get(k), old.get(k)) for k in dict.fromkeys([*new, *old])
            if k not in PATH_FLAGS and not _same_value(new.get(k), old.get(k))}


@dataclass(frozen=True)
class Verdict:
    """One goal of the claim against what has run: ``value`` is the margin (points, runs or a
    count), ``met`` None where the line reports a measurement with no goal of its own."""

    goal: str
    measured: str
    met: bool | None
    value: float | None = None


def _label(method: str) -> str:
    return LABELS.get(method, method)


def _titles(tasks) -> str:
    return ", ".join(TASK_TITLES[t] for t in tasks)


def _mean_gap(a: dict, b: dict, tasks: list[str]) -> float:
    return statistics.mean(a[t] for t in tasks) - statistics.mean(b[t] for t in tasks)


def _non_adaptive_label(method: str) -> str:
    return "non-adaptive" if method == "nonadaptive" else _label(method)


def _order_name(pruned: tuple[str, str, str]) -> str:
    return f"{_label(pruned[0])} ≥ {_label(pruned[1])} ≥ {_non_adaptive_label(pruned[2])}"


def order_verdicts(points: dict, pruned: tuple[str, str, str] = PRUNED) -> list[Verdict]:
    """The paper's order of the pruned methods over the density sweep's budgets: on the means
    over the swept tasks (the goal), task by task, and the gap between the first and last."""
    out: list[Verdict] = []
    if not points:
        return out
    label, lowest = _label(pruned[0]), _non_adaptive_label(pruned[2])
    order = _order_name(pruned)
    # The goal: the order of the means over the swept tasks, at every budget.
    swept = {m: points.get(m, {}) for m in pruned}
    tasks = {t for m in swept.values() for d in m.values() for t in d}
    budgets = [d for d in sorted({d for m in swept.values() for d in m})
               if all(set(swept[m].get(d, {})) == tasks for m in pruned)]
    if budgets:
        means = {m: {d: statistics.mean(swept[m][d].values()) for d in budgets}
                 for m in pruned}
        held = sum(means[pruned[0]][d] >= means[pruned[1]][d] >= means[pruned[2]][d]
                   for d in budgets)
        # where it breaks, which pair and by how much (in points of the mean)
        breaks = [f"{100 * d:g}%: {_label(hi)} under {_label(lo)} by "
                  f"{means[lo][d] - means[hi][d]:.1f}"
                  for d in budgets for hi, lo in zip(pruned, pruned[1:])
                  if means[hi][d] < means[lo][d]]
        out.append(Verdict(f"{order} on the mean over the swept tasks",
                           f"holds at {held} of {len(budgets)} budgets, mean over "
                           f"{_titles(t for t in TASKS if t in tasks)}"
                           + (f" (breaks: {'; '.join(breaks)})" if breaks else ""),
                           held == len(budgets), held))
    checks = held = 0
    for d in sorted({d for m in points.values() for d in m}):
        for task in sorted({t for m in points.values() for t in m.get(d, {})}):
            s = [points.get(m, {}).get(d, {}).get(task) for m in pruned]
            if None in s:
                continue
            checks += 1
            held += s[0] >= s[1] >= s[2]
    if checks:  # task by task, for reference: the goal is on the means
        out.append(Verdict(f"{order}, task by task",
                           f"holds at {held} of {checks} (density, task) points", None,
                           held))
    # one task set for every budget, so that the trend is not a change of tasks
    a, b = points.get(pruned[0], {}), points.get(pruned[2], {})
    budgets = sorted({d for m in points.values() for d in m})
    common = [t for t in TASKS if all(t in a.get(d, {}) and t in b.get(d, {})
                                      for d in budgets)]
    if common:
        gaps = ", ".join(
            f"{100 * d:g}%: {statistics.mean(a[d][t] - b[d][t] for t in common):+.1f}"
            for d in budgets)
        out.append(Verdict(f"{label} minus {lowest} by density (the paper: the gap grows "
                           "as the budget shrinks)", f"{gaps}, mean over {_titles(common)}",
                           None))
    return out


def paired_order_gaps(matrix: dict[str, list[dict]], tasks: list[str],
                      pruned: tuple[str, str, str] = PRUNED) -> list[Verdict]:
    """The order's two gaps at Table 1's budget from Table 1's own runs, paired by (task, seed)
    over ``tasks``, as mean ± standard error of the differences: how large each gap is beside
    the spread of the seeds (the sweep's 0.5% column holds only the seeds it swept). A reading
    beside the goal, so the line says neither met nor missed."""
    gaps = []
    for hi, lo in zip(pruned, pruned[1:]):
        theirs = {(r["task"], r["seed"]): score(r) for r in matrix.get(lo, [])}
        diffs = [score(r) - theirs[(r["task"], r["seed"])] for r in matrix.get(hi, [])
                 if r["task"] in tasks and (r["task"], r["seed"]) in theirs]
        if len(diffs) < 2:
            return []
        error = statistics.stdev(diffs) / len(diffs) ** 0.5
        gaps.append(f"{_label(hi)} minus {_non_adaptive_label(lo)} "
                    f"{statistics.mean(diffs):+.2f} ± {error:.2f} ({len(diffs)} pairs)")
    titles = _titles(t for t in TASKS if t in tasks)
    return [Verdict(f"{_order_name(pruned)} at 0.5%, paired by seed (Table 1's runs)",
                    f"{'; '.join(gaps)}; a pair is one task and seed of {titles}, and each gap "
                    "is the mean ± standard error of its differences, in points", None)]


def whole_data_order(matrix: dict[str, list[dict]],
                     pruned: tuple[str, str, str] = PRUNED) -> list[Verdict]:
    """The order of the pruned methods at Table 1's budget on whole training sets, over the
    tasks all three ran there: the means, then task by task. The goal is on the density sweep's
    1,000-example protocol, so this line is a reading beside it, with no verdict:
    does the order change with a training set several times larger?"""
    runs = {m: by_task(matrix.get(m, [])) for m in pruned}
    tasks = [t for t in TASKS if all(t in runs[m] for m in pruned)]
    if not tasks:
        return []
    means = {m: {t: statistics.mean(map(score, runs[m][t])) for t in tasks} for m in pruned}
    overall = [statistics.mean(means[m].values()) for m in pruned]
    held = [TASK_TITLES[t] for t in tasks
            if means[pruned[0]][t] >= means[pruned[1]][t] >= means[pruned[2]][t]]
    in_order = "holds" if overall[0] >= overall[1] >= overall[2] else "does not hold"
    seeds = max(len(r) for m in pruned for r in runs[m].values())
    return [Verdict(f"{_order_name(pruned)} at 0.5% on whole training sets (a reading)",
                    f"means over {_titles(tasks)} "
                    f"{' / '.join(f'{v:.2f}' for v in overall)}, so the order {in_order} "
                    f"on the mean; task by task it holds on {len(held)} of {len(tasks)}"
                    + (f" ({', '.join(held)})" if held else "")
                    + ("; one seed each" if seeds == 1 else f"; up to {seeds} seeds each"),
                    None)]


def claim_verdicts(summary: dict, points: dict, pruned: tuple[str, str, str] = PRUNED,
                   matrix: dict[str, list[dict]] | None = None) -> list[Verdict]:
    """The paper's claim on this base: ``pruned[0]`` (structured diff pruning) at 0.5% against
    full finetuning and the peers, and the order of the pruned methods over the budgets (with
    its gaps paired by seed where Table 1's runs, ``matrix``, are given)."""
    out: list[Verdict] = []
    label = _label(pruned[0])
    full, structured = summary.get("full"), summary.get(pruned[0])
    if full and structured:
        common = [t for t in TASKS if t in full and t in structured]
        gap = _mean_gap(structured, full, common)
        out.append(Verdict(f"{label} at 0.5% matches full finetuning",
                           f"{gap:+.2f} points over {_titles(common)}", gap >= 0, gap))
    out += order_verdicts(points, pruned)
    if matrix:
        swept = sorted({t for m in points.values() for d in m.values() for t in d})
        out += paired_order_gaps(matrix, swept, pruned)
    for peer in ("lora", "lora-pooler", "lora-matched", "houlsby", "houlsby-pooler"):
        if structured and peer in summary:
            other = summary[peer]
            common = [t for t in TASKS if t in other and t in structured]
            gap = _mean_gap(structured, other, common)
            ratio = structured["bytes_per_task"] / max(1, other["bytes_per_task"])
            out.append(Verdict(f"{label} beats {_label(peer)} at no more bytes",
                               f"{gap:+.2f} points at {ratio:.2f}x its bytes per task, over "
                               f"{_titles(common)}", gap > 0 and ratio <= 1.0, gap))
    for family, rows in PEER_FAMILIES.items():
        rows = [m for m in rows if m in summary]
        common = [t for t in TASKS if structured and t in structured
                  and all(t in summary[m] for m in rows)]
        if structured and rows and common:  # the better row on the tasks every row has run
            best = max(rows, key=lambda m: statistics.mean(summary[m][t] for t in common))
            gap = _mean_gap(structured, summary[best], common)
            out.append(Verdict(f"{label} beats the better {family} row ({_label(best)})",
                               f"{gap:+.2f} points over {_titles(common)}", gap > 0, gap))
    return out


ON_TARGET = 0.25  # stage 1 ends within ±25% of its density target
MAX_DROP = 2.0  # dev points projection may cost


def control_verdicts(rows: list[dict]) -> list[Verdict]:
    """Density control's goals over the default rows (``control_rows``): stage 1 ends near its
    target, and projection costs at most ``MAX_DROP`` dev points."""
    ours = [r for r in rows if r["method"] in CONTROLLED]
    if not ours:
        return []
    on = [r for r in ours if abs(r["off_target"]) <= ON_TARGET]
    kept = [r for r in ours if r["drop"] <= MAX_DROP]
    worst = max(ours, key=lambda r: abs(r["off_target"]))
    worst_drop = max(ours, key=lambda r: r["drop"])

    def which(r: dict) -> str:
        return f"{r['method']} {TASK_TITLES[r['task']]} seed {r['seed']}"

    return [
        Verdict(f"stage 1 ends within ±{ON_TARGET:.0%} of its density target",
                f"{len(on)} of {len(ours)} runs (furthest: {100 * worst['off_target']:+.0f}%, "
                f"{which(worst)})", len(on) == len(ours), len(on)),
        Verdict(f"dev falls by at most {MAX_DROP:g} points at projection",
                f"{len(kept)} of {len(ours)} runs (largest fall: {worst_drop['drop']:.1f} "
                f"points, {which(worst_drop)})", len(kept) == len(ours), len(kept)),
    ]
