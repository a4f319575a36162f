"""The C++ kernels (diffprune.native) against the torch math they stand in for."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffprune import compact_adamw, diff, kernels, native
from diffprune.gates import HardConcrete

pytestmark = pytest.mark.skipif(not native.available(), reason="no C++ compiler here")

HC = HardConcrete()


def _gate_inputs(n: int, seed: int, scale: float):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, generator=g)
    w = torch.randn(n, generator=g) * 0.05
    log_alpha = torch.randn(n, generator=g) * scale
    seeds = torch.randint(0, 1 << 32, (2,), generator=g, dtype=torch.int64)
    return theta, w, log_alpha, seeds


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**16), scale=st.sampled_from([0.1, 3.0, 30.0]),
       grouped=st.booleans(), rows=st.booleans(), penalty=st.booleans())
def test_gate_passes_agree_with_the_torch_math(n, seed, scale, grouped, rows, penalty):
    """Forward and backward, whole tensors and gathered rows, with and without a group gate and
    the penalty's gradient: the eager math's values within float rounding (the exp differs)."""
    theta, w, log_alpha, seeds = _gate_inputs(n, seed, scale)
    consts = diff._constants(HC)
    group = torch.tensor(0.7) if grouped else None
    positions = torch.randperm(4 * n, generator=torch.Generator().manual_seed(seed))[:n]
    index = positions if rows else None
    ref = diff._forward_math(theta, w, log_alpha, seeds, group, *consts, index)
    ours = native.gate_forward(theta, w, log_alpha, seeds, group, *consts, index)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-3)

    grad = torch.randn(n, generator=torch.Generator().manual_seed(seed + 1))
    grad_l0 = torch.tensor(0.3) if penalty else None
    ref = diff._backward_math(grad, seeds, w, log_alpha, group, grad_l0, *consts, index)
    ours = native.gate_backward(grad, seeds, w, log_alpha, group, grad_l0, *consts, index)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-4, atol=1e-6)
    if grouped:
        torch.testing.assert_close(ours[2], ref[2], rtol=1e-4, atol=1e-4)
    else:
        assert ours[2] is None


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4000), seed=st.integers(0, 2**16))
def test_the_gates_are_the_same_draws(n, seed):
    """theta = 0, w = 1 makes the weight z itself: the same noise, so the same gates (up to
    the exp's rounding), also where they are exactly 0 or 1."""
    _, _, log_alpha, seeds = _gate_inputs(n, seed, 3.0)
    zero, one = torch.zeros(n), torch.ones(n)
    ref, _ = diff._forward_math(zero, one, log_alpha, seeds, None, *diff._constants(HC))
    ours, _ = native.gate_forward(zero, one, log_alpha, seeds, None, *diff._constants(HC))
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-6)
    assert torch.equal(ours == 0, ref == 0) and torch.equal(ours == 1, ref == 1)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**16), scale=st.sampled_from([0.5, 20.0]))
def test_expected_l0_and_its_gradient(n, seed, scale):
    log_alpha = _gate_inputs(n, seed, scale)[2]
    torch.testing.assert_close(native.expected_l0(log_alpha, HC.l0_shift),
                               diff._l0_math(log_alpha, HC.l0_shift), rtol=1e-5, atol=1e-3)
    grad_l0 = torch.tensor(1.7)
    torch.testing.assert_close(native.expected_l0_backward(grad_l0, log_alpha, HC.l0_shift),
                               diff._l0_backward_math(grad_l0, log_alpha, HC.l0_shift),
                               rtol=1e-5, atol=1e-7)


def test_nan_log_alpha_stays_nan():
    """The exp's clamps must not turn a NaN into a number: NaN losses are caught downstream."""
    theta, w, log_alpha, seeds = _gate_inputs(8, 0, 1.0)
    log_alpha[3] = float("nan")
    weight, l0 = native.gate_forward(theta, w, log_alpha, seeds, None, *diff._constants(HC))
    assert torch.isnan(weight[3]) and torch.isnan(l0) and not torch.isnan(weight[:3]).any()


def _ieee_packed_step(p, g, mv, hyper, seed):
    """compact_adamw's packed step in numpy float32, one correctly rounded operation at a time
    (torch's vectorized sqrt is not always correctly rounded, the C++ one is)."""
    h = hyper.numpy()
    p, g, mv = p.numpy().copy(), g.numpy(), mv.numpy().view(np.uint32)
    m = (mv & np.uint32(0xFFFF0000)).view(np.float32) * h[1] + g * h[2]
    v = (mv << np.uint32(16)).view(np.float32) * h[3] + g * g * h[4]
    p = p * h[0] - (h[5] * m) / (np.sqrt(v) / h[6] + h[7])
    return torch.from_numpy(p), m, v


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(-2**31, 2**31 - 1),
       scale=st.sampled_from([1e-8, 1e-3, 10.0]))
