"""bpfast.Relu against the book's Relu (bpfast.reference.Relu).

Relu is exact: forward, mask and backward are compared bit for bit (NaN and signed zeros
included).  The book's backward zeroes ``dout`` in place and returns it; bpfast does the same
for every writable layout and returns a new array for a read-only ``dout`` (where the book
raises) -- a deviation listed in bpfast.layers' docstring.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _helpers import (
    SHAPES_2D,
    WRITABLE_LAYOUTS,
    assert_identical,
    float_arrays,
    float_dtypes,
    layouts,
)
from bpfast import Relu, reference as ref


def _both(x, dout):
    """(bpfast, reference) results of forward + backward on copies of the same inputs."""
    results = []
    for cls in (Relu, ref.Relu):
        layer = cls()
        d = dout.copy()
        out = layer.forward(x.copy())
        dx = layer.backward(d)
        assert dx is d
        results.append((out, layer.mask, dx))
    return results


@pytest.mark.parametrize("shape", SHAPES_2D + [(), (5,), (0,), (0, 5), (2, 3, 4, 5)],
                         ids=str)
def test_parity(rng, dtype, n_threads, shape):
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    (out, mask, dx), (rout, rmask, rdx) = _both(x, dout)
    assert type(out) is np.ndarray
    assert_identical(out, rout)
    assert_identical(mask, rmask)
    assert_identical(dx, rdx)


def test_special_values(dtype):
    x = np.array([np.nan, -np.nan, -0.0, 0.0, np.inf, -np.inf, -1.0, 1.0,
                  np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).smallest_subnormal],
                 dtype)
    layer = Relu()
    out = layer.forward(x)
    assert np.isnan(out[:2]).all()  # NaN is not <= 0: it passes, as in the book
    assert_identical(out[2:], np.array([0.0, 0.0, np.inf, 0.0, 0.0, 1.0, x[8], 0.0], dtype))
    assert not np.signbit(out[2])  # -0.0 becomes +0.0
    np.testing.assert_array_equal(layer.mask,
                                  [False, False, True, True, False, True, True, False, False,
                                   True])
    dout = np.full(x.shape, np.nan, dtype)
    dx = layer.backward(dout)
    assert_identical(dx[layer.mask], np.zeros(layer.mask.sum(), dtype))
    assert np.isnan(dx[~layer.mask]).all()
    rlayer = ref.Relu()
    assert_identical(out, rlayer.forward(x))
    assert_identical(dx, rlayer.backward(np.full(x.shape, np.nan, dtype)))


@pytest.mark.parametrize("shape", [(7, 13), (3, 4, 5)], ids=str)
def test_forward_layouts(rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    x[0] = -0.0
    x.flat[1] = np.nan
    expected = Relu().forward(x)
    expected_mask = x <= 0
    for kind, xv in layouts(x):
        before = xv.copy()
        layer = Relu()
        out = layer.forward(xv)
        assert_identical(out, expected), kind
        assert_identical(layer.mask, expected_mask), kind
        assert_identical(xv, before), kind


@pytest.mark.parametrize("kind", WRITABLE_LAYOUTS)
def test_backward_writes_into_writable_dout(rng, dtype, kind):
    x = rng.standard_normal((9, 11)).astype(dtype)
    dout = rng.standard_normal((9, 11)).astype(dtype)
    expected = np.where(x <= 0, 0, dout).astype(dtype)
    dv = dict(layouts(dout, kinds=(kind,)))[kind]
    layer = Relu()
    layer.forward(x)
    dx = layer.backward(dv)
    assert dx is dv  # the book's observable behaviour: dout itself, zeroed in place
    assert_identical(dv, expected)
    if kind in ("strided", "negative", "transposed"):
        buf = dv
        while buf.base is not None:
            buf = buf.base
        assert np.isnan(buf).sum() == buf.size - dv.size  # the gaps are untouched


@pytest.mark.parametrize("kind", ["readonly", "strided_readonly"])
def test_backward_readonly_dout_gets_new_array(rng, dtype, kind):
    x = rng.standard_normal((9, 11)).astype(dtype)
    dout = rng.standard_normal((9, 11)).astype(dtype)
    dv = dict(layouts(dout, kinds=(kind,)))[kind]
    layer = Relu()
    layer.forward(x)
    dx = layer.backward(dv)
    assert dx is not dv and not np.shares_memory(dx, dv)
    assert_identical(dx, np.where(x <= 0, 0, dout).astype(dtype))
    assert_identical(dv, dout)
    with pytest.raises(ValueError):  # the book cannot: read-only destination
        r = ref.Relu()
        r.forward(x)
        r.backward(dv)


def test_backward_broadcast_dout(dtype):
    # np.broadcast_to gives a read-only view with zero strides.
    x = np.array([[-1.0, 2.0, 3.0], [4.0, -5.0, 6.0]], dtype)
    layer = Relu()
    layer.forward(x)
    dout = np.broadcast_to(np.array([1.0, 2.0, 3.0], dtype), (2, 3))
    dx = layer.backward(dout)
    assert_identical(dx, np.array([[0.0, 2.0, 3.0], [1.0, 0.0, 3.0]], dtype))


def test_backward_other_float_dtype(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    for dout in (rng.standard_normal((4, 5)), rng.standard_normal((4, 5)).astype(np.float32)):
        a, r = Relu(), ref.Relu()
        a.forward(x)
        r.forward(x)
        assert_identical(a.backward(dout.copy()), r.backward(dout.copy()))


def test_results_not_overwritten_by_later_calls(rng, dtype):
    layer = Relu()
    x1 = rng.standard_normal((6, 7)).astype(dtype)
    out1 = layer.forward(x1)
    mask1 = layer.mask
    keep_out, keep_mask = out1.copy(), mask1.copy()
    d1 = rng.standard_normal((6, 7)).astype(dtype)
    dx1 = layer.backward(d1)
    keep_dx = dx1.copy()
    layer.forward(rng.standard_normal((6, 7)).astype(dtype))
    layer.backward(rng.standard_normal((6, 7)).astype(dtype))
    assert_identical(out1, keep_out)
    assert_identical(mask1, keep_mask)
    assert_identical(dx1, keep_dx)


@pytest.mark.parametrize("np_dtype", [np.int8, np.int32, np.int64, np.uint8, np.float16,
                                      np.bool_, ">f8", "<f4"], ids=str)
def test_other_dtypes_follow_the_book(rng, np_dtype):
    """Dtypes without kernels (and non-native byte order) give the book's results exactly."""
    x = (rng.standard_normal((5, 6)) * 10).astype(np_dtype)
    dout = (rng.standard_normal((5, 6)) * 10).astype(np_dtype)
    (out, mask, dx), (rout, rmask, rdx) = _both(x, dout)
    assert_identical(out, rout)
    assert out.dtype == np.dtype(np_dtype)
    assert_identical(mask, rmask)
    assert_identical(dx, rdx)


@given(x=float_arrays(np.float32) | float_arrays(np.float64), data=st.data())
def test_hypothesis_parity(x, data):
    dout = data.draw(float_arrays(data.draw(float_dtypes), shape=x.shape))
    (out, mask, dx), (rout, rmask, rdx) = _both(x, dout)
    assert_identical(out, rout)
    assert_identical(mask, rmask)
    assert_identical(dx, rdx)
