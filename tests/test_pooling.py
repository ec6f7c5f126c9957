"""bpfast.Pooling (max pooling) against the book's Pooling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpfast
import bpfast.reference as ref
from bpfast._kernels import pooling as kpool
from _conv_helpers import (
    DTYPES,
    assert_same,
    assert_same_error,
    layouts,
    numerical_gradient,
    run_bad_input,
)

# (N, C, H, W, pool_h, pool_w, stride)
GEOMETRIES = [
    (100, 30, 24, 24, 2, 2, 2),  # SimpleConvNet's pooling layer
    (2, 3, 8, 8, 2, 2, 2),
    (2, 2, 7, 9, 3, 2, 1),  # overlapping windows (stride < pool), non-square pool
    (1, 1, 5, 5, 2, 2, 2),  # 5x5 -> 2x2: last row/column get no gradient
    (2, 2, 6, 6, 3, 3, 3),
    (1, 4, 9, 7, 3, 3, 2),  # overlapping, odd sizes
    (3, 1, 4, 6, 4, 1, 1),  # pool as tall as the input
]


def _data(shape, dtype, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many ties inside windows
        return rng.integers(-2, 2, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _pair(geometry, **kw):
    n, c, h, w, ph, pw, s = geometry
    return bpfast.Pooling(ph, pw, stride=s, **kw), ref.Pooling(ph, pw, stride=s, **kw)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_forward_backward_match_reference(geometry, dtype, ties):
    n, c, h, w, ph, pw, s = geometry
    x = _data((n, c, h, w), dtype, ties=ties)
    fast, book = _pair(geometry)
    expected = book.forward(x)
    out = fast.forward(x)
    # Exact: max picks an input value; float64 as in the book (C-contiguous, the book
    # returns a transposed view).
    assert_same(out, np.ascontiguousarray(expected))
    assert out.flags.c_contiguous
    assert fast.x is x
    assert_same(fast.arg_max, book.arg_max)
    dout = _data(out.shape, dtype, seed=1)
    # Exact also with overlapping windows: contributions are added in the book's order.
    assert_same(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts(dtype):
    geometry = (2, 3, 8, 7, 3, 2, 2)
    n, c, h, w, ph, pw, s = geometry
    x = _data((n, c, h, w), dtype, ties=True)
    fast, book = _pair(geometry)
    expected = book.forward(x)
    dout = _data(expected.shape, dtype, seed=3)
    dx = book.backward(dout)
    for name, xv in layouts(x):
        before = xv.copy()
        assert_same(fast.forward(xv), np.ascontiguousarray(expected))
        assert_same(xv, before)
        for dname, dv in layouts(dout):
            dbefore = dv.copy()
            assert_same(fast.backward(dv), np.ascontiguousarray(dx))
            assert_same(dv, dbefore)


def test_nan_and_inf_follow_argmax():
    # np.argmax/np.max stop at the first NaN; +inf wins; an all -inf window takes index 0.
    x = np.array(
        [[[[1.0, np.nan, 5.0, 5.0], [np.nan, 3.0, 5.0, -1.0],
           [-np.inf, -np.inf, 2.0, np.inf], [-np.inf, -np.inf, np.inf, np.nan]]]]
    )
    fast, book = bpfast.Pooling(2, 2), ref.Pooling(2, 2)
    assert_same(fast.forward(x), np.ascontiguousarray(book.forward(x)))
    assert_same(fast.arg_max, book.arg_max)
    assert list(book.arg_max) == [1, 0, 0, 3]  # what the book does, spelled out
    dout = np.array([[[[1.0, 2.0], [np.nan, -np.inf]]]])
    assert_same(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))


@pytest.mark.parametrize("pool", [(2, 2), (3, 3), (2, 3)])
def test_nan_positions_in_generic_kernels(pool):
    ph, pw = pool
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (2, 2, 7, 8)).astype(float)
    x[rng.random(x.shape) < 0.15] = np.nan
    for s in (1, 2):
        fast, book = bpfast.Pooling(ph, pw, s), ref.Pooling(ph, pw, s)
        assert_same(fast.forward(x), np.ascontiguousarray(book.forward(x)))
        assert_same(fast.arg_max, book.arg_max)


def test_default_stride_is_two():
    x = _data((1, 1, 6, 6), np.float64)
    assert bpfast.Pooling(2, 2).stride == 2
    assert bpfast.Pooling(2, 2).forward(x).shape == (1, 1, 3, 3)


def test_reference_backward_matches_numerical_gradient():
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) / 7.0  # distinct: no kinks
    book = ref.Pooling(3, 2, stride=1)
    dout = rng.standard_normal(book.forward(x).shape)
    analytic = book.backward(dout)
    numeric = numerical_gradient(lambda: float(np.sum(book.forward(x) * dout)), x)
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)


def test_arg_max_is_lazy_and_assignable():
    geometry = (2, 2, 6, 6, 2, 2, 2)
    x = _data(geometry[:4], np.float64, ties=True)
    fast, book = _pair(geometry)
    fast.forward(x)
    book.forward(x)
    assert fast.arg_max is fast.arg_max  # built once
    # Assigning arg_max (as book-style code may) routes backward through the book's code.
    flipped = (book.arg_max + 1) % 4
    fast.arg_max = flipped.copy()
    book.arg_max = flipped.copy()
    dout = _data(book.forward(x).shape, np.float64, seed=2)
    book.arg_max = flipped.copy()
    assert_same(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))


def test_fresh_layer_attributes():
    layer = bpfast.Pooling(2, 3, stride=1, pad=0)
    assert (layer.pool_h, layer.pool_w, layer.stride, layer.pad) == (2, 3, 1, 0)
    assert layer.x is None and layer.arg_max is None


@pytest.mark.parametrize("x", [np.arange(2 * 2 * 4 * 4).reshape(2, 2, 4, 4),
                               np.ones((1, 1, 4, 4), np.float16)], ids=["int64", "float16"])
def test_other_dtypes_take_the_reference_path(x):
    fast, book = bpfast.Pooling(2, 2), ref.Pooling(2, 2)
    assert_same(fast.forward(x), book.forward(x))
    assert_same(fast.arg_max, book.arg_max)
    dout = np.ones((x.shape[0], x.shape[1], 2, 2))
    assert_same(fast.backward(dout), book.backward(dout))


# --------------------------------------------------------------------------- pad > 0

def _padded_reference(x, ph, pw, s, p):
    """What bpfast's pad > 0 means: the book's Pooling on an input padded with -inf."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (p, p), (p, p)],
                constant_values=-np.inf)
    book = ref.Pooling(ph, pw, stride=s)
    return book, xp


