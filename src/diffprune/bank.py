"""The multi-task bank: one base model in memory, any number of task diffs, switched in place.

Activating a task writes theta + delta into the base weights at the task's positions only, after
saving the base values found there; reverting writes those saved values back, so the base is
bit-for-bit the original afterwards (adding and then subtracting in floating point is not
exact). All weights live in one flat buffer, so a switch is a few operations over the task's
positions, whatever the number of tensors. Tasks are independent: adding, removing or
activating one never reads another. All public methods hold one lock, so no forward ever sees
a half-applied diff.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffprune.fingerprint import fingerprint
from diffprune.loading import base_path, load_classifier, load_tokenizer
from diffprune.task_file import TaskDiff, TaskFileMismatch, load_task, task_path


@dataclass
class _Resident:
    """A task as kept in memory: positions into the bank's flat weight buffer and the values."""

    file: TaskDiff  # as read: its spec (``file.task``), base record and diff
    positions: torch.Tensor  # (k,) int32 (int64 past 2**31 weights), over all gated tensors
    values: torch.Tensor  # (k,) the file's dtype (compact files: float16)
    head: dict[str, nn.Parameter]
    file_bytes: int
    # (k,) the base's values at ``positions`` (the buffer's dtype), read on the first
    # activation: a switch then writes the buffer and never gathers from it, which halves its
    # cost (the gather misses the cache on every position)
    base: torch.Tensor | None = None

    @property
    def resident_bytes(self) -> int:
        tensors = [self.positions, self.values, *self.head.values()]
        tensors += [self.base] if self.base is not None else []
        return sum(t.numel() * t.element_size() for t in tensors)


def _flatten_parameters(model: nn.Module) -> tuple[torch.Tensor, dict[int, int]]:
    """Move every parameter into one flat buffer (parameters become views of it).

    A task switch is then one index_copy_ (revert), one index_select and one index_copy_ (apply)
    over all of the task's positions, instead of a few small operations per tensor. Returns the
    buffer and each parameter's offset, by ``id``.
    """
    unique = list({id(p): p for p in model.parameters()}.values())
    dtypes = {(p.dtype, p.device) for p in unique}
    if len(dtypes) != 1:
        found = sorted(map(str, dtypes))
        raise ValueError(f"the bank needs one parameter dtype and device, found {found}")
    flat = torch.cat([p.detach().reshape(-1) for p in unique])  # (total,)
    offsets, start = {}, 0
    for p in unique:
        p.data = flat[start:start + p.numel()].view_as(p)
        offsets[id(p)] = start
        start += p.numel()
    return flat, offsets


