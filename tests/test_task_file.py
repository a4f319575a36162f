"""The task file: round trips, compactness, atomic writes."""

from __future__ import annotations

import os

import pytest
import torch
from taskfiles import TASK, make_task

from diffprune.codec import decode_positions, decode_values, encode_positions, encode_values
from diffprune.task_file import TaskFileError, load_task, save_task, to_bytes


@pytest.mark.parametrize("encoding", ["compact", "lossless"])
def test_round_trip(tmp_path, encoding):
    _, _, task = make_task()
    path = save_task(task, tmp_path / "diff.safetensors", encoding)
    loaded = load_task(path)
    assert loaded.task == TASK and loaded.metrics == {"accuracy": 0.5}
    assert loaded.base == task.base and loaded.base["fingerprint"].startswith("blake2b:")
    assert loaded.config == task.config and loaded.nonzeros == task.nonzeros
    for name, diff in task.diffs.items():
        got = loaded.diffs[name]
        assert got.shape == diff.shape
        assert torch.equal(got.positions, diff.positions)
        if encoding == "lossless":
            assert torch.equal(got.values, diff.values)
        else:
            assert got.values.dtype == torch.float16
            torch.testing.assert_close(got.values.float(), diff.values, rtol=1e-3, atol=1e-7)
    for name, t in task.head.items():
        assert torch.equal(loaded.head[name], t)


@pytest.mark.parametrize("encoding", ["compact", "lossless"])
def test_equal_tasks_give_equal_bytes(encoding):
    # safetensors alone writes metadata in a per-call random order
    _, _, task = make_task(seed=3)
    assert len({to_bytes(task, encoding) for _ in range(5)}) == 1


def test_codec_round_trip_edge_cases():
    for positions in ([], [0], [5], [0, 1, 2], [127, 128, 16384, 2**31 + 5]):
        p = torch.tensor(positions, dtype=torch.int64).numpy()
        assert decode_positions(encode_positions(p), len(p), 2**32).tolist() == positions
    values = torch.tensor([0.0, -1e-3, 2.5e-2, 6e4]).numpy()
    assert decode_values(encode_values(values), 4).astype(float).tolist() == pytest.approx(
        values.tolist(), rel=1e-3)


def test_compact_streams_cost_under_3_bytes_per_nonzero(tmp_path):
    # The worst case for positions: 0.5% of a 2M-entry tensor at uniformly random places, with
    # Gaussian values (a trained diff is more clustered and compresses better).
    from diffprune.task_file import SparseDiff, TaskDiff

    g = torch.Generator().manual_seed(0)
    numel, k = 2_000_000, 10_000
    positions = torch.randperm(numel, generator=g)[:k].sort().values
    diff = SparseDiff((1000, 2000), positions, torch.randn(k, generator=g) * 1e-3)
    task = TaskDiff({"w": diff}, {}, base={"fingerprint": "x"})
    compact = save_task(task, tmp_path / "c.safetensors", "compact")
    lossless = save_task(task, tmp_path / "l.safetensors", "lossless")
    assert compact.stat().st_size / k <= 3.0, compact.stat().st_size / k
    assert lossless.stat().st_size / k >= 8.0  # int32 positions + float32 values
    loaded = load_task(compact).diffs["w"]
    assert torch.equal(loaded.positions, positions)


def test_write_is_atomic(tmp_path, monkeypatch):
    _, _, task = make_task()
    path = save_task(task, tmp_path / "diff.safetensors")
    before = path.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", killed)
    _, _, other = make_task(seed=1)
    with pytest.raises(KeyboardInterrupt):
        save_task(other, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["diff.safetensors"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(TaskFileError, match="no such file"):
        load_task(tmp_path / "nope.safetensors")


def test_header_size_with_a_pickle_first_byte_still_loads(tmp_path):
    # The first 8 bytes are the header's size, padded to a multiple of 8: one file in 32 starts
    # with 0x80, a pickle's first byte. Such a file is a task file all the same.
    _, _, task = make_task()
    for extra in range(256):
        task.task = {**TASK, "name": "t" * (1 + extra)}
        data = to_bytes(task, "compact")
        if data[0] == 0x80:
            break
    else:
        pytest.fail("no task name length gave a header size ending in 0x80")
    path = tmp_path / "diff.safetensors"
    path.write_bytes(data)
    assert load_task(path).task["name"] == task.task["name"]
