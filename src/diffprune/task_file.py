"""One task on disk: ``diff.safetensors`` with the diff's nonzeros, the dense head and metadata.

Tensors (never pickle), by encoding:
  ``compact`` (default): ``positions``, one LZMA-compressed varint gap stream of every gated
      tensor in layout order, and ``values``, their float16 values as LZMA-compressed byte
      planes, both uint8 (see ``codec.py``); one stream each compresses better than one per
      tensor and carries no per-stream overhead;
  ``lossless``: ``positions.<name>`` (int32, or int64 past 2**31 entries) and ``values.<name>``
      (float32) per gated tensor, readable by any safetensors reader;
  and in both, ``head.<name>``: each dense task-head tensor (float32).
Header metadata: format and versions, the encoding, the layout (shape and count per tensor), the
method's config, the task (labels, problem type), dev metrics, the base model's identity and
fingerprint, density, nonzero count, and a SHA-256 checksum of every tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from diffprune import codec
from diffprune._version import __version__
from diffprune.fingerprint import raw_bytes
from diffprune.run_folder import TASK_FILE

FORMAT = "diffprune-task"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 2**20
ENCODINGS = ("compact", "lossless")


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file and the problem."""


class TaskFileMissing(TaskFileError):
    """No task file at the path given."""


class TaskFileMismatch(TaskFileError):
    """A well-formed task file that does not fit the model it is given. ``problem`` says why in
    words that name tensors, shapes and base fingerprints only: a server may show it for a file
    it read from its own disk, where it shows nothing of a file that failed to parse."""

    def __init__(self, source: str, problem: str, joiner: str = ": ") -> None:
        super().__init__(f"{source}{joiner}{problem}")
        self.problem = problem


@dataclass
class SparseDiff:
    """The diff of one tensor: (k,) int64 sorted flat positions and (k,) values."""

    shape: tuple[int, ...]
    positions: torch.Tensor
    values: torch.Tensor

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class TaskDiff:
    """Everything one task adds to the shared base model."""

    diffs: dict[str, SparseDiff]
    head: dict[str, torch.Tensor]
    task: dict[str, Any] = field(default_factory=dict)  # name, labels, num_labels, problem_type
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)  # name_or_path, revision, fingerprint

    @property
    def nonzeros(self) -> int:
        return sum(d.positions.numel() for d in self.diffs.values())

    @property
    def gated_params(self) -> int:
        return sum(d.numel for d in self.diffs.values())

    @property
    def density(self) -> float:
        return self.nonzeros / max(1, self.gated_params)


# ------------------------------------------------------------------------------------ save
def _checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over every metadata field but the checksum, then every tensor, in name order."""
    digest = hashlib.sha256()
    for key in sorted(k for k in metadata if k != "checksum"):
        digest.update(f"{key}={metadata[key]}\n".encode())
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(raw_bytes(t))
    return "sha256:" + digest.hexdigest()


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
        torch.empty(0, dtype=torch.uint8)


def to_bytes(task: TaskDiff, encoding: str = "compact") -> bytes:
    """The file's bytes (safetensors)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    tensors: dict[str, torch.Tensor] = {}
    layout, streams, all_values = {}, [], []
    for name, d in task.diffs.items():
        positions = d.positions.detach().cpu().numpy().astype(np.int64)
        values = d.values.detach().cpu().float().numpy()
        entry = {"shape": list(d.shape), "count": int(positions.size)}
        if encoding == "compact":
            streams.append(codec.encode_positions(positions))
            all_values.append(values)
            entry["stream"] = len(streams[-1])
        else:
            narrow = np.int32 if d.numel < 2**31 else np.int64
            tensors[f"positions.{name}"] = torch.from_numpy(positions.astype(narrow))
            tensors[f"values.{name}"] = torch.from_numpy(values.copy())
        layout[name] = entry
    if encoding == "compact":
        tensors["positions"] = _bytes_tensor(codec.compress(b"".join(streams)))
        joined = np.concatenate(all_values) if all_values else np.empty(0, np.float32)
        tensors["values"] = _bytes_tensor(codec.compress(codec.encode_values(joined)))
    for name, t in task.head.items():
        tensors[f"head.{name}"] = t.detach().cpu().float().contiguous()
    metadata = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "diffprune_version": __version__,
        "encoding": encoding, "layout": json.dumps(layout),
        "head": json.dumps({n: list(t.shape) for n, t in task.head.items()}),
        "task": json.dumps(task.task), "config": json.dumps(task.config),
        "metrics": json.dumps(task.metrics), "base": json.dumps(task.base),
        "nonzeros": str(task.nonzeros), "density": repr(task.density),
    }
    metadata["checksum"] = _checksum(tensors, metadata)
    return _canonical(save_safetensors(tensors, metadata=metadata))


