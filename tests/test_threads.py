"""Thread count never changes a result; the thread count API.

Every kernel splits its work into contiguous blocks, one per thread, and reductions keep one
summation order, so results for 1 and 2 threads must be bit-identical (the signs of NaNs
aside, see ``_bits``).  Checked twice:

* through the layers, at sizes just below and above the parallel thresholds of
  bpfast.layers (``_PAR_*``, lowered for the test; below them a call stays on one thread
  whatever the setting);
* on the kernels directly, with more threads than rows or elements (empty blocks).
"""

import os

import numpy as np
import pytest

import bpfast
import bpfast.functions
from _helpers import run_snippet
from bpfast import layers
from bpfast._kernels import affine as kaffine
from bpfast._kernels import relu as krelu
from bpfast._kernels import sigmoid as ksigmoid
from bpfast._kernels import softmax_with_loss as ksoftmax

needs_openmp = pytest.mark.skipif(not bpfast.openmp_enabled(),
                                  reason="built without OpenMP: kernels run on one thread")


def _bits(results):
    """Results as bytes: signed zeros included, every NaN made the same NaN.

    The sign of a NaN from ``NaN * NaN`` is whichever operand the CPU returns, and the
    compiler may order the operands differently in a vectorised loop and its scalar tail,
    whose extent depends on the block boundaries; neither NumPy nor the book gives NaN signs
    any meaning, so they are not compared.
    """
    out = []
    for r in results:
        r = np.asarray(r)
        if r.dtype.kind == "f":
            r = np.where(np.isnan(r), np.array(np.nan, r.dtype), r)
        out.append((r.dtype.str, r.shape, r.tobytes()))
    return out


def _with_threads(n, fn):
    previous = bpfast.set_num_threads(n)
    try:
        return _bits(fn())
    finally:
        bpfast.set_num_threads(previous)


def _sizes(threshold, cols):
    """Row counts giving just below, at, and well above ``threshold`` elements (odd too)."""
    below = max((threshold - 1) // cols, 1)
    at = -(-threshold // cols)
    return [below, at, 3 * at + 7]


def _data(rng, shape, dtype):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[::97] = np.nan
    x.flat[5::101] = -0.0
    return x


def _relu(rng, dtype, rows, cols):
    x, dout = _data(rng, (rows, cols), dtype), _data(rng, (rows, cols), dtype)
    layer = layers.Relu()
    out = layer.forward(x)
    return out, layer.mask, layer.backward(dout)


def _sigmoid(rng, dtype, rows, cols):
    x, dout = _data(rng, (rows, cols), dtype), _data(rng, (rows, cols), dtype)
    layer = layers.Sigmoid()
    out = layer.forward(x)
    return out, layer.backward(dout), bpfast.functions.sigmoid(x)


def _affine(rng, dtype, rows, cols):
    x = _data(rng, (rows, 5), dtype)
    layer = layers.Affine(rng.standard_normal((5, cols)).astype(dtype),
                          rng.standard_normal(cols).astype(dtype))
    out = layer.forward(x)
    dx = layer.backward(_data(rng, (rows, cols), dtype))
    return out, dx, layer.dW, layer.db


def _softmax_loss(rng, dtype, rows, cols):
    x = _data(rng, (rows, cols), dtype)
    x[::3] = np.nan_to_num(x[::3])  # some finite rows, so losses are not all NaN
    labels = rng.integers(0, cols, rows)
    results = [bpfast.functions.softmax(x)]
    finite = np.nan_to_num(x)
    for xx in (x, finite):
        for t in (labels, labels.astype(np.uint8), labels.astype(np.int32),
                  np.eye(cols, dtype=dtype)[labels], np.eye(cols, dtype=np.float64)[labels]):
            layer = layers.SoftmaxWithLoss()
            results += [layer.forward(xx, t), layer.y, layer.backward()]
    return results


CASES = {
    "relu": (_relu, "_PAR_ELEMENTWISE", 13),
    "sigmoid": (_sigmoid, "_PAR_EXP", 13),
    "sigmoid-backward": (_sigmoid, "_PAR_ELEMENTWISE", 13),
    "affine": (_affine, "_PAR_ELEMENTWISE", 11),
    "softmax-with-loss": (_softmax_loss, "_PAR_ROWS", 10),
    "softmax-with-loss-wide": (_softmax_loss, "_PAR_ROWS", 1001),
    "softmax-with-loss-backward": (_softmax_loss, "_PAR_ELEMENTWISE", 10),
}
# The layers' thresholds are set for speed (millions of elements); the test lowers them so
# that its arrays stay small -- the code path above a threshold is the same at any size.
TEST_THRESHOLDS = {"_PAR_ELEMENTWISE": 1 << 16, "_PAR_EXP": 1 << 14, "_PAR_ROWS": 1 << 14}


@needs_openmp
@pytest.mark.parametrize("case", list(CASES))
def test_layers_bit_identical_for_1_and_2_threads(rng, dtype, case, monkeypatch):
    fn, name, cols = CASES[case]
    for const, value in TEST_THRESHOLDS.items():
        monkeypatch.setattr(layers, const, value)
    monkeypatch.setattr(bpfast.functions, "_PAR_EXP", TEST_THRESHOLDS["_PAR_EXP"])
    for rows in _sizes(TEST_THRESHOLDS[name], cols):
        seed = int(rng.integers(2**31))
        one = _with_threads(1, lambda: fn(np.random.default_rng(seed), dtype, rows, cols))
        two = _with_threads(2, lambda: fn(np.random.default_rng(seed), dtype, rows, cols))
        assert one == two, (case, rows, cols)


def test_thresholds_are_what_the_layers_use():
    # The functions module keeps its own copy of the exp threshold: keep them in step.
    assert bpfast.functions._PAR_EXP == layers._PAR_EXP
    for name in ("_PAR_ELEMENTWISE", "_PAR_EXP", "_PAR_ROWS"):
        assert getattr(layers, name) >= 1


# ------------------------------------------------------------------------ kernels directly

KERNEL_THREADS = [1, 2, 3, 8]


def _kernel_results(dtype, n_threads, rows, cols, seed):
    rng = np.random.default_rng(seed)
    ct = "float" if dtype == np.float32 else "double"
    x = _data(rng, (rows, cols), dtype)
    dout = _data(rng, (rows, cols), dtype)
    labels = rng.integers(0, cols, rows)
    onehot = np.eye(cols, dtype=dtype)[labels]
    flat, dflat = x.reshape(-1), dout.reshape(-1)
    res = []

    out, mask = np.empty_like(flat), np.empty(flat.shape, np.uint8)
    krelu.relu_forward[ct](flat, out, mask, n_threads=n_threads)
    dx = np.empty_like(flat)
    krelu.relu_backward[ct](dflat, mask, dx, n_threads=n_threads)
    res += [out, mask, dx]

    out, dx = np.empty_like(flat), np.empty_like(flat)
    ksigmoid.sigmoid_forward[ct](flat, out, n_threads=n_threads)
    ksigmoid.sigmoid_backward[ct](dflat, out, dx, n_threads=n_threads)
    res += [out, dx]

    acc = x.copy()
    kaffine.bias_add[ct](acc, dout[0].copy(), n_threads=n_threads)
    colsum = np.empty(cols, dtype)
    kaffine.column_sum[ct](x, colsum, n_threads=n_threads)
    res += [acc, colsum]

    y = np.empty_like(x)
    ksoftmax.softmax_forward[ct](x, y, n_threads=n_threads)
    res.append(y.copy())
    finite = np.nan_to_num(x)
    for lt, lc in ((np.uint8, "unsigned char"), (np.intc, "int"), (np.int_, "long")):
        t = labels.astype(lt)
        loss = ksoftmax.softmax_xent_forward[f"{ct}|{lc}"](finite, t, y, n_threads=n_threads)
        g = np.empty_like(x)
        ksoftmax.softmax_xent_backward[f"{ct}|{lc}"](y, t, g, n_threads=n_threads)
        res += [loss, y.copy(), g]
    for tt, tc in ((dtype, ct),):
        loss = ksoftmax.softmax_xent_forward_onehot[f"{ct}|{tc}"](finite, onehot.astype(tt), y,
                                                                n_threads=n_threads)
        g = np.empty_like(x)
        ksoftmax.softmax_xent_backward_onehot[ct](y, onehot, g, n_threads=n_threads)
        res += [loss, y.copy(), g]
    return _bits(res)


@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (2, 3), (3, 64), (7, 13), (200, 70)],
                         ids=str)