class TaskBank:
    """Holds a base model once and serves any number of diff-pruned tasks.

    Args:
        model: the base model with a task head of the right structure (e.g. a Transformers
            ``...ForSequenceClassification``); its head parameters are swapped per task.
        base_info: identity of the base (``name_or_path``, ``revision``), for messages and merge.
        tokenizer: kept for ``merge`` and for callers that tokenise through the bank.
    """

    def __init__(self, model: nn.Module, base_info: dict[str, Any] | None = None,
                 tokenizer: Any = None) -> None:
        self.model = model.eval()
        self.base_info = dict(base_info or {})
        self.tokenizer = tokenizer
        self._params = dict(model.named_parameters(remove_duplicate=False))
        self._flat, offsets = _flatten_parameters(model)
        self._offset = {name: offsets[id(p)] for name, p in self._params.items()}
        self._tasks: dict[str, _Resident] = {}
        self._active: str | None = None
        self._active_index: torch.Tensor | None = None  # (k,) int64 positions of the active task
        self._saved_head: dict[str, nn.Parameter] = {}
        self._fingerprints: dict[frozenset[str], str] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, **kwargs: Any) -> TaskBank:
        """Load a base model (default: the bundled MiniLM) and its tokenizer."""
        path = base_path(name_or_path)
        model = load_classifier(path, **kwargs)[0]
        # a weights-only folder has no tokenizer: fine for merge and for tensors
        tokenizer = load_tokenizer(path, required=False)
        return cls(model, {"name_or_path": path}, tokenizer)

    # ----------------------------------------------------------------- tasks
    @property
    def tasks(self) -> list[str]:
        return list(self._tasks)

    @property
    def active(self) -> str | None:
        return self._active

    @property
    def lock(self) -> threading.RLock:
        """Held by every change of the model's weights; hold it to see a stable set of tasks."""
        return self._lock

    def base_fingerprint(self, names: list[str]) -> str:
        """Fingerprint of the pristine base tensors ``names`` (cached per set of names)."""
        key = frozenset(names)
        with self._lock:
            if key not in self._fingerprints:
                self._revert()
                self._fingerprints[key] = fingerprint((n, self._params[n]) for n in names)
            return self._fingerprints[key]

    def add(self, name: str, task: TaskDiff | str | Path) -> None:
        """Load (if a path), check against this base, and keep a task; others are untouched."""
        file_bytes = 0
        if not isinstance(task, TaskDiff):
            path = task_path(task)
            task = load_task(path)
            file_bytes = path.stat().st_size
        source = f"task {name!r}"
        for tensor_name, diff in task.diffs.items():
            param = self._params.get(tensor_name)
            if param is None:
                raise TaskFileMismatch(source, f"the base model has no tensor {tensor_name!r}")
            if tuple(param.shape) != tuple(diff.shape):
                raise TaskFileMismatch(source, f"{tensor_name} has shape {tuple(diff.shape)}, the "
                                    f"base has {tuple(param.shape)}")
        self._check_head(source, task.head)
        expected = task.base.get("fingerprint")
        actual = self.base_fingerprint(list(task.diffs))
        if expected != actual:
            raise TaskFileMismatch(
                source, f"was trained against base {expected} "
                f"({task.base.get('name_or_path', 'unknown')}), but the loaded base is {actual} "
                f"({self.base_info.get('name_or_path', 'unknown')})", joiner=" ")
        device, index_dtype = self._flat.device, (
            torch.int32 if self._flat.numel() < 2**31 else torch.int64)
        positions = torch.cat([d.positions + self._offset[n] for n, d in task.diffs.items()])
        values = torch.cat([d.values for d in task.diffs.values()])
        resident = _Resident(
            task, positions.to(device=device, dtype=index_dtype), values.to(device),
            {n: nn.Parameter(t.to(device), requires_grad=False) for n, t in task.head.items()},
            file_bytes)
        with self._lock:
            if name in self._tasks:
                raise ValueError(f"a task named {name!r} is already loaded; remove it first")
            self._tasks[name] = resident

    def _check_head(self, source: str, head: dict[str, torch.Tensor]) -> None:
        """A task brings its own head, so its number of outputs may differ from the loaded
        model's (a regression task beside a classifier); every other dimension must fit the
        model, and a layer's tensors must agree on their outputs, or the first forward fails."""
        outputs: dict[str, int] = {}
        for head_name, tensor in head.items():
            if head_name not in self._params:
                raise TaskFileMismatch(source, f"the base model has no head tensor {head_name!r}")
            mine, theirs = tuple(self._params[head_name].shape), tuple(tensor.shape)
            if len(mine) != len(theirs) or mine[1:] != theirs[1:] or not theirs[:1] or \
                    theirs[0] < 1:
                raise TaskFileMismatch(source, f"head tensor {head_name} has shape {theirs}, "
                                    f"which does not fit the model's {mine}")
            layer = head_name.rpartition(".")[0]
            if outputs.setdefault(layer, theirs[0]) != theirs[0]:
                raise TaskFileMismatch(source, f"the head tensors of {layer} disagree on their "
                                    f"number of outputs ({outputs[layer]} and {theirs[0]})")

    def remove(self, name: str) -> None:
        with self._lock:
            self._get(name)
            if self._active == name:
                self._revert()
            del self._tasks[name]

    def task_spec(self, name: str) -> dict[str, Any]:
        """The task record (name, labels, problem type) of a loaded task, without the lock: a
        request handler can look a task up while a batch runs (a dict read is atomic), where
        ``describe`` would wait for the batch."""
        return self._get(name).file.task

    def describe(self) -> list[dict[str, Any]]:
        """One row per task: labels, nonzeros, density, bytes on disk and in memory."""
        with self._lock:
            return [{"name": n, "labels": r.file.task.get("labels"),
                     "problem_type": r.file.task.get("problem_type"),
                     "nonzeros": r.file.nonzeros, "density": r.file.density,
                     "file_bytes": r.file_bytes, "resident_bytes": r.resident_bytes,
                     "base_fingerprint": r.file.base.get("fingerprint"),
                     "active": n == self._active}
                    for n, r in self._tasks.items()]

    def _get(self, name: str) -> _Resident:
        resident = self._tasks.get(name)  # one read: safe without the lock
        if resident is None:
            known = ", ".join(self._tasks) or "none"
            raise KeyError(f"no task named {name!r} is loaded (loaded: {known})")
        return resident

    # ----------------------------------------------------------------- switching
    @torch.no_grad()
    def activate(self, name: str) -> None:
        """Make ``name`` the task the model computes: revert the current diff, apply this one."""
        with self._lock:
            resident = self._get(name)
            if self._active == name:
                return
            self._revert()
            index = resident.positions.long()  # (k,) into the flat buffer
            if resident.base is None:  # just reverted: the buffer holds the base there
                resident.base = self._flat.index_select(0, index)
            # index_copy_ of theta + delta: 5x faster here than index_add_ on the CPU.
            self._flat.index_copy_(0, index, resident.base + resident.values.to(self._flat.dtype))
            self._active_index = index
            for head_name, param in resident.head.items():
                self._saved_head[head_name] = self._swap_head(head_name, param)
            self._active = name

    def set_adapter(self, name: str) -> None:
        """PEFT's name for ``activate``: ``name`` computes until another task is set."""
        self.activate(name)

    @torch.no_grad()
    def _revert(self) -> None:
        if self._active is None:
            return
        base = self._tasks[self._active].base  # the exact base values back
        self._flat.index_copy_(0, self._active_index, base)
        for head_name, original in self._saved_head.items():
            self._swap_head(head_name, original)
        self._active_index, self._saved_head, self._active = None, {}, None

    def deactivate(self) -> None:
        """Back to the pristine base (bit-for-bit)."""
        with self._lock:
            self._revert()

    def _swap_head(self, name: str, param: nn.Parameter) -> nn.Parameter:
        module_name, _, attr = name.rpartition(".")
        module = self.model.get_submodule(module_name)
        old = module._parameters[attr]
        module._parameters[attr] = param
        return old

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[nn.Module]:
        """``with bank.use("rte") as model:`` computes task ``name`` inside the block, then
        restores whichever task (or the pristine base) was active before. Holds the lock."""
        with self._lock:
            previous = self._active
            self.activate(name)
            try:
                yield self.model
            finally:
                self._restore(previous)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[nn.Module]:
        """``with bank.disabled() as model:`` gives the pristine base, bit for bit, inside the
        block (PEFT's ``disable_adapter``), then restores the task that was active."""
        with self._lock:
            previous = self._active
            self._revert()
            try:
                yield self.model
            finally:
                self._restore(previous)

    def _restore(self, name: str | None) -> None:
        if name is None:
            self._revert()
        else:
            self.activate(name)

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def __call__(self, task_names: list[str], **inputs: torch.Tensor) -> Any:
        """A batch whose rows belong to different tasks (PEFT's ``adapter_names``).

        Returns the model's output type with one row per input, in input order (tensor fields
        with a batch dimension are gathered back; a loss, which would mix tasks, is dropped).
        Every name must be loaded; the first unknown one is named in the error.
        """
        for name in dict.fromkeys(task_names):
            self._get(name)
        rows = len(task_names)
        for key, value in inputs.items():
            if value.shape[0] != rows:
                raise ValueError(f"{key} has {value.shape[0]} rows but {rows} task names given")
        groups: list[tuple[list[int], Any]] = []
        with self._lock:
            previous = self._active
            try:
                for task in dict.fromkeys(task_names):
                    index = [i for i, t in enumerate(task_names) if t == task]
                    self.activate(task)
                    groups.append((index, self.model(**{k: v[index] for k, v in inputs.items()})))
            finally:
                self._restore(previous)
        order = torch.tensor([i for index, _ in groups for i in index]).argsort()
        first = groups[0][1]
        fields = {}
        for key, value in first.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and key != "loss":
                fields[key] = torch.cat([out[key] for _, out in groups])[order]
        return type(first)(**fields)

    @torch.no_grad()
    def forward(self, task: str, **inputs: Any) -> Any:
        """The model's output for a batch of one task."""
        with self._lock:
            self.activate(task)
            return self.model(**inputs)

    @torch.no_grad()
    def forward_mixed(self, tasks: list[str], **inputs: torch.Tensor) -> list[torch.Tensor]:
        """Logits per row for a batch whose rows belong to different tasks.

        Rows are grouped by task; each group runs once under its task, so the cost is one switch
        per distinct task in the batch, and each group drops the trailing columns that are
        padding in all of its rows (a group's longest row is usually shorter than the batch's).
        Returns one (num_labels,) tensor per row, in row order.
        """
        rows = len(tasks)
        for key, value in inputs.items():
            if value.shape[0] != rows:
                raise ValueError(f"{key} has {value.shape[0]} rows but {rows} task names given")
        out: list[torch.Tensor | None] = [None] * rows
        with self._lock:
            for task in dict.fromkeys(tasks):
                index = [i for i, t in enumerate(tasks) if t == task]
                sub = _trim_padding({k: v[index] for k, v in inputs.items()})
                logits = self.forward(task, **sub).logits  # (len(index), num_labels)
                for j, i in enumerate(index):
                    out[i] = logits[j]
        return out  # type: ignore[return-value]

    # ----------------------------------------------------------------- merge
    def merge(self, name: str, output_dir: str | Path) -> Path:
        """Save ``name`` as a standalone Transformers model directory (``from_pretrained``)."""
        with self._lock:
            self.activate(name)
            merged = copy.deepcopy(self.model)
        spec = self._tasks[name].file.task
        labels = spec.get("labels") or []
        config = merged.config
        config.num_labels = int(spec.get("num_labels") or max(1, len(labels)))
        if labels:
            config.id2label = dict(enumerate(labels))
            config.label2id = {label: i for i, label in enumerate(labels)}
        if spec.get("problem_type"):
            config.problem_type = spec["problem_type"]
        for param in merged.parameters():
            param.requires_grad_(True)
        output_dir = Path(output_dir)
        merged.save_pretrained(output_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(output_dir)
        return output_dir


def _trim_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``inputs`` without the trailing columns that no row attends to: masked keys change no
    output, so the result is the same up to float rounding. Left-padded batches are unchanged
    (their last column is never all padding)."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return inputs
    used = mask.any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else mask.shape[1]
    if length == mask.shape[1]:
        return inputs
    return {k: v[:, :length] if v.dim() >= 2 and v.shape[1] == mask.shape[1] else v
            for k, v in inputs.items()}
