"""Stage 1's kernels as plain C++ (``kernels.cpp``), built once per machine and called through
ctypes.

The same math as the torch functions they replace (``diff.py``'s gate passes, ``compact_adamw``'s
steps), for float32 tensors on the CPU at temperature 1, the defaults. Why not ``torch.compile``
there: importing its compiler stack adds about 110 MB to the process, and each compiled call
pays its guards and wrappers (about 40 us; stage 1 makes ~520 such calls a step), where a ctypes
call costs a few. Anything else (another dtype, a GPU, another temperature, no C++ compiler)
raises ``Unsupported`` and ``kernels.Kernels`` runs the compiled or eager version instead.

The library is built with the compiler that ``torch.compile`` would use (``$CXX``, else ``c++``)
into ``$DIFFPRUNE_CACHE_DIR`` (default ``~/.cache/diffprune``), under a name hashed from the
source, the flags, the compiler and the CPU's features, and written under a temporary name
first, so that processes building at once never load a partial file. Large tensors are split
into fixed chunks of entries, run on ``torch.get_num_threads()`` threads (ctypes releases the
GIL); sums add the chunks' partial sums in order, so results do not depend on the thread count.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels.cpp")
FLAGS = ["-O3", "-fopenmp-simd", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
         "-shared", "-fPIC"]
CHUNK = 1 << 20  # entries per call: the unit of threading and of partial sums


class Unsupported(Exception):
    """These inputs are not for the C++ kernels; the caller runs another version."""


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)


def cache_dir() -> Path:
    root = os.environ.get("DIFFPRUNE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffprune")
    return Path(root)


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _cpu() -> str:
    """What -march=native compiles for: a library built on one CPU may not run on another
    (a shared home directory), so the CPU's feature flags are part of the file's name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             timeout=60).stdout.splitlines()[:1]
    source = SOURCE.read_bytes()
    errors = []
    for arch in (["-march=native"], []):  # some compilers or CPUs refuse -march=native
        flags = FLAGS + arch
        key = hashlib.sha256(source + repr((flags, version, _cpu())).encode())
        target = cache_dir() / f"kernels-{key.hexdigest()[:20]}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            done = subprocess.run([compiler, *flags, "-o", partial, str(SOURCE)],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                os.replace(partial, target)  # atomic: a reader sees all of it or nothing
                return target
            errors.append(done.stderr.strip()[-500:])
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise RuntimeError("; ".join(errors))


def _declare(lib: ctypes.CDLL) -> None:
    i64, u32, f32, i32 = ctypes.c_int64, ctypes.c_uint32, ctypes.c_float, ctypes.c_int
    ptr = ctypes.c_void_p
    signatures = {
        "gate_forward": (ctypes.c_double, [i64, i64, ptr, ptr, ptr, ptr, u32, u32, i32, f32, f32,
                                           f32, f32, f32, f32, ptr]),
        "gate_backward": (ctypes.c_double, [i64, i64, ptr, ptr, ptr, ptr, u32, u32, i32, f32,
                                            i32, f32, f32, f32, f32, f32, f32, f32, f32, ptr,
                                            ptr]),
        "expected_l0": (ctypes.c_double, [i64, i64, ptr, f32]),
        "expected_l0_backward": (None, [i64, i64, f32, ptr, f32, ptr]),
        "packed_adamw": (None, [i64, i64, ptr, ptr, ptr, ptr, u32]),
        "adamw": (None, [i64, i64, ptr, ptr, ptr, ptr, ptr]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


def library() -> ctypes.CDLL | None:
    """The built kernels, or None where they cannot be built here (warned once)."""
    global _library, _failed
    if _library is not None or _failed:
        return _library
    with _lock:
        if _library is None and not _failed:
            compiler = _compiler()
            try:
                if compiler is None:
                    raise RuntimeError("no C++ compiler found (set CXX)")
                lib = ctypes.CDLL(str(_build(compiler)))
                _declare(lib)
                _library = lib
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                _failed = True
                warnings.warn(f"diffprune's C++ kernels could not be built ({err}); stage 1 "
                              "uses torch.compile instead (same math, more memory)",
                              stacklevel=3)
    return _library


def available() -> bool:
    return library() is not None


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)] or [(0, 0)]


def _threads(threads: int) -> ThreadPoolExecutor:
    """A pool of at least ``threads`` workers, made again in a forked child (whose copy of the
    parent's pool has no threads behind it)."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < threads:
            _pool = (os.getpid(), threads,
                     ThreadPoolExecutor(max_workers=threads, thread_name_prefix="diffprune"))
        return _pool[2]


def _run(fn, n: int, *args) -> float:
    """fn over entries 0..n-1 in chunks, on torch's thread count; the sum of what they return."""
    chunks = _chunks(n)
    threads = min(torch.get_num_threads(), len(chunks))
    if threads <= 1:
        results = [fn(start, end, *args) for start, end in chunks]
    else:
        results = list(_threads(threads).map(lambda c: fn(c[0], c[1], *args), chunks))
    return math.fsum(r for r in results if r is not None)