def _canonical(data: bytes) -> bytes:
    """The same file with its header keys sorted.

    safetensors writes the metadata in hash-map order, which changes from run to run; sorting
    makes the bytes a function of the task alone, so equal tasks give equal files and hashes.
    The header is padded with spaces to 8 bytes, as safetensors does, so tensors stay aligned.
    """
    (size,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":"))
    header = header.encode() + b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data[8 + size:]


def save_task(task: TaskDiff, path: str | Path, encoding: str = "compact") -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    data = to_bytes(task, encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------ load
def _fail(source: str, problem: str) -> TaskFileError:
    return TaskFileError(f"{source}: {problem}")


def _json(meta: dict[str, str], key: str, source: str) -> Any:
    if key not in meta:
        raise _fail(source, f"metadata field {key!r} is missing")
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as err:
        raise _fail(source, f"metadata field {key!r} is not valid JSON ({err})") from err


def _read_header(data: bytes, source: str) -> dict[str, Any]:
    # Byte 8 opens a safetensors header's JSON. Look at it first: the 8 bytes before it are the
    # header's size, and one size in 32 starts with 0x80, a pickle's first byte.
    if data[8:9] != b"{" and (data[:1] == b"\x80" or data[:2] == b"PK"):
        kind = "a pickle" if data[:1] == b"\x80" else "a zip archive (torch.save)"
        raise _fail(source, f"{kind}, not a safetensors task file; refusing to load it")
    if len(data) < 8:
        raise _fail(source, f"truncated: {len(data)} bytes, shorter than a safetensors header")
    if data[8:9] != b"{":  # said before the size, which would only be the file's first bytes
        raise _fail(source, "not a task file: it does not start with a safetensors header")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER_BYTES:
        raise _fail(source, f"header of {size} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + size > len(data):
        raise _fail(source, f"truncated: the header needs {8 + size} bytes, the file has "
                            f"{len(data)}")
    if data[8:9] != b"{":
        raise _fail(source, "not a safetensors file (no JSON header)")
    try:
        header = json.loads(data[8:8 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(source, f"corrupt header ({err})") from err
    if not isinstance(header, dict):
        raise _fail(source, "corrupt header (not a JSON object)")
    end = max((int(v["data_offsets"][1]) for k, v in header.items()
               if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    if 8 + size + end != len(data):
        raise _fail(source, f"truncated or padded: the header describes {8 + size + end} bytes, "
                            f"the file has {len(data)}")
    return header


def _check_positions(p: np.ndarray, numel: int, name: str, source: str) -> None:
    if p.size and (p[0] < 0 or p[-1] >= numel):
        raise _fail(source, f"{name}: positions out of range [0, {numel})")
    if p.size > 1 and not (np.diff(p) > 0).all():
        raise _fail(source, f"{name}: positions are not sorted and unique")


@dataclass
class _Entry:
    name: str
    shape: tuple[int, ...]
    numel: int
    count: int
    stream: int  # bytes of its varint positions (compact encoding)


def _entries(layout: dict[str, Any], compact: bool, source: str) -> list[_Entry]:
    entries = []
    for name, info in layout.items():
        try:
            shape = tuple(int(s) for s in info["shape"])
            count = int(info["count"])
            stream = int(info["stream"]) if compact else 0
        except (KeyError, TypeError, ValueError) as err:
            raise _fail(source, f"layout of {name} is malformed ({err})") from err
        numel = int(np.prod(shape, dtype=np.int64))
        if min(shape, default=1) < 0 or not 0 <= count <= numel:
            raise _fail(source, f"{name}: {count} nonzeros do not fit shape {shape}")
        if not count <= stream <= 10 * count and compact:
            raise _fail(source, f"{name}: a stream of {stream} bytes cannot hold {count} positions")
        entries.append(_Entry(name, shape, numel, count, stream))
    return entries


def _decode_compact(entries: list[_Entry], tensors: dict[str, torch.Tensor],
                    source: str) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
    pos_t, val_t = tensors["positions"], tensors["values"]
    if pos_t.dtype != torch.uint8 or val_t.dtype != torch.uint8:
        raise _fail(source, f"compact streams must be uint8, got {pos_t.dtype}/{val_t.dtype}")
    total = sum(e.count for e in entries)
    try:
        streams = codec.decompress(pos_t.numpy().tobytes(), sum(e.stream for e in entries))
        values = codec.decode_values(codec.decompress(val_t.numpy().tobytes(), 2 * total), total)
    except ValueError as err:
        raise _fail(source, str(err)) from err
    out, at, first = {}, 0, 0
    for e in entries:
        try:
            positions = codec.decode_positions(streams[at:at + e.stream], e.count, e.numel)
        except ValueError as err:
            raise _fail(source, f"{e.name}: {err}") from err
        out[e.name] = (positions, torch.from_numpy(values[first:first + e.count].copy()))
        at, first = at + e.stream, first + e.count
    return out


def _decode_lossless(e: _Entry, tensors: dict[str, torch.Tensor],
                     source: str) -> tuple[np.ndarray, torch.Tensor]:
    pos_t, val_t = tensors[f"positions.{e.name}"], tensors[f"values.{e.name}"]
    if pos_t.dtype not in (torch.int32, torch.int64) or val_t.dtype != torch.float32:
        raise _fail(source, f"{e.name}: lossless tensors must be int32/int64 and float32, got "
                            f"{pos_t.dtype}/{val_t.dtype}")
    if pos_t.shape != (e.count,) or val_t.shape != (e.count,):
        raise _fail(source, f"{e.name}: expected shape ({e.count},), got "
                            f"{tuple(pos_t.shape)} and {tuple(val_t.shape)}")
    return pos_t.numpy().astype(np.int64), val_t.clone()


def _checked_diff(e: _Entry, positions: np.ndarray, values: torch.Tensor,
                  source: str) -> SparseDiff:
    _check_positions(positions, e.numel, e.name, source)
    if not torch.isfinite(values.float()).all():
        raise _fail(source, f"{e.name}: values hold NaN or Inf")
    return SparseDiff(e.shape, torch.from_numpy(positions), values)


def from_bytes(data: bytes, source: str = "<bytes>") -> TaskDiff:
    """Parse and check a task file's bytes; raises TaskFileError naming the problem."""
    header = _read_header(data, source)
    try:
        tensors = load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types
        raise _fail(source, f"corrupt safetensors payload ({err})") from err
    meta = header.get("__metadata__") or {}
    intact = meta.get("checksum") == _checksum(tensors, meta)
    damaged = _fail(source, "checksum mismatch: the file was changed or damaged after writing")
    # A damaged diffprune file can fail the format checks below by accident; when it carries a
    # checksum that no longer matches, say so rather than blame the format.
    if meta.get("format") != FORMAT:
        if "checksum" in meta and not intact:
            raise damaged
        raise _fail(source, f"not a diffprune task file (format={meta.get('format')!r})")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError as err:
        raise (damaged if "checksum" in meta and not intact
               else _fail(source, "format_version is not a number")) from err
    if version > FORMAT_VERSION:
        raise _fail(source, f"format version {version} is newer than this diffprune reads "
                            f"({FORMAT_VERSION}); upgrade diffprune")
    if not intact:
        raise damaged
    encoding = meta.get("encoding")
    if encoding not in ENCODINGS:
        raise _fail(source, f"unknown encoding {encoding!r}")
    layout = _json(meta, "layout", source)
    head_shapes = _json(meta, "head", source)
    if not isinstance(layout, dict) or not isinstance(head_shapes, dict):
        raise _fail(source, "layout and head must be JSON objects")
    compact = encoding == "compact"
    expected = {"positions", "values"} if compact else {
        f"{kind}.{n}" for n in layout for kind in ("positions", "values")}
    expected |= {f"head.{n}" for n in head_shapes}
    if set(tensors) != expected:
        extra, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
        raise _fail(source, f"tensors do not match the layout (extra: {extra}, missing: {missing})")
    entries = _entries(layout, compact, source)
    decoded = _decode_compact(entries, tensors, source) if compact else {
        e.name: _decode_lossless(e, tensors, source) for e in entries}
    diffs = {e.name: _checked_diff(e, *decoded[e.name], source) for e in entries}
    head = {}
    for name, shape in head_shapes.items():
        t = tensors[f"head.{name}"]
        if list(t.shape) != list(shape) or not t.is_floating_point():
            raise _fail(source, f"head.{name}: expected float {shape}, got {t.dtype} "
                                f"{list(t.shape)}")
        if not torch.isfinite(t).all():
            raise _fail(source, f"head.{name}: values hold NaN or Inf")
        head[name] = t
    task = TaskDiff(diffs, head, task=_json(meta, "task", source),
                    config=_json(meta, "config", source), metrics=_json(meta, "metrics", source),
                    base=_json(meta, "base", source))
    if str(task.nonzeros) != meta.get("nonzeros"):
        raise _fail(source, f"metadata says {meta.get('nonzeros')} nonzeros, the diff holds "
                            f"{task.nonzeros}")
    return task


def task_path(path: str | Path) -> Path:
    """A task file, or a run folder holding ``diff.safetensors``."""
    path = Path(path)
    return path / TASK_FILE if path.is_dir() else path


def load_task(path: str | Path) -> TaskDiff:
    """Read and check a task file, or a run folder's (see ``from_bytes``)."""
    path = task_path(path)
    if not path.is_file():
        raise TaskFileMissing(f"{path}: no such file")
    return from_bytes(path.read_bytes(), str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The header metadata with JSON fields decoded, plus the file size."""
    path = task_path(path)
    task_bytes = path.read_bytes()
    meta = dict(_read_header(task_bytes, str(path)).get("__metadata__") or {})
    for key in ("layout", "head", "task", "config", "metrics", "base"):
        if key in meta:
            meta[key] = _json(meta, key, str(path))
    meta["file_bytes"] = len(task_bytes)
    return meta