def test_kernels_bit_identical_for_any_thread_count(dtype, shape):
    results = [_kernel_results(dtype, n, *shape, seed=sum(shape)) for n in KERNEL_THREADS]
    for n, r in zip(KERNEL_THREADS[1:], results[1:]):
        assert r == results[0], n


# ----------------------------------------------------------------------------- the API


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, False, [2], 2.0])
def test_set_num_threads_rejects(bad):
    before = bpfast.get_num_threads()
    with pytest.raises(ValueError):
        bpfast.set_num_threads(bad)
    assert bpfast.get_num_threads() == before


def test_set_num_threads_returns_previous_and_none_restores_default():
    default = bpfast.get_num_threads()
    first = bpfast.set_num_threads(1)
    try:
        assert bpfast.get_num_threads() == 1
        assert bpfast.set_num_threads(2) == 1
        assert bpfast.get_num_threads() == (2 if bpfast.openmp_enabled() else 1)
        assert bpfast.set_num_threads(np.int64(1)) in (1, 2)  # NumPy integers are integers
        assert bpfast.get_num_threads() == 1
        assert bpfast.set_num_threads(None) == 1
        assert bpfast.get_num_threads() == default
    finally:
        bpfast.set_num_threads(first)


@pytest.mark.parametrize("omp", ["1", "2", "3"])
def test_default_honours_OMP_NUM_THREADS(omp):
    env = dict(os.environ, OMP_NUM_THREADS=omp)
    code = "import bpfast; print(bpfast.get_num_threads(), bpfast.openmp_enabled())"
    rc, out, err = run_snippet(code, env=env)
    assert rc == 0, err
    n, openmp = out.split()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    expected = min(int(omp), cpus) if openmp == "True" else 1
    assert int(n) == expected


def test_default_without_OMP_NUM_THREADS_is_the_usable_cpus():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    rc, out, err = run_snippet("import bpfast; print(bpfast.get_num_threads())", env=env)
    assert rc == 0, err
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert int(out) == (cpus if bpfast.openmp_enabled() else 1)


@needs_openmp
def test_n_threads_fixture_really_sets_two(n_threads):
    assert bpfast.get_num_threads() == n_threads


_SPIN_CODE = "import os, bpfast; print(os.environ.get('GOMP_SPINCOUNT', '-'))"


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({}, "1000"),  # bpfast's default: idle OpenMP threads stop spinning soon
        ({"GOMP_SPINCOUNT": "123"}, "123"),  # the user's value wins
        ({"OMP_WAIT_POLICY": "active"}, "-"),  # a wait policy is left alone entirely
    ],
)
def test_gomp_spincount_default_never_overrides_the_user(extra, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    rc, out, err = run_snippet(_SPIN_CODE, env={**env, **extra})
    assert rc == 0, err
    assert out.strip() == expected
