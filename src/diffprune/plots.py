"""Pictures: where diffs land (the paper's Figure 2), and stage 1's density against its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffprune.layout import per_tensor
from diffprune.task_file import TaskDiff


def _layer_key(layer: str) -> tuple[int, int | str]:
    if layer.startswith("layer "):
        return (1, int(layer.split()[1]))
    return (0, layer) if "emb" in layer or layer in ("wte", "wpe") else (2, layer)


def plot_layout(tasks: list[tuple[str, TaskDiff]], output: str | Path) -> Path:
    """Heatmaps of the percentage of nonzero diff entries per (layer, tensor kind)."""
    return plot_layout_rows([(title, per_tensor(task)) for title, task in tasks], output)


def plot_layout_rows(panels: list[tuple[str, list[dict[str, Any]]]],
                     output: str | Path) -> Path:
    """``plot_layout`` from ``layout.per_tensor`` rows (as kept in a benchmark's JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tables = [rows for _, rows in panels]
    layers = sorted({r["layer"] for t in tables for r in t}, key=_layer_key)
    kinds = sorted({r["kind"] for t in tables for r in t})
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + 0.32 * len(kinds) * len(panels),
                                                     1.5 + 0.32 * len(layers)), squeeze=False)
    vmax = max((100 * r["density"] for t in tables for r in t), default=1.0) or 1.0
    image = None
    for ax, (title, _), rows in zip(axes[0], panels, tables):
        grid = np.full((len(layers), len(kinds)), np.nan)
        for r in rows:
            grid[layers.index(r["layer"]), kinds.index(r["kind"])] = 100 * r["density"]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_title(title)
        ax.set_xticks(range(len(kinds)), kinds, rotation=90, fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), label="% nonzero in the tensor")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return output


def plot_density_trace(traces: list[tuple[str, list[dict[str, Any]]]],
                       output: str | Path) -> Path:
    """Expected density (solid) and its target (dashed) over the L0 steps, log scale; one line
    pair per run, from the ``density_trace`` a controlled run records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (label, trace) in enumerate(traces):
        color = f"C{i % 10}"
        steps = [t["step"] for t in trace]
        ax.plot(steps, [100 * t["density"] for t in trace], color=color, label=label)
        ax.plot(steps, [100 * t["target"] for t in trace], color=color, ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("L0 step")
    ax.set_ylabel("expected density (%)")
    ax.set_title("stage 1: expected density (solid) and target (dashed)", fontsize=10)
    if len(traces) <= 12:
        ax.legend(fontsize=7)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
