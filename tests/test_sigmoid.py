"""bpfast.Sigmoid against the book's Sigmoid (bpfast.reference.Sigmoid).

The forward pass uses bpfast's own vectorised exp (< 2 ulp), NumPy uses its own: outputs are
compared within the dtype's tolerance.  The backward pass has the book's operation order and
is compared bit for bit, given the same cached ``out``.  Very negative inputs give exactly
0.0 like the book but without NumPy's overflow warning (warnings are errors in this suite).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _helpers import (
    SHAPES_2D,
    assert_close,
    assert_identical,
    float_arrays,
    float_dtypes,
    layouts,
)
from bpfast import Sigmoid, reference as ref


def _ref_forward(layer, x):
    with np.errstate(over="ignore"):  # the book's naive sigmoid warns below about -709
        return layer.forward(x)


@pytest.mark.parametrize("shape", SHAPES_2D + [(), (5,), (0,), (0, 3), (2, 3, 4, 5)],
                         ids=str)
def test_parity(rng, dtype, n_threads, shape):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    layer, rlayer = Sigmoid(), ref.Sigmoid()
    out = layer.forward(x)
    rout = _ref_forward(rlayer, x)
    assert type(out) is type(rout)  # ndarray; a NumPy scalar for 0-d input, as in the book
    assert out is layer.out  # the book returns its cached array
    assert_close(out, rout)
    dx = layer.backward(dout)
    rdx = rlayer.backward(dout)
    assert type(dx) is type(rdx)
    assert_close(dx, rdx)
    # Same cached output -> the backward formula is bit-identical to the book's.
    rlayer.out = out.copy()
    assert_identical(dx, rlayer.backward(dout))


@pytest.mark.parametrize("out_dtype,dout_dtype",
                         [(np.float32, np.float64), (np.float64, np.float32)])
def test_backward_mixed_dtypes(rng, out_dtype, dout_dtype):
    """NumPy promotion as in the book, including (1.0 - out) rounded in out's dtype."""
    x = rng.standard_normal((8, 9)).astype(out_dtype)
    dout = rng.standard_normal((8, 9)).astype(dout_dtype)
    layer, rlayer = Sigmoid(), ref.Sigmoid()
    rlayer.out = layer.forward(x).copy()
    dx = layer.backward(dout)
    assert dx.dtype == np.float64
    assert_identical(dx, rlayer.backward(dout))


def test_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1000.0, 1000.0, -50.0,
                  np.finfo(dtype).smallest_subnormal, np.finfo(dtype).max,
                  -np.finfo(dtype).max], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # also without pytest's filterwarnings
        out = Sigmoid().forward(x)
    assert np.isnan(out[0])
    assert_identical(out[1:7], np.array([1.0, 0.0, 0.5, 0.5, 0.0, 1.0], dtype))
    assert_identical(out[8:], np.array([0.5, 1.0, 0.0], dtype))
    assert_close(out, _ref_forward(ref.Sigmoid(), x))


@pytest.mark.parametrize("value", [-1000.0, -200.0, -746.0, -1e30])
def test_large_negative_gives_zero_without_warning(dtype, value):
    x = np.full((3, 4), value, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Sigmoid().forward(x)
    expected = _ref_forward(ref.Sigmoid(), x)
    assert_identical(out, expected)
    if value <= -746.0:
        assert (out == 0.0).all()


def test_forward_backward_layouts(rng, dtype):
    x = (rng.standard_normal((7, 13)) * 4).astype(dtype)
    dout = rng.standard_normal((7, 13)).astype(dtype)
    layer = Sigmoid()
    expected = layer.forward(x)
    expected_dx = layer.backward(dout)
    for kind, xv in layouts(x):
        before = xv.copy()
        out = layer.forward(xv)
        assert_identical(out, expected), kind
        assert_identical(xv, before), kind
    for kind, dv in layouts(dout):
        before = dv.copy()
        assert_identical(layer.backward(dv), expected_dx), kind
        assert_identical(dv, before), kind
    # The cached output in another layout (a user may set it): same gradient.
    for kind, ov in layouts(expected):
        layer.out = ov
        assert_identical(layer.backward(dout), expected_dx), kind


def test_results_not_overwritten_by_later_calls(rng, dtype):
    layer = Sigmoid()
    out1 = layer.forward(rng.standard_normal((5, 6)).astype(dtype))
    dout = rng.standard_normal((5, 6)).astype(dtype)
    dx1 = layer.backward(dout)
    keep_out, keep_dx, keep_dout = out1.copy(), dx1.copy(), dout.copy()
    out2 = layer.forward(rng.standard_normal((5, 6)).astype(dtype))
    dx2 = layer.backward(dout)
    assert out2 is not out1 and dx2 is not dx1
    assert_identical(out1, keep_out)
    assert_identical(dx1, keep_dx)
    assert_identical(dout, keep_dout)


def test_backward_broadcasting_dout_follows_the_book(rng, dtype):
    x = rng.standard_normal((4, 5)).astype(dtype)
    dout = rng.standard_normal((1, 5)).astype(dtype)
    layer, rlayer = Sigmoid(), ref.Sigmoid()
    rlayer.out = layer.forward(x).copy()
    assert_identical(layer.backward(dout), rlayer.backward(dout))


@pytest.mark.parametrize("np_dtype", [np.int8, np.int64, np.uint8, np.float16, ">f8"],
                         ids=str)
def test_other_dtypes_follow_the_book(rng, np_dtype):
    x = (rng.standard_normal((5, 6)) * 20).astype(np_dtype)
    dout = rng.standard_normal((5, 6)).astype(np_dtype)
    layer, rlayer = Sigmoid(), ref.Sigmoid()
    with np.errstate(over="ignore"):
        out = layer.forward(x)
        rout = rlayer.forward(x)
    assert_identical(out, rout)
    assert_identical(layer.backward(dout), rlayer.backward(dout))


@given(x=float_arrays(np.float32) | float_arrays(np.float64), data=st.data())
def test_hypothesis_parity(x, data):
    dout = data.draw(float_arrays(data.draw(float_dtypes), shape=x.shape))
    layer, rlayer = Sigmoid(), ref.Sigmoid()
    out = layer.forward(x)
    with np.errstate(over="ignore"):
        assert_close(out, rlayer.forward(x))
    rlayer.out = out.copy()
    with np.errstate(all="ignore"):  # inf * 0 in the book's formula
        expected = rlayer.backward(dout)
        assert_identical(layer.backward(dout), expected)