def _check(*tensors: torch.Tensor | None, dtype=torch.float32, size: int | None = None) -> None:
    """Contiguous CPU tensors of ``dtype`` (and of ``size`` entries), else ``Unsupported``, so
    that the torch version runs, under torch's own rules for sizes, where a C++ loop would read
    past a buffer."""
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous():
            raise Unsupported
        if t.numel() >= 1 << 31 or (size is not None and t.numel() != size):
            raise Unsupported


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _seeds(seeds: torch.Tensor) -> tuple[int, int]:
    s0, s1 = seeds.tolist()
    return s0 & 0xFFFFFFFF, s1 & 0xFFFFFFFF


def _gate_constants(left: float, right: float, temperature: float, shift: float, eps: float):
    if temperature != 1.0:
        raise Unsupported  # the log form of the gate runs compiled
    return right - left, math.exp(shift), eps, 1.0 - eps


def _lib() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise Unsupported
    return lib


def gate_forward(theta, w, log_alpha, seeds, group_gate, left, right, temperature, shift, eps,
                 index=None):
    """``diff._forward_math``: (weight, sum of P(z > 0))."""
    span, exp_shift, lo, hi = _gate_constants(left, right, temperature, shift, eps)
    _check(theta, w, log_alpha, size=theta.numel())
    _check(index, dtype=torch.int64, size=theta.numel())
    lib = _lib()
    weight = torch.empty_like(theta)
    s0, s1 = _seeds(seeds)
    group = 0.0 if group_gate is None else float(group_gate)
    l0 = _run(lib.gate_forward, theta.numel(), _ptr(theta), _ptr(w), _ptr(log_alpha),
              _ptr(index), s0, s1, group_gate is not None, group, left, span, exp_shift, lo, hi,
              _ptr(weight))
    return weight, torch.tensor(l0, dtype=torch.float32)


def gate_backward(grad_weight, seeds, w, log_alpha, group_gate, grad_l0, left, right,
                  temperature, shift, eps, index=None):
    """``diff._backward_math``: (grad_w, grad_log_alpha, grad_group_gate)."""
    span, exp_shift, lo, hi = _gate_constants(left, right, temperature, shift, eps)
    _check(grad_weight, w, log_alpha, size=w.numel())
    _check(index, dtype=torch.int64, size=w.numel())
    lib = _lib()
    grad_w, grad_alpha = torch.empty_like(w), torch.empty_like(w)
    s0, s1 = _seeds(seeds)
    group = 0.0 if group_gate is None else float(group_gate)
    total = _run(lib.gate_backward, w.numel(), _ptr(grad_weight), _ptr(w), _ptr(log_alpha),
                 _ptr(index), s0, s1, group_gate is not None, group, grad_l0 is not None,
                 0.0 if grad_l0 is None else float(grad_l0), left, right, span,
                 (right - left) * temperature, exp_shift, lo, hi, _ptr(grad_w), _ptr(grad_alpha))
    grad_group = None if group_gate is None else torch.tensor(total, dtype=torch.float32)
    return grad_w, grad_alpha, grad_group


def expected_l0(log_alpha, shift):
    """``diff._l0_math``: sum of sigmoid(log_alpha - shift), a 0-dim tensor."""
    _check(log_alpha)
    lib = _lib()
    total = _run(lib.expected_l0, log_alpha.numel(), _ptr(log_alpha), math.exp(shift))
    return torch.tensor(total, dtype=torch.float32)


def expected_l0_backward(grad_l0, log_alpha, shift):
    """``diff._l0_backward_math``."""
    _check(log_alpha)
    lib = _lib()
    out = torch.empty_like(log_alpha)
    _run(lib.expected_l0_backward, log_alpha.numel(), float(grad_l0), _ptr(log_alpha),
         math.exp(shift), _ptr(out))
    return out


def packed_adamw(p, g, mv, hyper, seed) -> None:
    """``compact_adamw._packed_step_math``, in place (the same bits)."""
    _check(p, g, size=p.numel())
    _check(hyper, size=8)
    _check(mv, dtype=torch.int32, size=p.numel())
    lib = _lib()
    _run(lib.packed_adamw, p.numel(), _ptr(p), _ptr(g), _ptr(mv), _ptr(hyper),
         int(seed) & 0xFFFFFFFF)


def adamw(p, g, m, v, hyper) -> None:
    """``compact_adamw._step_math``, in place."""
    _check(p, g, m, v, size=p.numel())
    _check(hyper, size=8)
    lib = _lib()
    _run(lib.adamw, p.numel(), _ptr(p), _ptr(g), _ptr(m), _ptr(v), _ptr(hyper))
