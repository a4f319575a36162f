"""Projection onto the L0 ball: keep exactly k entries by magnitude, one global threshold."""

from __future__ import annotations

import torch


def budget(density: float, total: int) -> int:
    """The number of entries a density keeps: round(density * total), at least 1."""
    return max(1, min(total, round(density * total)))


def global_topk(deltas: list[torch.Tensor], k: int,
                tie_scores: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Positions of the k largest |delta| entries across all tensors, split per tensor.

    One threshold for every tensor (method.md §4: not per layer). Ties at the threshold go to the
    higher ``tie_scores`` entry, then to the lower global position (tensors in list order, then
    flat index), so the result is deterministic and has exactly k entries. Ties matter when the
    L0 stage closed gates below the budget: the remaining slots are all at |delta| = 0.

    Args:
        deltas: tensors of any shapes; only their magnitudes are read.
        k: how many entries to keep, 0 <= k <= total numel.
        tie_scores: optional tensors shaped like ``deltas`` (e.g. the gates' log P(z > 0)).

    Returns:
        For each input, a sorted (k_i,) int64 tensor of flat positions, with sum(k_i) == k.
    """
    sizes = [d.numel() for d in deltas]
    total = sum(sizes)
    if not 0 <= k <= total:
        raise ValueError(f"cannot keep {k} of {total} entries")
    device = deltas[0].device
    magnitude = torch.cat([d.detach().reshape(-1).abs().float() for d in deltas])  # (total,)
    if not torch.isfinite(magnitude).all():
        bad = [i for i, d in enumerate(deltas) if not torch.isfinite(d).all()]
        raise ValueError(f"the diff holds NaN or Inf values (tensors {bad}); refusing to project")
    if k == total:
        chosen = torch.arange(total, device=device)
    elif k == 0:
        chosen = torch.empty(0, dtype=torch.long, device=device)
    else:
        threshold = torch.topk(magnitude, k, sorted=False).values.min()
        above = torch.nonzero(magnitude > threshold).view(-1)  # (a,) with a < k
        ties = torch.nonzero(magnitude == threshold).view(-1)  # (t,) ascending positions
        if tie_scores is not None:
            score = torch.cat([t.detach().reshape(-1).float() for t in tie_scores])[ties]
            ties = ties[torch.sort(score, descending=True, stable=True).indices]
        ties = ties[: k - above.numel()]
        chosen = torch.sort(torch.cat([above, ties])).values  # (k,) global flat positions
    bounds = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], device=device)
    cuts = torch.searchsorted(chosen, bounds).tolist()  # where each tensor's range starts in chosen
    return [chosen[cuts[i]:cuts[i + 1]] - bounds[i] for i in range(len(deltas))]
