"""A corpus of broken task files: each is refused with a message naming the problem, the CLI
exits non-zero without a traceback, and a bank that was asked to load it is left as it was."""

from __future__ import annotations

import copy
import json
import pickle
import struct
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors
from taskfiles import make_task

from diffprune.bank import TaskBank
from diffprune.cli.main import main
from diffprune.task_file import (
    SparseDiff,
    TaskFileError,
    _checksum,
    from_bytes,
    load_task,
    save_task,
    to_bytes,
)

PRISTINE, _, GOOD = make_task(seed=0)
GOOD_BYTES = to_bytes(GOOD, "compact")
GOOD_LOSSLESS = to_bytes(GOOD, "lossless")


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


def _header_size(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def _rewrite(data: bytes, edit_meta=None, edit_tensors=None) -> bytes:
    """Re-serialise a valid file after editing it, with a correct checksum (so that only the
    intended defect is left for the loader to find)."""
    from safetensors.torch import load

    tensors = load(data)
    meta = json.loads(data[8:8 + _header_size(data)])["__metadata__"]
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    meta["checksum"] = _checksum(tensors, meta)
    return save_safetensors(tensors, metadata=meta)


def _lossless_with(edit) -> bytes:
    """A lossless file whose first nonempty diff is edited by ``edit(SparseDiff) -> SparseDiff``."""
    task = copy.deepcopy(GOOD)
    name = next(n for n, d in task.diffs.items() if d.positions.numel() > 3)
    task.diffs[name] = edit(task.diffs[name])
    return to_bytes(task, "lossless")


def _value(fill):
    def edit(d):
        d.values[1] = fill
        return d
    return lambda _tmp: _lossless_with(edit)


def _positions(make):
    return lambda _tmp: _lossless_with(lambda d: SparseDiff(d.shape, make(d), d.values))


def _meta(**changes):
    return lambda _tmp: _rewrite(GOOD_BYTES, edit_meta=lambda m: m.update(changes))


def _tensors(edit, source=None):
    return lambda _tmp: _rewrite(source or GOOD_BYTES, edit_tensors=edit)


def _first_key(tensors, prefix):
    return next(k for k in tensors if k.startswith(prefix) and tensors[k].numel())


def _shorten_values(ts):
    key = _first_key(ts, "values.")
    ts[key] = ts[key][:-1]


def _values_to_float64(ts):
    for key in [k for k in ts if k.startswith("values.")]:
        ts[key] = ts[key].double()


def _grow_first_count(meta):
    layout = json.loads(meta["layout"])
    first = next(iter(layout.values()))
    first["count"] += 1
    meta["layout"] = json.dumps(layout)


def _grow_first_stream(meta):
    layout = json.loads(meta["layout"])
    first = next(e for e in layout.values() if e["count"])
    first["stream"] += 1
    meta["layout"] = json.dumps(layout)


def _zip_bytes(tmp_path) -> bytes:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data.pkl", pickle.dumps({"a": 1}))
    return path.read_bytes()


def _mismatched_base(_tmp) -> bytes:
    task = copy.deepcopy(GOOD)
    task.base["fingerprint"] = "blake2b:" + "0" * 32
    return to_bytes(task)


CORPUS = {  # name: (bytes of the file, a regex the error must match)
    "empty": (lambda t: b"", "truncated"),
    "four bytes": (lambda t: GOOD_BYTES[:4], "truncated"),
    "truncated half": (lambda t: GOOD_BYTES[: len(GOOD_BYTES) // 2], "truncated"),
    "truncated last byte": (lambda t: GOOD_BYTES[:-1], "truncated"),
    "padded": (lambda t: GOOD_BYTES + b"\0" * 16, "padded"),
    "flipped payload byte": (lambda t: _flip(GOOD_BYTES, len(GOOD_BYTES) - 3), "checksum"),
    "flipped header byte": (lambda t: _flip(GOOD_BYTES, 40), "header|checksum|metadata|JSON"),
    "flipped metadata byte": (lambda t: _flip(GOOD_BYTES, GOOD_BYTES.index(b"single_label")),
                              "checksum"),
    "oversized header": (lambda t: struct.pack("<Q", 2**40) + GOOD_BYTES[8:], "exceeds"),
    "pickle": (lambda t: pickle.dumps({"diff": torch.zeros(3)}), "pickle"),
    "torch.save zip": (_zip_bytes, "zip"),
    "json text": (lambda t: b'{"format": "diffprune-task"}', "truncated|safetensors"),
    "random bytes": (lambda t: bytes(range(256)) * 4, "exceeds|truncated|safetensors"),
    "other safetensors": (lambda t: save_safetensors({"x": torch.zeros(2)}), "not a diffprune"),
    "newer format": (_meta(format_version="99"), "newer"),
    "unknown encoding": (_meta(encoding="zstd"), "unknown encoding"),
    "bad layout json": (_meta(layout="{oops"), "not valid JSON"),
    "nonzeros mismatch": (_meta(nonzeros="1"), "nonzeros"),
    "count larger than stream": (lambda t: _rewrite(GOOD_BYTES, edit_meta=_grow_first_count),
                                 "holds|entries|cannot hold"),
    "stream length lie": (lambda t: _rewrite(GOOD_BYTES, edit_meta=_grow_first_stream),
                          "holds|entries|cannot hold"),
    "nan value": (_value(float("nan")), "NaN"),
    "inf value": (_value(float("inf")), "Inf"),
    "position out of range": (_positions(
        lambda d: torch.cat([d.positions[:-1], torch.tensor([d.numel + 7])])), "out of range"),
    "negative position": (_positions(
        lambda d: torch.cat([torch.tensor([-1]), d.positions[1:]])), "out of range"),
    "duplicate positions": (_positions(
        lambda d: torch.cat([d.positions[:1], d.positions[:-1]])), "sorted and unique"),
    "unsorted positions": (_positions(lambda d: d.positions.flip(0)), "sorted and unique"),
    "float64 values": (_tensors(_values_to_float64, GOOD_LOSSLESS), "float32"),
    "wrong value count": (_tensors(_shorten_values, GOOD_LOSSLESS), "expected shape"),
    "wrong head shape": (_tensors(lambda ts: ts.update({"head.classifier.weight":
                                                         torch.zeros(3, 3)})),
                         "head.classifier.weight"),
    "nan head": (_tensors(lambda ts: ts.update({"head.classifier.bias":
                                                torch.tensor([0.0, float("nan")])})), "NaN"),
    "missing tensor": (_tensors(lambda ts: ts.pop("values")), "missing"),
    "extra tensor": (_tensors(lambda ts: ts.update({"evil": torch.zeros(1)})), "extra"),
    "corrupt compressed stream": (_tensors(lambda ts: ts.update(
        {"positions": torch.full((20,), 7, dtype=torch.uint8)})),
        "corrupt compressed|holds"),
    "mismatched base": (_mismatched_base, "trained against base"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_file_is_refused_and_the_bank_is_untouched(case, tmp_path, capsys):
    make, pattern = CORPUS[case]
    path = tmp_path / "diff.safetensors"
    path.write_bytes(make(tmp_path))
    bank = TaskBank(copy.deepcopy(PRISTINE))
    bank.add("good", GOOD)
    bank.activate("good")
    before_state = {k: v.clone() for k, v in bank.model.state_dict().items()}
    before_tasks = bank.describe()
    with pytest.raises(TaskFileError, match=pattern):
        bank.add("bad", path)
    assert bank.describe() == before_tasks and bank.active == "good"
    for key, value in bank.model.state_dict().items():
        assert torch.equal(value, before_state[key]), key
    if case != "mismatched base":  # that one is only wrong relative to a base
        code = main(["inspect", str(path)])
        err = capsys.readouterr().err
        assert code != 0 and "error:" in err and "Traceback" not in err


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 20


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOOD_BYTES) - 1), st.integers(1, 255)),
                min_size=1, max_size=6))
def test_fuzz_mutated_files_never_escape_task_file_error(mutations):
    data = bytearray(GOOD_BYTES)
    for at, xor in mutations:
        data[at] ^= xor
    try:
        from_bytes(bytes(data))
    except TaskFileError:
        pass


def test_every_header_byte_flip_is_refused():
    """A sweep, not a sample: each byte of the header, flipped, is caught and named."""
    for at in range(8, 8 + _header_size(GOOD_BYTES)):
        with pytest.raises(TaskFileError):
            from_bytes(_flip(GOOD_BYTES, at))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes_never_escape_task_file_error(data):
    try:
        from_bytes(data)
    except TaskFileError:
        pass


def test_good_file_still_loads(tmp_path):
    path = save_task(GOOD, tmp_path / "diff.safetensors")
    assert load_task(path).nonzeros == GOOD.nonzeros
