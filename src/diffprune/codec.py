"""Compact encodings of a sparse diff: positions as gaps, values as float16, then LZMA.

Positions (sorted, unique) become gaps minus one, written as LEB128 varints: a gap below 128 is
one byte. Values become float16 split into a high-byte plane and a low-byte plane: the high
bytes (sign, exponent, top mantissa bits) repeat a lot and compress well, the low bytes barely.
Both streams are then compressed with raw LZMA2 (no container header). Every decoder checks its
input and raises ``ValueError`` naming the problem; decompression is capped at the expected size,
so a crafted stream cannot expand without bound.
"""

from __future__ import annotations

import lzma

import numpy as np

_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
_MAX_VARINT_BYTES = 10  # a uint64


def compress(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_FILTERS)


def decompress(data: bytes, size: int) -> bytes:
    """Exactly ``size`` bytes from a raw LZMA2 stream, or ValueError."""
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_FILTERS)
    try:
        out = decompressor.decompress(data, max_length=size + 1)
    except lzma.LZMAError as err:
        raise ValueError(f"corrupt compressed stream ({err})") from err
    if len(out) != size:
        raise ValueError(f"compressed stream holds {len(out)}+ bytes, expected {size}")
    return out


def encode_positions(positions: np.ndarray) -> bytes:
    """Sorted unique int positions -> varint stream of (gap - 1)."""
    gaps = np.diff(positions.astype(np.int64), prepend=-1) - 1  # (k,) all >= 0
    values = gaps.astype(np.uint64)
    nbytes = np.ones(len(values), dtype=np.int64)
    rest = values >> np.uint64(7)
    while rest.any():
        nbytes += rest > 0
        rest >>= np.uint64(7)
    out = np.empty(int(nbytes.sum()), dtype=np.uint8)
    starts = np.cumsum(nbytes) - nbytes
    for j in range(int(nbytes.max(initial=0))):
        sel = nbytes > j
        chunk = (values[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (nbytes[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (chunk | more).astype(np.uint8)
    return out.tobytes()


def decode_positions(stream: bytes, count: int, numel: int) -> np.ndarray:
    """Varint gap stream -> (count,) int64 sorted unique positions in [0, numel)."""
    data = np.frombuffer(stream, dtype=np.uint8)
    ends = np.flatnonzero(data < 0x80)  # the last byte of every varint
    if len(ends) != count or (count and ends[-1] != len(data) - 1) or (not count and len(data)):
        raise ValueError(f"position stream holds {len(ends)} entries, expected {count}")
    if count == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _MAX_VARINT_BYTES:
        raise ValueError("position stream has an over-long varint")
    shift = (np.arange(len(data)) - np.repeat(starts, lengths)) * 7
    if shift.max() >= 63:
        raise ValueError("position gap out of range")
    parts = (data & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    gaps = np.zeros(count, dtype=np.uint64)
    np.add.at(gaps, np.repeat(np.arange(count), lengths), parts)
    if gaps.max() >= numel:
        raise ValueError(f"position out of range for a tensor of {numel} entries")
    positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if positions[-1] >= numel:
        raise ValueError(f"position {int(positions[-1])} out of range for a tensor of {numel} "
                         "entries")
    return positions


def encode_values(values: np.ndarray) -> bytes:
    """float values -> float16 byte planes (high bytes first, then low bytes)."""
    half = values.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError("a diff value does not fit float16 (beyond ±65504): save the task with "
                         "encoding='lossless' (save_task, save_pretrained; "
                         "diffprune train --encoding lossless)")
    pairs = half.view(np.uint8).reshape(-1, 2)  # little-endian: [low, high]
    return np.concatenate([pairs[:, 1], pairs[:, 0]]).tobytes()


def decode_values(planes: bytes, count: int) -> np.ndarray:
    """Byte planes -> (count,) float16."""
    data = np.frombuffer(planes, dtype=np.uint8)
    if len(data) != 2 * count:
        raise ValueError(f"value stream holds {len(data)} bytes, expected {2 * count}")
    pairs = np.stack([data[count:], data[:count]], axis=1)  # (count, 2) as [low, high]
    return np.ascontiguousarray(pairs).view(np.float16).reshape(-1)