def test_packed_adamw_is_the_same_bits(n, seed, scale):
    """The new moments are the eager kernel's bits; the parameter is the float32 math's bits."""
    g = torch.Generator().manual_seed(abs(seed))
    p = torch.randn(n, generator=g)
    grad = torch.randn(n, generator=g) * scale
    mv = compact_adamw._pack((torch.randn(n, generator=g) * scale).bfloat16(),
                             (torch.rand(n, generator=g) * scale * scale).bfloat16())
    hyper = torch.tensor([0.999, 0.9, 0.1, 0.999, 0.001, 2e-3, 0.05, 1e-8])
    seed_t = torch.tensor(seed, dtype=torch.int32)
    p0, ref_p, ref_mv = p.clone(), p.clone(), mv.clone()
    compact_adamw._packed_step_math(ref_p, grad, ref_mv, hyper, seed_t)
    ieee_p, _, _ = _ieee_packed_step(p, grad, mv, hyper, seed)
    native.packed_adamw(p, grad, mv, hyper, seed_t)
    assert torch.equal(mv, ref_mv)
    assert torch.equal(p, ieee_p)
    # The eager step may round its sqrt a last bit differently: a few float32 ulps of the two
    # terms p·(1 - lr·wd) and the update. Where they nearly cancel, that is a large relative
    # change of a tiny result, so the bound is on the terms, not on the result.
    decayed = p0 * hyper[0]
    terms = decayed.abs() + (decayed - ref_p).abs()
    assert ((p - ref_p).abs() <= 4 * torch.finfo(torch.float32).eps * terms).all()


def test_results_do_not_depend_on_the_thread_count():
    """Chunks are fixed, so sums and values are the same bits on one thread or several."""
    n = 2 * native.CHUNK + 12345
    theta, w, log_alpha, seeds = _gate_inputs(n, 1, 2.0)
    consts = diff._constants(HC)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fwd = native.gate_forward(theta, w, log_alpha, seeds, torch.tensor(0.5), *consts)
            bwd = native.gate_backward(theta, seeds, w, log_alpha, torch.tensor(0.5),
                                       torch.tensor(0.2), *consts)
            outs.append([*fwd, *bwd, native.expected_l0(log_alpha, 0.1)])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@pytest.mark.parametrize("case", ["temperature", "dtype", "strided"])
def test_other_inputs_go_to_the_torch_versions(case):
    theta, w, log_alpha, seeds = _gate_inputs(64, 2, 1.0)
    hc = HC
    if case == "temperature":
        hc = HardConcrete(-0.1, 1.1, 2 / 3, 1e-6)
    elif case == "dtype":
        theta = theta.double()
    else:
        theta = torch.randn(128)[::2]
    with pytest.raises(native.Unsupported):
        native.gate_forward(theta, w, log_alpha, seeds, None, *diff._constants(hc))
    # through Kernels, the same call runs the torch math instead (eager here: fused=False)
    weight, _ = diff._KERNELS.run("forward", False, theta, w, log_alpha, seeds, None,
                                  *diff._constants(hc))
    assert weight.shape == theta.shape


def test_a_missing_compiler_falls_back_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setenv("DIFFPRUNE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(UserWarning, match="could not be built"):
        assert not native.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.available()  # warned once
    theta, w, log_alpha, seeds = _gate_inputs(16, 3, 1.0)
    with pytest.raises(native.Unsupported):
        native.gate_forward(theta, w, log_alpha, seeds, None, *diff._constants(HC))
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_the_library_is_built_once_and_atomically(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setenv("DIFFPRUNE_CACHE_DIR", str(tmp_path))
    assert native.available()
    built = list(tmp_path.glob("kernels-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("tmp*"))
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(native, "_library", None)
    assert native.available() and built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_use_backend_is_checked_and_restored():
    assert kernels.backend() == "native"
    with kernels.use_backend("compile"):
        assert kernels.backend() == "compile"
    assert kernels.backend() == "native"
    with pytest.raises(ValueError, match="backend"):
        with kernels.use_backend("cuda"):
            pass


def _expected_l0_in_child(log_alpha, queue):
    torch.set_num_threads(2)
    queue.put(float(native.expected_l0(log_alpha, 0.1)))


def test_a_forked_child_gets_its_own_threads():
    """A DataLoader-style fork after the parent used its thread pool must not wait forever on
    the parent's workers, which the child does not have."""
    import multiprocessing

    log_alpha = _gate_inputs(2 * native.CHUNK + 7, 4, 2.0)[2]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent = float(native.expected_l0(log_alpha, 0.1))  # the pool exists now
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_expected_l0_in_child, args=(log_alpha, queue))
        child.start()
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
        assert child.exitcode == 0
        assert queue.get(timeout=5) == parent
    finally:
        torch.set_num_threads(before)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 300), short=st.sampled_from(["w", "log_alpha", "index", "grad"]))
def test_mismatched_sizes_never_reach_the_cpp_loops(n, short):
    """A tensor shorter than the others would make a C++ loop read past its buffer: such calls
    are refused, and Kernels runs the torch version instead."""
    theta, w, log_alpha, seeds = _gate_inputs(n, n, 1.0)
    index = torch.arange(n)
    grad = torch.randn(n)
    if short == "w":
        w = w[:-1].contiguous()
    elif short == "log_alpha":
        log_alpha = log_alpha[:-1].contiguous()
    elif short == "index":
        index = index[:-1].contiguous()
    else:
        grad = grad[:-1].contiguous()
    consts = diff._constants(HC)
    with pytest.raises(native.Unsupported):
        if short == "grad":
            native.gate_backward(grad, seeds, w, log_alpha, None, None, *consts)
        else:
            native.gate_forward(theta, w, log_alpha, seeds, None, *consts, index)
    p = torch.randn(n)
    with pytest.raises(native.Unsupported):
        native.packed_adamw(p, torch.randn(n - 1), torch.zeros(n, dtype=torch.int32),
                            torch.ones(8), torch.tensor(0, dtype=torch.int32))
