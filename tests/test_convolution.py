"""bpfast.Convolution against the book's Convolution."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpfast
import bpfast.reference as ref
from _conv_helpers import (
    DTYPES,
    RTOL,
    assert_same,
    assert_same_error,
    layouts,
    numerical_gradient,
    run_bad_input,
    scale_atol,
)

# (N, C, H, W, FN, FH, FW, stride, pad)
GEOMETRIES = [
    (100, 1, 28, 28, 30, 5, 5, 1, 0),  # SimpleConvNet's first layer
    (2, 3, 7, 6, 4, 3, 2, 1, 0),  # multi-channel, non-square filter
    (3, 2, 9, 8, 5, 3, 3, 2, 1),  # stride 2, pad 1
    (1, 1, 5, 5, 1, 5, 5, 1, 0),  # batch of one, one filter covering the input
    (2, 4, 6, 7, 3, 2, 3, 3, 2),  # stride 3, pad 2
    (2, 16, 7, 7, 8, 1, 1, 1, 0),  # 1x1 convolution
    (2, 2, 5, 9, 3, 4, 2, 2, 1),  # stride that does not divide: output size truncates
]


def _setup(geometry, x_dtype=np.float64, w_dtype=np.float64, seed=0):
    n, c, h, w, fn, fh, fw, s, p = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(x_dtype)
    W = rng.standard_normal((fn, c, fh, fw)).astype(w_dtype)
    b = rng.standard_normal(fn).astype(w_dtype)
    return x, W, b


def _close(actual, expected, dtype=np.float64):
    dtype = np.dtype(dtype)
    assert type(actual) is np.ndarray
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype],
                               atol=scale_atol(expected, dtype))


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("w_dtype", DTYPES)
def test_forward_backward_attributes_match_reference(geometry, x_dtype, w_dtype):
    n, c, h, w, fn, fh, fw, s, p = geometry
    x, W, b = _setup(geometry, x_dtype, w_dtype)
    fast = bpfast.Convolution(W, b, stride=s, pad=p)
    book = ref.Convolution(W, b, stride=s, pad=p)
    expected = book.forward(x)
    out = fast.forward(x)
    # float64 whatever the input dtype (the book's im2col is float64); C-contiguous where
    # the book returns a transposed view.  Values to BLAS rounding (float64 products:
    # float32 inputs are exact in float64).
    _close(out, np.ascontiguousarray(expected))
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert fast.x is x
    assert_same(fast.col, book.col)  # exact: a copy of input values
    assert fast.col_W.shape == book.col_W.shape
    assert_same(fast.col_W, book.col_W)
    assert np.shares_memory(fast.col_W, W)  # a view of W, as in the book
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx = fast.backward(dout)
    _close(dx, np.ascontiguousarray(book.backward(dout)))
    assert dx.flags.c_contiguous
    _close(fast.dW, book.dW)
    _close(fast.db, book.db)


def test_float32_dout_gives_float32_db():
    geometry = (2, 3, 6, 6, 4, 3, 3, 1, 1)
    x, W, b = _setup(geometry)
    fast, book = bpfast.Convolution(W, b, 1, 1), ref.Convolution(W, b, 1, 1)
    dout = np.random.default_rng(2).standard_normal(fast.forward(x).shape).astype(np.float32)
    book.forward(x)
    dx = fast.backward(dout)
    expected = book.backward(dout)
    _close(dx, np.ascontiguousarray(expected))
    _close(fast.dW, book.dW)
    _close(fast.db, book.db, np.float32)


def test_layouts():
    geometry = (2, 3, 7, 6, 4, 3, 2, 2, 1)
    x, W, b = _setup(geometry)
    book = ref.Convolution(W, b, 2, 1)
    expected = book.forward(x)
    dout = np.random.default_rng(3).standard_normal(expected.shape)
    dx = book.backward(dout)
    for name, xv in layouts(x):
        for wname, Wv in layouts(W):
            fast = bpfast.Convolution(Wv, b, 2, 1)
            before = (xv.copy(), Wv.copy(), b.copy())
            _close(fast.forward(xv), np.ascontiguousarray(expected))
            for dname, dv in layouts(dout):
                dbefore = dv.copy()
                _close(fast.backward(dv), np.ascontiguousarray(dx))
                _close(fast.dW, book.dW)
                assert_same(dv, dbefore)
            for a, a0 in zip((xv, Wv, b), before):
                assert_same(a, a0)


def test_parameters_are_read_live():
    geometry = (2, 2, 6, 6, 3, 3, 3, 1, 0)
    x, W, b = _setup(geometry)
    fast, book = bpfast.Convolution(W, b), ref.Convolution(W, b)
    fast.forward(x)
    W *= 0.5  # in place, as optimizers do: both layers see it
    b += 1.0
    _close(fast.forward(x), np.ascontiguousarray(book.forward(x)))
    W2, b2 = _setup(geometry, seed=9)[1:]
    fast.W, fast.b, book.W, book.b = W2, b2, W2, b2  # re-binding, as load_params does
    _close(fast.forward(x), np.ascontiguousarray(book.forward(x)))
    dout = np.ones((2, 3, 4, 4))
    _close(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))
    _close(fast.dW, book.dW)


def test_col_is_assignable():
    geometry = (2, 2, 6, 6, 3, 3, 3, 1, 0)
    x, W, b = _setup(geometry)
    fast, book = bpfast.Convolution(W, b), ref.Convolution(W, b)
    fast.forward(x)
    book.forward(x)
    assert fast.col is fast.col  # built once
    col = book.col * 2.0
    fast.col = col
    book.col = col
    dout = np.random.default_rng(4).standard_normal((2, 3, 4, 4))
    _close(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))
    _close(fast.dW, book.dW)


def test_fresh_layer_attributes():
    W, b = np.ones((2, 1, 3, 3)), np.zeros(2)
    layer = bpfast.Convolution(W, b, stride=2, pad=1)
    assert layer.W is W and layer.b is b and (layer.stride, layer.pad) == (2, 1)
    for name in ("x", "col", "col_W", "dW", "db"):
        assert getattr(layer, name) is None


def test_nan_and_inf_propagate_as_in_the_reference():
    geometry = (2, 2, 6, 6, 3, 3, 3, 1, 1)
    x, W, b = _setup(geometry)
    x[0, 1, 2, 2] = np.nan
    x[1, 0, 4, 4] = np.inf
    fast, book = bpfast.Convolution(W, b, 1, 1), ref.Convolution(W, b, 1, 1)
    out, expected = fast.forward(x), book.forward(x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-12, atol=1e-12)
    dout = np.ones(out.shape)
    dx, dx_book = fast.backward(dout), book.backward(dout)
    np.testing.assert_allclose(dx, dx_book, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(fast.dW), np.isnan(book.dW))


@pytest.mark.parametrize("x", [np.arange(2 * 2 * 5 * 5).reshape(2, 2, 5, 5),
                               np.ones((1, 2, 5, 5), np.float16)], ids=["int64", "float16"])
def test_other_dtypes_take_the_reference_path(x):
    W = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    b = np.zeros(3)
    fast, book = bpfast.Convolution(W, b), ref.Convolution(W, b)
    assert_same(fast.forward(x), book.forward(x))
    dout = np.ones((x.shape[0], 3, 3, 3))
    assert_same(fast.backward(dout), book.backward(dout))
    assert_same(fast.dW, book.dW)


def test_bias_of_another_shape_takes_the_reference_path():
    x, W, _ = _setup((2, 2, 5, 5, 3, 3, 3, 1, 0))
    b = np.arange(3.0).reshape(1, 3)  # broadcasts in the book's `+ b`
    fast, book = bpfast.Convolution(W, b), ref.Convolution(W, b)
    assert_same(fast.forward(x), book.forward(x))


def test_reference_backward_matches_numerical_gradient():
    geometry = (2, 2, 5, 6, 3, 3, 2, 2, 1)
    x, W, b = _setup(geometry, seed=5)
    book = ref.Convolution(W, b, 2, 1)
    dout = np.random.default_rng(6).standard_normal(book.forward(x).shape)
    book.forward(x)
    dx = book.backward(dout)
    dW, db = book.dW.copy(), book.db.copy()

    def loss():
        return float(np.sum(book.forward(x) * dout))

    np.testing.assert_allclose(dx, numerical_gradient(loss, x), atol=1e-7)
    np.testing.assert_allclose(dW, numerical_gradient(loss, W), atol=1e-7)
    np.testing.assert_allclose(db, numerical_gradient(loss, b), atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 8),
       fn=st.integers(1, 3), fh=st.integers(1, 4), fw=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2))
def test_any_geometry(n, c, h, w, fn, fh, fw, s, p):
    x, W, b = _setup((n, c, h, w, fn, fh, fw, s, p), seed=h * 10 + w)
    fast, book = bpfast.Convolution(W, b, s, p), ref.Convolution(W, b, s, p)
    if h + 2 * p < fh or w + 2 * p < fw:
        for layer in (fast, book):
            with pytest.raises(ValueError):
                layer.forward(x)
        return
    _close(fast.forward(x), np.ascontiguousarray(book.forward(x)))
    dout = np.random.default_rng(s).standard_normal(book.forward(x).shape)
    _close(fast.backward(dout), np.ascontiguousarray(book.backward(dout)))
    _close(fast.dW, book.dW)
    _close(fast.db, book.db)


# ----------------------------------------------------------------- bad inputs (subprocess)

BAD_INPUTS = {
    "input channels differ from the filters'": """
        def inputs():
            return {"x": np.ones((2, 3, 6, 6)), "W": np.ones((4, 2, 3, 3)), "b": np.ones(4)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b).forward(x)
    """,
    "filter larger than the input": """
        def inputs():
            return {"x": np.ones((2, 1, 4, 4)), "W": np.ones((2, 1, 5, 5)), "b": np.ones(2)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b).forward(x)
    """,
    "output size not an integer, negative": """
        def inputs():
            # (4 - 5) / 2 = -0.5: the book's int() says 1 row, im2col's floor says 0
            return {"x": np.ones((1, 1, 4, 4)), "W": np.ones((2, 1, 5, 5)), "b": np.ones(2)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b, stride=2).forward(x)
    """,
    "3-D input": """
        def inputs():
            return {"x": np.ones((1, 6, 6)), "W": np.ones((2, 1, 3, 3)), "b": np.ones(2)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b).forward(x)
    """,
    "3-D filters": """
        def inputs():
            return {"x": np.ones((1, 1, 6, 6)), "W": np.ones((2, 3, 3)), "b": np.ones(2)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b).forward(x)
    """,
    "bias of the wrong length": """
        def inputs():
            return {"x": np.ones((1, 1, 6, 6)), "W": np.ones((2, 1, 3, 3)), "b": np.ones(3)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b).forward(x)
    """,
    "stride 0": """
        def inputs():
            return {"x": np.ones((1, 1, 6, 6)), "W": np.ones((2, 1, 3, 3)), "b": np.ones(2)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b, stride=0).forward(x)
    """,
    "empty batch": """
        def inputs():
            return {"x": np.ones((0, 1, 6, 6)), "W": np.ones((2, 1, 3, 3)), "b": np.ones(2)}
        def call(layers, util, x, W, b):
            layers.Convolution(W, b).forward(x)
    """,
    "backward before forward": """
        def inputs():
            return {"W": np.ones((2, 1, 3, 3)), "b": np.ones(2), "dout": np.ones((1, 2, 4, 4))}
        def call(layers, util, W, b, dout):
            layers.Convolution(W, b).backward(dout)
    """,
    "dout of the wrong shape": """
        def inputs():
            return {"x": np.ones((1, 1, 6, 6)), "W": np.ones((2, 1, 3, 3)), "b": np.ones(2),
                    "dout": np.ones((1, 2, 3, 3))}
        def call(layers, util, x, W, b, dout):
            layer = layers.Convolution(W, b)
            layer.forward(x)
            layer.backward(dout)
    """,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_like_the_reference(case):
    assert_same_error(run_bad_input(BAD_INPUTS[case]))


def test_channel_mismatch_message_names_the_shapes():
    result = run_bad_input(BAD_INPUTS["input channels differ from the filters'"])
    assert "(2, 3, 6, 6)" in result["fast"]["msg"] and "(4, 2, 3, 3)" in result["fast"]["msg"]


def test_pickle_and_copy_keep_the_lazy_col():
    import copy
    import pickle

    x, W, b = _setup((2, 2, 6, 6, 3, 3, 3, 1, 1))
    fast, book = bpfast.Convolution(W, b, 1, 1), ref.Convolution(W, b, 1, 1)
    fast.forward(x)
    book.forward(x)
    dout = np.random.default_rng(7).standard_normal((2, 3, 6, 6))
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast), copy.copy(fast)):
        assert_same(clone.col, book.col)
        _close(clone.backward(dout), np.ascontiguousarray(book.backward(dout)))
