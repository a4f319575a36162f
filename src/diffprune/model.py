"""Wrap any ``nn.Module`` so that its gated tensors become theta + diff.

Stages of a wrapped model:
  ``gated``  -- stage 1: diff = [z_g *] z * w with hard-concrete gates and the L0 penalty;
  ``masked`` -- stage 2, after ``project()``: diff = m * w with a fixed mask, stored as flat
                positions and a value per position (no gates, no dense w left in memory);
  ``merged`` -- after ``merge_and_unload()``: the plain model with theta + diff as weights.

Everything the method adds is registered on the module that owns the tensor, under names that
start with ``diffprune_`` (``<module>.diffprune_<attr>_diff``, ``..._log_alpha``,
``..._group_log_alpha``, ``..._values``, buffers ``..._base`` and ``..._indices``). The original
parameter is removed from its module, its storage kept as the frozen ``_base`` buffer (no copy),
and each forward writes the effective weight back as a plain attribute, so any module type
works unchanged.

One exception, for speed: a plain ``nn.Embedding`` table (untied, no max_norm) computes its
stage-1 gates only for the rows its input looks up, in a forward hook that replaces the
module's output (``RowGatedEmbedding``); its weight attribute stays the frozen base in stage 1.
The loss and every gradient are those of the whole-table pass (``gather_embedding_gates``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffprune.config import DiffPruneConfig
from diffprune.diff import draw_seeds, expected_l0, gated_rows, gated_weight, masked_weight
from diffprune.gates import HardConcrete, gate_from_noise, prob_nonzero, sample_gate, sample_noise
from diffprune.projection import budget, global_topk
from diffprune.targets import TensorSite, split_sites

PREFIX = "diffprune_"


class RowGatedEmbedding:
    """Forward hook of one embedding table in stage 1: gates for the looked-up rows only.

    ``apply_diffs`` draws the table's group gate and noise seeds in the order the whole-table
    pass would (so the run's random stream is unchanged) and leaves them in ``pending``; the
    hook then computes those rows' effective weights and looks the input up in them. The same
    call gives the table's expected L0, which the hook hands to ``record_l0`` (the first call of
    a forward only, should a model look the table up twice).
    """

    def __init__(self, attr: str, hc: HardConcrete, fused: bool, record_l0) -> None:
        self.attr, self.hc, self.fused, self.record_l0 = attr, hc, fused, record_l0
        self.pending: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @staticmethod
    def applies_to(site: TensorSite) -> bool:
        module, attr = site.owners[0]
        return (len(site.owners) == 1 and attr == "weight" and type(module) is nn.Embedding
                and module.max_norm is None and not module.scale_grad_by_freq
                and not module.sparse)

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
        ids = args[0] if args else kwargs.get("input")
        if self.pending is None or ids is None:
            return None
        seeds, group_gate = self.pending
        rows, inverse = torch.unique(ids, return_inverse=True)
        table, element_l0 = gated_rows(getattr(module, f"{PREFIX}{self.attr}_base"),
                                       getattr(module, f"{PREFIX}{self.attr}_diff"),
                                       getattr(module, f"{PREFIX}{self.attr}_log_alpha"),
                                       group_gate, rows.long(), seeds, self.hc, self.fused,
                                       module.padding_idx)
        self.record_l0(element_l0)
        return torch.nn.functional.embedding(inverse, table)


class DiffPruneModel(nn.Module):
    """A model whose gated tensors are a frozen base plus a trainable sparse diff.

    Args:
        model: any module; a Transformers model keeps its head dense (see ``find_head_names``).
        config: the method's settings.
        missing_keys: newly initialised parameter names (from ``output_loading_info``), which
            then form the task head.
    """

    def __init__(self, model: nn.Module, config: DiffPruneConfig | None = None,
                 missing_keys: list[str] | None = None) -> None:
        super().__init__()
        self.base_model = model
        self.diffprune_config = config or DiffPruneConfig()
        self.hc = HardConcrete.from_config(self.diffprune_config)
        sites, head = split_sites(model, self.diffprune_config, missing_keys)
        self.sites: list[TensorSite] = sites
        self.head_names: list[str] = [s.name for s in head]
        self.stage = "gated"
        # sum_i P(z_i > 0) per gated tensor from the last forward (None: not computed yet)
        self._element_l0: list[torch.Tensor | None] | None = None
        self._group_kept: torch.Tensor | None = None  # P(z_g > 0) per tensor, that forward
        self._disabled = False
        # site index -> (hook state, hook handle) of the embedding tables gated by rows
        self._row_gates: dict[int, tuple[RowGatedEmbedding, Any]] = {}
        for p in model.parameters():
            p.requires_grad_(False)
        for site in head:
            site.param.requires_grad_(True)
        for site in sites:
            self._detach_base(site)
            self._add_gates(site)
        if self.diffprune_config.gather_embedding_gates:
            for i, site in enumerate(sites):
                if RowGatedEmbedding.applies_to(site):
                    hook = RowGatedEmbedding(site.owners[0][1], self.hc,
                                             self.diffprune_config.fused,
                                             functools.partial(self._record_row_l0, i))
                    handle = site.owners[0][0].register_forward_hook(hook, with_kwargs=True)
                    self._row_gates[i] = (hook, handle)

    @property
    def config(self) -> Any:
        """The wrapped model's own config (a Transformers ``PretrainedConfig``, or None), as PEFT
        models expose it: the Trainer and generation code read it. The method's settings are
        ``diffprune_config``."""
        return getattr(self.base_model, "config", None)

    # ----------------------------------------------------------------- per-tensor state
    @staticmethod
    def tensor(site: TensorSite, kind: str) -> torch.Tensor:
        """The method's tensor of one kind (base, diff, log_alpha, indices, ...) for a site."""
        module, attr = site.owners[0]
        return getattr(module, f"{PREFIX}{attr}_{kind}")

    @staticmethod
    def _drop(site: TensorSite, *kinds: str) -> None:
        module, attr = site.owners[0]
        for kind in kinds:
            name = f"{PREFIX}{attr}_{kind}"
            module._parameters.pop(name, None)
            module._buffers.pop(name, None)

    def _detach_base(self, site: TensorSite) -> None:
        theta = site.param.detach().requires_grad_(False)
        module, attr = site.owners[0]
        module.register_buffer(f"{PREFIX}{attr}_base", theta, persistent=False)
        for owner, name in site.owners:
            del owner._parameters[name]
        self._point_owners(site, theta)

    @staticmethod
    def _point_owners(site: TensorSite, weight: torch.Tensor) -> None:
        for owner, name in site.owners:
            object.__setattr__(owner, name, weight)

    def _add_gates(self, site: TensorSite) -> None:
        module, attr = site.owners[0]
        theta = self.tensor(site, "base")
        w = torch.zeros(theta.shape, dtype=torch.float32, device=theta.device)
        log_alpha = torch.full_like(w, self.diffprune_config.init_log_alpha)
        module.register_parameter(f"{PREFIX}{attr}_diff", nn.Parameter(w))
        module.register_parameter(f"{PREFIX}{attr}_log_alpha", nn.Parameter(log_alpha))
        if self.diffprune_config.structured:
            group = torch.tensor(self.diffprune_config.init_log_alpha, device=theta.device)
            module.register_parameter(f"{PREFIX}{attr}_group_log_alpha", nn.Parameter(group))

    def _apply(self, fn, recurse: bool = True):  # keep the plain weight attributes on the device
        result = super()._apply(fn, recurse)
        if self.stage != "merged":
            for site in self.sites:
                self._point_owners(site, self.tensor(site, "base"))
        return result

    # ----------------------------------------------------------------- forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.apply_diffs()
        return self.base_model(*args, **kwargs)

    def apply_diffs(self) -> None:
        """Write theta + diff into the model; in stage 1 this draws fresh gates (one per step)."""
        if self.stage == "merged":
            raise RuntimeError("this DiffPruneModel was merged; use the model merge returned")
        for site in self.sites:  # free last step's weights before making new ones
            self._point_owners(site, self.tensor(site, "base"))
        for hook, _ in self._row_gates.values():
            hook.pending = None
        if self._disabled:
            return
        if self.stage == "masked":
            for site in self.sites:
                weight = masked_weight(self.tensor(site, "base"), self.tensor(site, "indices"),
                                       self.tensor(site, "values"))
                self._point_owners(site, weight)
            return
        fused = self.diffprune_config.fused
        structured = self.diffprune_config.structured
        # The draws in the order a tensor-by-tensor pass makes them (each tensor's group-gate
        # noise, then its noise seeds), so that a run's random stream does not depend on how
        # the gates are batched; then every group gate at once: a few operations on an
        # (n_tensors,) vector instead of a dozen on each of n_tensors scalars.
        device = self.tensor(self.sites[0], "log_alpha").device
        group_noise, seeds = [], []
        for _ in self.sites:
            if structured:
                group_noise.append(sample_noise((), self.hc, device=device))
            seeds.append(draw_seeds(device))
        group_gates: list[torch.Tensor | None] = [None] * len(self.sites)
        self._group_kept = None
        if structured:
            group_log_alpha = self._group_log_alphas()
            group_gates = list(gate_from_noise(group_log_alpha, torch.stack(group_noise),
                                               self.hc).unbind())
            # P(z_g > 0) of this pass, for the expected density (read before any update)
            self._group_kept = prob_nonzero(group_log_alpha.detach(), self.hc)
        element_l0: list[torch.Tensor | None] = []
        for i, site in enumerate(self.sites):
            if i in self._row_gates:  # the seeds gated_weight would draw, drawn in its place
                self._row_gates[i][0].pending = (seeds[i], group_gates[i])
                element_l0.append(None)  # the hook's pass computes it
            else:
                weight, l0 = gated_weight(self.tensor(site, "base"), self.tensor(site, "diff"),
                                          self.tensor(site, "log_alpha"), group_gates[i],
                                          self.hc, fused, seeds[i])
                self._point_owners(site, weight)
                element_l0.append(l0)
        self._element_l0 = element_l0

    def _group_log_alphas(self) -> torch.Tensor:
        """Every tensor's group log-alpha as one (n_tensors,) vector, differentiable."""
        return torch.stack([self.tensor(site, "group_log_alpha") for site in self.sites])

    def _record_row_l0(self, index: int, element_l0: torch.Tensor) -> None:
        """A row-gated table's L0 from its hook: the first look-up of a forward counts."""
        if self._element_l0 is not None and self._element_l0[index] is None:
            self._element_l0[index] = element_l0

    def _last_element_l0(self) -> list[torch.Tensor]:
        """sum_i P(z_i > 0) per gated tensor from the last forward; a row-gated table that
        forward did not look up gets its sum in closed form here."""
        return [l0 if l0 is not None else expected_l0(self.tensor(site, "log_alpha"), self.hc,
                                                      self.diffprune_config.fused)
                for site, l0 in zip(self.sites, self._element_l0)]

    # ----------------------------------------------------------------- the L0 term
    def penalty(self) -> torch.Tensor:
        """lambda * E[L0] of the gates drawn by the last forward (in its autograd graph)."""
        if self.stage != "gated":
            return torch.zeros((), device=self.tensor(self.sites[0], "base").device)
        if self._element_l0 is None:
            raise RuntimeError("penalty() needs a forward pass first; it reuses that pass's gates")
        groups = self._group_log_alphas() if self.diffprune_config.structured else None
        per_tensor = self._tensor_l0s(torch.stack(self._last_element_l0()), groups)
        return self.diffprune_config.l0_lambda * per_tensor.sum()

    @torch.no_grad()
    def drift_gates(self, amount: float) -> None:
        """Move every element log-alpha down by ``amount`` (up, if negative): density control's
        step, the natural-gradient step of amount * E[L0] (see density_control.py)."""
        if amount != 0:
            torch._foreach_add_([self.tensor(s, "log_alpha") for s in self.sites], -amount)

    def last_density(self) -> float:
        """Expected density of the gates the last forward used (no extra pass over the gates)."""
        if self._element_l0 is None:
            raise RuntimeError("last_density() needs a forward pass in stage 1 first")
        with torch.no_grad():  # a number, not a graph
            kept = torch.stack(self._last_element_l0())
            if self._group_kept is not None:
                kept = kept * self._group_kept
            return float(kept.sum()) / self.num_gated

    @torch.no_grad()
    def expected_l0(self) -> float:
        """The penalty's E[L0] now, in the form the config trains with (no sampling)."""
        return sum(float(self._tensor_l0(site, prob_nonzero(self.tensor(site, "log_alpha"),
                                                            self.hc).sum()))
                   for site in self.sites)

    def _tensor_l0(self, site: TensorSite, element_l0: torch.Tensor) -> torch.Tensor:
        """One tensor's E[L0] in the configured form, given sum_i P(z_i > 0) of its elements."""
        return self._tensor_l0s(element_l0, self.tensor(site, "group_log_alpha")
                                if self.diffprune_config.structured else None)

    def _tensor_l0s(self, element_l0: torch.Tensor,
                    group_log_alpha: torch.Tensor | None) -> torch.Tensor:
        """``_tensor_l0`` of tensors side by side: element_l0 and group_log_alpha alike shaped."""
        if group_log_alpha is None:
            return element_l0
        p_group = prob_nonzero(group_log_alpha, self.hc)
        if self.diffprune_config.structured_penalty == "paper":
            return element_l0 * p_group  # sum_i P(z_i > 0) P(z_g > 0)
        return element_l0 + p_group  # the authors' code: each group gate counted once

    @torch.no_grad()
    def expected_density(self) -> float:
        """Expected fraction of gated entries with a nonzero diff gate, P(z_i > 0) P(z_g > 0)."""
        if self.stage != "gated":
            return self.nonzero_count() / self.num_gated
        kept = 0.0
        for site in self.sites:
            count = prob_nonzero(self.tensor(site, "log_alpha"), self.hc).sum()
            if self.diffprune_config.structured:
                count = count * prob_nonzero(self.tensor(site, "group_log_alpha"), self.hc)
            kept += float(count)
        return kept / self.num_gated

    @property
    def num_gated(self) -> int:
        return sum(site.param.numel() for site in self.sites)

    def nonzero_count(self) -> int:
        """Stored diff entries in stage 2 (the mask size)."""
        if self.stage != "masked":
            raise RuntimeError("nonzero_count() counts the fixed mask; call project() first")
        return sum(self.tensor(site, "indices").numel() for site in self.sites)

    # ----------------------------------------------------------------- optimisation
    def param_groups(self, lrs: dict[str, float] | None = None) -> list[dict[str, Any]]:
        """Optimizer groups with the config's learning rates: diff, log_alpha, head, and
        group_log_alpha where ``group_log_alpha_lr`` is set (else the group gates are in
        log_alpha, as in the paper). ``lrs`` overrides rates by group name (the fixed-mask
        stage's own rate, without changing the config the L0 stage used)."""
        c = self.diffprune_config
        head_names = set(self.head_names)
        head = [p for n, p in self.base_model.named_parameters()
                if n in head_names and p.requires_grad]
        alpha, group_alpha = [], []
        if self.stage == "gated":
            diff = [self.tensor(s, "diff") for s in self.sites]
            alpha = [self.tensor(s, "log_alpha") for s in self.sites]
            if c.structured:
                group_alpha = [self.tensor(s, "group_log_alpha") for s in self.sites]
            if c.group_log_alpha_lr is None:
                alpha, group_alpha = alpha + group_alpha, []
        else:
            diff = [self.tensor(s, "values") for s in self.sites
                    if self.tensor(s, "values").numel()]
        groups = [
            {"name": "diff", "params": diff, "lr": c.diff_lr, "weight_decay": c.weight_decay},
            {"name": "log_alpha", "params": alpha, "lr": c.log_alpha_lr, "weight_decay": 0.0},
            {"name": "group_log_alpha", "params": group_alpha, "lr": c.group_log_alpha_lr,
             "weight_decay": 0.0},
            {"name": "head", "params": head, "lr": c.head_lr or c.diff_lr,
             "weight_decay": c.weight_decay},
        ]
        for group in groups:
            group["lr"] = (lrs or {}).get(group["name"], group["lr"])
        return [g for g in groups if g["params"]]

    def clip_grad_norms(self) -> dict[str, float]:
        """Clip w (with the head) and log-alpha separately, as the authors do; returns the norms."""
        norms = {}
        groups = {g["name"]: g["params"] for g in self.param_groups()}
        clips = {"diff": (groups.get("diff", []) + groups.get("head", []),
                          self.diffprune_config.diff_max_grad_norm),
                 # every gate's log-alpha under one clip, whatever its learning rate
                 "log_alpha": (groups.get("log_alpha", []) + groups.get("group_log_alpha", []),
                               self.diffprune_config.log_alpha_max_grad_norm)}
        for name, (params, max_norm) in clips.items():
            params = [p for p in params if p.grad is not None]
            if params:
                limit = max_norm if max_norm > 0 else float("inf")
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
                # torch.nn.utils.clip_grad_norm_ with its multiply skipped where the coefficient
                # it would clamp is >= 1: the same values, one pass over the gradients fewer
                # (the norm is read as a number below anyway, so the test adds no wait)
                if not bool(limit / (norm + 1e-6) >= 1.0):
                    torch.nn.utils.clip_grads_with_norm_(params, limit, norm)
                norms[name] = float(norm)
        return norms

    # ----------------------------------------------------------------- projection and stage 2
    @torch.no_grad()
    def sample_diff(self) -> list[torch.Tensor]:
        """The current diff per gated tensor: one fresh draw z * w in stage 1 (method.md §2)."""
        if self.stage == "masked":
            return [masked_weight(torch.zeros_like(self.tensor(s, "base"), dtype=torch.float32),
                                  self.tensor(s, "indices"), self.tensor(s, "values"))
                    for s in self.sites]
        diffs = []
        for site in self.sites:
            zero = torch.zeros_like(self.tensor(site, "diff"))
            group_gate = (sample_gate(self.tensor(site, "group_log_alpha"), self.hc)
                          if self.diffprune_config.structured else None)
            diff, _ = gated_weight(zero, self.tensor(site, "diff"), self.tensor(site, "log_alpha"),
                                   group_gate, self.hc, self.diffprune_config.fused)
            diffs.append(diff)
        return diffs

    @torch.no_grad()
    def project(self, density: float | None = None) -> int:
        """Keep the top ``density`` fraction of the final diff by magnitude; enter stage 2.

        The diff is drawn now (not taken from an earlier step), then the gates and the dense w
        are freed: stage 2 holds only the kept positions and their values. Returns k.
        """
        return self.set_diff(self.sample_diff(), density, self._gate_log_probs())

    @torch.no_grad()
    def _gate_log_probs(self) -> list[torch.Tensor] | None:
        """log P(entry can be nonzero) per gated tensor: ranks the entries tied at |delta| = 0."""
        if self.stage != "gated":
            return None
        logsigmoid = torch.nn.functional.logsigmoid
        scores = []
        for site in self.sites:
            score = logsigmoid(self.tensor(site, "log_alpha") - self.hc.l0_shift)
            if self.diffprune_config.structured:
                score = score + logsigmoid(self.tensor(site, "group_log_alpha") - self.hc.l0_shift)
            scores.append(score)
        return scores

    @torch.no_grad()
    def set_diff(self, diffs: list[torch.Tensor], density: float | None = None,
                 tie_scores: list[torch.Tensor] | None = None) -> int:
        """Enter stage 2 with the top-k entries of given dense diffs (one per gated tensor).

        Entries tied in magnitude are ranked by ``tie_scores`` (see ``global_topk``).
        """
        if len(diffs) != len(self.sites):
            raise ValueError(f"expected {len(self.sites)} diff tensors, got {len(diffs)}")
        for site, diff in zip(self.sites, diffs):
            if diff.shape != site.param.shape:
                raise ValueError(f"diff for {site.name} has shape {tuple(diff.shape)}, "
                                 f"expected {tuple(site.param.shape)}")
        k = budget(self.diffprune_config.density if density is None else density, self.num_gated)
        positions = global_topk(diffs, k, tie_scores)
        for site, diff, idx in zip(self.sites, diffs, positions):
            values = diff.reshape(-1).float()[idx].clone()
            self.set_sparse(site, idx, values)
        self._remove_row_gates()
        self.stage = "masked"
        self._element_l0 = None
        return k

    def _remove_row_gates(self) -> None:
        """Stage 1's embedding hooks go with the gates: later stages leave the modules as they
        were."""
        for _, handle in self._row_gates.values():
            handle.remove()
        self._row_gates = {}

    def set_sparse(self, site: TensorSite, indices: torch.Tensor, values: torch.Tensor) -> None:
        """Replace a tensor's diff with a fixed-mask one: (k,) int64 positions and values."""
        module, attr = site.owners[0]
        self._drop(site, "diff", "log_alpha", "group_log_alpha", "values", "indices")
        module.register_buffer(f"{PREFIX}{attr}_indices", indices.to(torch.long), persistent=True)
        # A tensor whose diff kept no entry has nothing to train: a trainable empty parameter
        # would get no gradient, which DDP treats as an error on every process.
        module.register_parameter(f"{PREFIX}{attr}_values",
                                  nn.Parameter(values.float(), requires_grad=values.numel() > 0))

    @torch.no_grad()
    def load_masked_state(self, state: dict[str, torch.Tensor]) -> None:
        """Enter stage 2 from a state dict holding each gated tensor's indices and values.

        This is how a checkpoint taken during fixed-mask finetuning is resumed: the model is
        built in stage 1 as usual, then given the stored mask and values (and head, if any).
        """
        names = {id(m): n for n, m in self.named_modules()}
        for site in self.sites:
            module, attr = site.owners[0]
            key = f"{names[id(module)]}.{PREFIX}{attr}"
            indices = state.get(f"{key}_indices")
            values = state.get(f"{key}_values")
            if values is None and indices is not None and indices.numel() == 0:
                values = torch.zeros(0)  # an emptied tensor: not trainable, so not saved
            if indices is None or values is None:
                raise KeyError(f"the state has no fixed-mask diff for {site.name}")
            self.set_sparse(site, indices, values)
        self._remove_row_gates()
        self.stage = "masked"
        self._element_l0 = None
        self.load_state_dict(state, strict=False)

    # ----------------------------------------------------------------- merge
    @torch.no_grad()
    def merge_and_unload(self) -> nn.Module:
        """The plain model with theta + diff as its weights; no wrapper or extra tensor left."""
        if self.stage != "masked":
            raise RuntimeError("merge needs a fixed diff: call project() first "
                               "(project(density=1.0) keeps every entry)")
        for site in self.sites:
            weight = masked_weight(self.tensor(site, "base"), self.tensor(site, "indices"),
                                   self.tensor(site, "values"))
            merged = nn.Parameter(weight.detach().clone(), requires_grad=True)
            self._drop(site, "base", "indices", "values")
            for owner, name in site.owners:
                del owner.__dict__[name]
                owner._parameters[name] = merged
        for p in self.base_model.parameters():
            p.requires_grad_(True)
        self.stage = "merged"
        return self.base_model

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside the block the model computes the pristine base weights (no diff); the task
        head stays as it is, since it has no pretrained value to return to."""
        if self.stage == "merged":
            raise RuntimeError("this DiffPruneModel was merged; there is no diff to disable")
        previous, self._disabled = self._disabled, True
        try:
            yield
        finally:
            self._disabled = previous

    # ----------------------------------------------------------------- files
    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """Write the task file ``directory/diff.safetensors`` (see ``pretrained.save_pretrained``:
        labels and problem type come from the model's config unless given)."""
        from diffprune.pretrained import save_pretrained  # the files layer, above this one

        return save_pretrained(self, directory, **kwargs)

    @classmethod
    def from_pretrained(cls, base_model: nn.Module, path: str | Path,
                        config: DiffPruneConfig | None = None) -> DiffPruneModel:
        """``base_model`` with a saved task's diff and head, in the fixed-mask stage."""
        from diffprune.pretrained import from_pretrained

        return from_pretrained(base_model, path, config)

    def print_trainable_parameters(self) -> str:
        """PEFT's line (trainable params, all params, trainable%), then the method's own."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(b.numel() for n, b in self.named_buffers() if n.endswith("_base"))
        frozen += sum(p.numel() for p in self.base_model.parameters() if not p.requires_grad)
        total = trainable + frozen
        line = (f"trainable params: {trainable:,} || all params: {total:,} || "
                f"trainable%: {100 * trainable / max(1, total):.4f}\n"
                f"stage: {self.stage} | gated: {self.num_gated:,} in {len(self.sites)} tensors | "
                f"head: {len(self.head_names)} tensors | trainable: {trainable:,}")
        print(line)
        return line


def get_diffprune_model(model: nn.Module, config: DiffPruneConfig | None = None,
                        missing_keys: list[str] | None = None) -> DiffPruneModel:
    """Wrap ``model`` for diff pruning (PEFT-style entry point)."""
    return DiffPruneModel(model, config, missing_keys)