@pytest.mark.parametrize("geometry", [(2, 3, 6, 6, 2, 2, 2, 1), (1, 2, 5, 7, 3, 3, 1, 1),
                                      (2, 1, 4, 4, 3, 2, 2, 2), (1, 1, 3, 3, 2, 2, 1, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_is_minus_infinity(geometry, dtype):
    n, c, h, w, ph, pw, s, p = geometry
    x = -np.abs(_data((n, c, h, w), dtype, ties=True)) - 1  # all negative: 0-padding would win
    book, xp = _padded_reference(x, ph, pw, s, p)
    fast = bpfast.Pooling(ph, pw, stride=s, pad=p)
    expected = np.ascontiguousarray(book.forward(xp))
    assert_same(fast.forward(x), expected)
    assert_same(fast.arg_max, book.arg_max)
    dout = _data(expected.shape, dtype, seed=4)
    dx = np.ascontiguousarray(book.backward(dout)[:, :, p:p + h, p:p + w])
    assert_same(fast.backward(dout), dx)


def test_the_reference_cannot_pad():
    x = _data((1, 1, 4, 4), np.float64)
    with pytest.raises(ValueError):
        ref.Pooling(2, 2, stride=2, pad=1).forward(x)
    assert bpfast.Pooling(2, 2, stride=2, pad=1).forward(x).shape == (1, 1, 3, 3)


# ------------------------------------------------------------------------------ kernels

@pytest.mark.parametrize("pool", [(2, 2, 2, 0), (3, 2, 1, 0), (2, 2, 2, 1), (3, 3, 2, 2)])
def test_kernels_do_not_depend_on_the_thread_count(pool):
    ph, pw, s, p = pool
    x = _data((5, 3, 9, 8), np.float64, ties=True)
    oh, ow = (9 + 2 * p - ph) // s + 1, (8 + 2 * p - pw) // s + 1
    fwd = kpool.max_pool_forward["double|unsigned char"]
    bwd = kpool.max_pool_backward["double|unsigned char"]
    dout = _data((5, 3, oh, ow), np.float64, seed=5)
    results = []
    for threads in (1, 2, 3):
        out, arg, dx = np.empty((5, 3, oh, ow)), np.empty((5, 3, oh, ow), np.uint8), np.empty(x.shape)
        fwd(x, ph, pw, s, p, out, arg, n_threads=threads)
        bwd(dout, arg, ph, pw, s, p, dx, n_threads=threads)
        results.append((out, arg, dx))
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            assert_same(a, b)


def test_large_windows_use_int32_indices():
    x = np.arange(2 * 20 * 20, dtype=np.float64).reshape(1, 2, 20, 20)  # maxima at the end
    fast, book = bpfast.Pooling(17, 16, stride=3), ref.Pooling(17, 16, stride=3)
    assert_same(fast.forward(x), np.ascontiguousarray(book.forward(x)))
    assert_same(fast.arg_max, book.arg_max)
    assert fast.arg_max.max() > 255


def test_kernels_reject_mismatched_buffers():
    fwd = kpool.max_pool_forward["double|unsigned char"]
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError):
        fwd(x, 2, 2, 2, 0, np.empty((1, 1, 3, 2)), np.empty((1, 1, 3, 2), np.uint8))
    with pytest.raises(ValueError):
        fwd(x, 5, 5, 1, 0, np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1), np.uint8))
    with pytest.raises(ValueError):
        fwd(np.zeros((1, 1, 20, 20)), 17, 16, 1, 0, np.empty((1, 1, 4, 5)),
            np.empty((1, 1, 4, 5), np.uint8))  # 272 positions do not fit a byte
    bwd = kpool.max_pool_backward["double|unsigned char"]
    with pytest.raises(ValueError):
        bwd(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 1), np.uint8), 2, 2, 2, 0, x)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       ph=st.integers(1, 4), pw=st.integers(1, 4), s=st.integers(1, 3))
