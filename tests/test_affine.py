"""bpfast.Affine against the book's Affine (bpfast.reference.Affine).

The three matrix products are NumPy's ``np.dot`` in both, on the same operands, and the bias
add is one IEEE addition per element: ``out``, ``dx`` and ``dW`` must equal the book's bit for
bit.  ``db`` is a column sum accumulated in double; for float64 and a C-contiguous ``dout`` it
adds rows in the order NumPy does (bit-identical), for float32 it is the double sum rounded
once (more accurate than NumPy's float32 sum, so compared within tolerance).

Across memory layouts BLAS may pick other kernels, so ``out``/``dx``/``dW`` are compared with
the contiguous case within tolerance (and with the book on the same layout exactly).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _helpers import (
    SHAPES_2D,
    assert_close,
    assert_identical,
    any_floats,
    layouts,
    numerical_gradient,
)
from bpfast import Affine, reference as ref


def _double_sum(dout):
    """``dout.sum(axis=0)`` accumulated in double over rows in order, rounded once."""
    return np.ascontiguousarray(dout, dtype=np.float64).sum(axis=0).astype(dout.dtype)


def _run(cls, x, W, b, dout):
    layer = cls(W, b)
    out = layer.forward(x)
    dx = layer.backward(dout)
    return layer, out, dx


def _check_parity(x, W, b, dout, db_exact):
    layer, out, dx = _run(Affine, x, W, b, dout)
    rlayer, rout, rdx = _run(ref.Affine, x, W, b, dout)
    assert layer.W is W and layer.b is b
    assert_identical(out, rout)
    assert_identical(dx, rdx)
    assert_identical(layer.dW, rlayer.dW)
    assert_identical(layer.x, rlayer.x)
    assert np.shares_memory(layer.x, x) == np.shares_memory(rlayer.x, x)
    assert layer.original_x_shape == rlayer.original_x_shape == x.shape
    assert dx.shape == x.shape
    if db_exact:
        assert_identical(layer.db, rlayer.db)
    else:
        n = max(dout.shape[0], 1)
        assert_close(layer.db, rlayer.db, scale=n * max(np.abs(dout).max(initial=0), 1))
    return layer


@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
def test_parity(rng, dtype, n_threads, shape):
    n, d = shape
    m = 7 if n * d < 10**5 else 33
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((d, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dout = rng.standard_normal((n, m)).astype(dtype)
    layer = _check_parity(x, W, b, dout, db_exact=dtype == np.float64)
    assert layer.db.dtype == dtype and layer.db.shape == (m,)
    assert_identical(layer.db, _double_sum(dout))


@pytest.mark.parametrize("x_shape", [(2, 3, 4, 5), (1, 1, 28, 28), (3, 5, 1), (4, 2, 3)],
                         ids=str)
def test_nd_input_flattened_and_dx_in_original_shape(rng, dtype, x_shape):
    d = int(np.prod(x_shape[1:]))
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal((d, 6)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    dout = rng.standard_normal((x_shape[0], 6)).astype(dtype)
    layer = _check_parity(x, W, b, dout, db_exact=dtype == np.float64)
    assert layer.x.shape == (x_shape[0], d)
    assert layer.original_x_shape == x_shape


def test_one_dimensional_input_is_n_samples_of_one_feature(rng, dtype):
    x = rng.standard_normal(5).astype(dtype)
    W = rng.standard_normal((1, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    _check_parity(x, W, b, rng.standard_normal((5, 3)).astype(dtype),
                  db_exact=dtype == np.float64)


def test_no_features_and_no_outputs(rng, dtype):
    x = np.empty((4, 0), dtype)
    W = np.empty((0, 3), dtype)
    b = rng.standard_normal(3).astype(dtype)
    _check_parity(x, W, b, rng.standard_normal((4, 3)).astype(dtype),
                  db_exact=dtype == np.float64)
    x = rng.standard_normal((4, 5)).astype(dtype)
    _check_parity(x, np.empty((5, 0), dtype), np.empty(0, dtype), np.empty((4, 0), dtype),
                  db_exact=True)


@pytest.mark.parametrize("arg", ["x", "W", "b", "dout"])
def test_layouts(rng, dtype, arg):
    n, d, m = 9, 13, 11
    args = {
        "x": rng.standard_normal((n, d)).astype(dtype),
        "W": rng.standard_normal((d, m)).astype(dtype),
        "b": rng.standard_normal(m).astype(dtype),
        "dout": rng.standard_normal((n, m)).astype(dtype),
    }
    _, out, dx = _run(Affine, **args)
    expected = (out, dx, _run(Affine, **args)[0].dW, _double_sum(args["dout"]))
    for kind, v in layouts(args[arg]):
        before = v.copy()
        case = dict(args, **{arg: v})
        layer, out, dx = _run(Affine, **case)
        scale = 10 * np.sqrt(max(n, d, m))
        for got, want in zip((out, dx, layer.dW), expected[:3]):
            assert_close(got, want, scale=scale), kind
        assert_identical(layer.db, expected[3]), kind
        assert_identical(v, before), kind
        # and exactly the book's numbers on the same layout (db: see the module docstring)
        _check_parity(case["x"], case["W"], case["b"], case["dout"],
                      db_exact=dtype == np.float64 and case["dout"].flags.c_contiguous)


def test_reads_W_and_b_live(rng, dtype):
    x = rng.standard_normal((4, 5)).astype(dtype)
    W = rng.standard_normal((5, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    layer = Affine(W, b)
    out1 = layer.forward(x)
    W *= 2  # an optimizer's in-place update
    b += 1
    out2 = layer.forward(x)
    assert_identical(out2, ref.Affine(W, b).forward(x))
    assert not np.array_equal(out1, out2)
    dout = rng.standard_normal((4, 3)).astype(dtype)
    W[...] = 0.5  # backward uses the current W
    assert_identical(layer.backward(dout), np.dot(dout, W.T))
    # re-binding, also to another shape (load_params does this)
    W2 = rng.standard_normal((5, 2)).astype(dtype)
    b2 = rng.standard_normal(2).astype(dtype)
    layer.W, layer.b = W2, b2
    out3 = layer.forward(x)
    assert out3.shape == (4, 2)
    assert_identical(out3, ref.Affine(W2, b2).forward(x))
    assert layer.W is W2 and layer.b is b2


def test_numerical_gradient_through_the_layer(rng):
    """The book's numerical_gradient perturbs params in place and calls the loss again."""
    x = rng.standard_normal((3, 2, 2))
    W = rng.standard_normal((4, 5))
    b = rng.standard_normal(5)
    G = rng.standard_normal((3, 5))
    layer = Affine(W, b)

    def f():
        return np.sum(layer.forward(x) * G)

    num_W = numerical_gradient(f, W)
    num_b = numerical_gradient(f, b)
    num_x = numerical_gradient(f, x)
    layer.forward(x)
    dx = layer.backward(G)
    np.testing.assert_allclose(layer.dW, num_W, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(layer.db, num_b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dx, num_x, rtol=1e-7, atol=1e-9)


def test_keeps_a_view_of_x_like_the_book(rng, dtype):
    x = rng.standard_normal((4, 6)).astype(dtype)
    W = rng.standard_normal((6, 3)).astype(dtype)
    b = np.zeros(3, dtype)
    layer = Affine(W, b)
    layer.forward(x)
    x[...] = 1  # the caller mutates its input between forward and backward
    layer.backward(np.ones((4, 3), dtype))
    assert_identical(layer.dW, np.full((6, 3), 4, dtype))


@pytest.mark.parametrize(
    "x_dtype,W_dtype,b_dtype,expected",
    [
        (np.float32, np.float32, np.float32, np.float32),
        (np.float32, np.float64, np.float64, np.float64),  # MNIST float32 into float64 W
        (np.float64, np.float32, np.float32, np.float64),
        (np.float32, np.float32, np.float64, np.float64),
        (np.uint8, np.float64, np.float64, np.float64),
        (np.uint8, np.float32, np.float32, np.float32),
        (np.int64, np.float32, np.float32, np.float64),
        (np.float64, np.float64, np.float32, np.float64),
        (np.float64, np.float64, np.int64, np.float64),
        (np.float32, np.float32, np.int64, np.float64),
        (np.float32, np.float32, np.bool_, np.float32),
        (np.int64, np.int64, np.int64, np.int64),
        (np.int32, np.int32, np.int32, np.int32),
        (np.float16, np.float16, np.float16, np.float16),
        (np.float16, np.float32, np.float32, np.float32),
        (np.float32, np.float16, np.float16, np.float32),
    ],
    ids=str,
)
def test_dtype_promotion_as_numpy(rng, x_dtype, W_dtype, b_dtype, expected):
    x = (rng.standard_normal((6, 5)) * 3).astype(x_dtype)
    W = (rng.standard_normal((5, 4)) * 3).astype(W_dtype)
    b = (rng.standard_normal(4) * 3).astype(b_dtype)
    dout = (rng.standard_normal((6, 4)) * 3).astype(expected)
    layer, out, dx = _run(Affine, x, W, b, dout)
    rlayer, rout, rdx = _run(ref.Affine, x, W, b, dout)
    assert out.dtype == np.dtype(expected)
    assert_identical(out, rout)
    assert_identical(dx, rdx)
    assert_identical(layer.dW, rlayer.dW)
    if np.dtype(expected).kind == "f" and np.dtype(expected).itemsize >= 4:
        assert_close(layer.db, rlayer.db, scale=10)
    else:
        assert_identical(layer.db, rlayer.db)


@pytest.mark.parametrize("b_kind", ["row", "scalar", "python_float", "list", "0d"])
def test_other_bias_shapes_follow_the_book(rng, dtype, b_kind):
    x = rng.standard_normal((3, 4)).astype(dtype)
    W = rng.standard_normal((4, 2)).astype(dtype)
    b = {
        "row": rng.standard_normal((1, 2)).astype(dtype),
        "scalar": dtype.type(0.5),
        "python_float": 0.5,
        "list": [0.5, -0.5],
        "0d": np.array(0.25, dtype),
    }[b_kind]
    dout = rng.standard_normal((3, 2)).astype(dtype)
    layer, out, dx = _run(Affine, x, W, b, dout)
    rlayer, rout, rdx = _run(ref.Affine, x, W, b, dout)
    assert_identical(out, rout)
    assert_identical(dx, rdx)
    assert layer.db.shape == (2,)  # (out,) whatever b's shape, as in the book


def test_results_not_overwritten_by_later_calls(rng, dtype):
    W = rng.standard_normal((5, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    layer = Affine(W, b)
    out1 = layer.forward(rng.standard_normal((4, 5)).astype(dtype))
    dout = rng.standard_normal((4, 3)).astype(dtype)
    dx1 = layer.backward(dout)
    dW1, db1 = layer.dW, layer.db
    keep = [a.copy() for a in (out1, dx1, dW1, db1, dout, W, b)]
    layer.forward(rng.standard_normal((4, 5)).astype(dtype))
    layer.backward(rng.standard_normal((4, 3)).astype(dtype))
    assert layer.dW is not dW1 and layer.db is not db1
    for a, k in zip((out1, dx1, dW1, db1, dout, W, b), keep):
        assert_identical(a, k)


def test_db_sums_in_double_for_float32():
    # 2**24 + 1 + 1 ... is lost in a float32 running sum, not in double.
    dout = np.ones((3, 2), np.float32)
    dout[0] = 2.0**24
    layer = Affine(np.ones((1, 2), np.float32), np.zeros(2, np.float32))
    layer.forward(np.ones((3, 1), np.float32))
    layer.backward(dout)
    assert_identical(layer.db, np.full(2, 2.0**24 + 2, np.float32))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_db_of_negative_zeros_as_numpy(dtype, n):
    # NumPy's sum starts from its identity +0.0: a column of -0.0 sums to +0.0.
    dout = np.full((n, 3), -0.0, dtype)
    dout[:, 1] = 0.0
    layer = Affine(np.ones((2, 3), dtype), np.zeros(3, dtype))
    layer.forward(np.ones((n, 2), dtype))
    layer.backward(dout)
    assert_identical(layer.db, dout.sum(axis=0))
    assert not np.signbit(layer.db).any()


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_hypothesis_parity(data, dtype):
    n, d, m = (data.draw(st.integers(1, 6)) for _ in range(3))
    arrays = {
        name: data.draw(hnp.arrays(dtype, shape, elements=any_floats(dtype)))
        for name, shape in (("x", (n, d)), ("W", (d, m)), ("b", (m,)), ("dout", (n, m)))
    }
    with np.errstate(all="ignore"):  # inf - inf, overflow: the same in both
        layer, out, dx = _run(Affine, **arrays)
        rlayer, rout, rdx = _run(ref.Affine, **arrays)
        assert_identical(out, rout)
        assert_identical(dx, rdx)
        assert_identical(layer.dW, rlayer.dW)
        assert_identical(layer.db, _double_sum(arrays["dout"]))
        if dtype == np.float64:
            assert_identical(layer.db, rlayer.db)