def test_any_geometry(n, c, h, w, ph, pw, s):
    x = np.random.default_rng(h * 100 + w).integers(-3, 3, (n, c, h, w)).astype(float)
    fast, book = bpfast.Pooling(ph, pw, s), ref.Pooling(ph, pw, s)
    if h < ph or w < pw:
        for layer in (fast, book):
            with pytest.raises(ValueError):
                layer.forward(x)
        return
    assert_same(fast.forward(x), np.ascontiguousarray(book.forward(x)))
    assert_same(fast.arg_max, book.arg_max)
    dout = np.random.default_rng(s).standard_normal(fast.forward(x).shape)
    assert_same(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))


# ----------------------------------------------------------------- bad inputs (subprocess)

BAD_INPUTS = {
    "pool larger than the input": """
        def inputs():
            return {"x": np.ones((2, 1, 2, 2))}
        def call(layers, util, x):
            layers.Pooling(3, 3, stride=2).forward(x)
    """,
    "pool much larger than the input": """
        def inputs():
            return {"x": np.ones((1, 1, 1, 1))}
        def call(layers, util, x):
            layers.Pooling(4, 4, stride=1).forward(x)
    """,
    "3-D input": """
        def inputs():
            return {"x": np.ones((1, 4, 4))}
        def call(layers, util, x):
            layers.Pooling(2, 2).forward(x)
    """,
    "5-D input": """
        def inputs():
            return {"x": np.ones((1, 1, 1, 4, 4))}
        def call(layers, util, x):
            layers.Pooling(2, 2).forward(x)
    """,
    "stride 0": """
        def inputs():
            return {"x": np.ones((1, 1, 4, 4))}
        def call(layers, util, x):
            layers.Pooling(2, 2, stride=0).forward(x)
    """,
    "backward before forward": """
        def inputs():
            return {"dout": np.ones((1, 1, 2, 2))}
        def call(layers, util, dout):
            layers.Pooling(2, 2).backward(dout)
    """,
    "dout of the wrong size": """
        def inputs():
            return {"x": np.ones((1, 2, 4, 4)), "dout": np.ones((1, 2, 3, 3))}
        def call(layers, util, x, dout):
            layer = layers.Pooling(2, 2)
            layer.forward(x)
            layer.backward(dout)
    """,
    "dout of the wrong ndim": """
        def inputs():
            return {"x": np.ones((1, 2, 4, 4)), "dout": np.ones((2, 2, 2))}
        def call(layers, util, x, dout):
            layer = layers.Pooling(2, 2)
            layer.forward(x)
            layer.backward(dout)
    """,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_like_the_reference(case):
    assert_same_error(run_bad_input(BAD_INPUTS[case]))


def test_pickle_and_copy_keep_the_lazy_arg_max():
    import copy
    import pickle

    x = _data((2, 3, 6, 6), np.float64, ties=True)
    fast, book = bpfast.Pooling(2, 2), ref.Pooling(2, 2)
    fast.forward(x)
    book.forward(x)
    dout = _data((2, 3, 3, 3), np.float64, seed=8)
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast), copy.copy(fast)):
        assert_same(clone.arg_max, book.arg_max)
        assert_same(clone.backward(dout), np.ascontiguousarray(book.backward(dout)))
