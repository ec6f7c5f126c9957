"""bpfast.functions against the book's common/functions.py (bpfast.reference.functions).

``sigmoid`` and ``softmax`` have kernels (compared within the dtype's tolerance, since the
exp differs); everything else is re-exported from the reference and must be the very same
function object.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given

from _helpers import (
    SHAPES_2D,
    assert_close,
    assert_identical,
    assert_same_outcome,
    float_arrays,
    layouts,
)
from bpfast import functions as fast
from bpfast.reference import functions as ref

SOFTMAX_SHAPES = SHAPES_2D + [(5,), (1,), (2, 3, 4), (1000, 10), (300, 63), (7, 64),
                              (3, 2049), (2, 1, 1, 5)]


def _ref(fn, *args):
    with np.errstate(all="ignore"):  # the book warns on overflow and on inf rows
        return fn(*args)


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_softmax_parity(rng, dtype, n_threads, shape):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    y = fast.softmax(x)
    assert type(y) is np.ndarray
    assert_close(y, ref.softmax(x))
    np.testing.assert_allclose(y.sum(axis=-1), 1, rtol=10 * np.finfo(dtype).eps * shape[-1])


def test_softmax_layouts(rng, dtype):
    x = (rng.standard_normal((6, 9)) * 5).astype(dtype)
    expected = fast.softmax(x)
    for kind, xv in layouts(x):
        before = xv.copy()
        assert_identical(fast.softmax(xv), expected), kind
        assert_identical(xv, before), kind


def test_softmax_special_values(dtype):
    x = np.array([[np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 0.0],
                  [-np.inf, -np.inf, -np.inf], [1e4, -1e4, 0.0], [-0.0, 0.0, -0.0],
                  [np.finfo(dtype).max, -np.finfo(dtype).max, 0.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fast.softmax(x)
    assert_close(y, _ref(ref.softmax, x))
    assert np.isnan(y[[0, 1, 3]]).all()
    assert_identical(y[2], np.array([0.0, 0.5, 0.5], dtype))
    assert_identical(y[4], np.array([1.0, 0.0, 0.0], dtype))
    assert_close(y[5], np.full(3, 1 / 3, dtype))


@pytest.mark.parametrize(
    "x",
    [np.array(3.0), np.empty((0, 4)), np.empty((3, 0)), [1.0, 2.0, 3.0],
     np.array([1, 2, 3]), np.array([[1, 2], [3, 4]], np.float16), np.array([1.0, 2.0], ">f8")],
    ids=["0d", "empty_batch", "no_classes", "list", "int", "float16", "big_endian"],
)
def test_softmax_other_inputs_follow_the_book(x):
    assert_same_outcome(fast.softmax, ref.softmax, x)


@pytest.mark.parametrize("shape", [(), (1,), (7,), (7, 13), (33, 1001), (2, 3, 4)], ids=str)
def test_sigmoid_parity(rng, dtype, n_threads, shape):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    y = fast.sigmoid(x)
    r = ref.sigmoid(x)
    assert type(y) is type(r)  # a NumPy scalar for 0-d input
    assert_close(y, r)
    assert_close(fast.sigmoid_grad(x), ref.sigmoid_grad(x))


def test_sigmoid_layouts_and_no_warning(rng, dtype):
    x = (rng.standard_normal((5, 8)) * 500).astype(dtype)
    x[0, 0] = -1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = fast.sigmoid(x)
        for kind, xv in layouts(x):
            assert_identical(fast.sigmoid(xv), expected), kind
    assert expected[0, 0] == 0.0
    assert_close(expected, _ref(ref.sigmoid, x))


@pytest.mark.parametrize("x", [3.0, -1000.0, [1.0, -2.0], np.array([1, -800]),
                               np.array([1.0, -20.0], np.float16)], ids=str)
def test_sigmoid_other_inputs_follow_the_book(x):
    assert_same_outcome(fast.sigmoid, ref.sigmoid, x)


def test_softmax_loss(rng, dtype):
    x = rng.standard_normal((8, 5)).astype(dtype)
    t = rng.integers(0, 5, 8)
    loss = fast.softmax_loss(x, t)
    r = ref.softmax_loss(x, t)
    assert type(loss) is type(r) is dtype.type
    assert_close(loss, r, scale=20)


@pytest.mark.parametrize("name", ["identity_function", "step_function", "relu", "relu_grad",
                                  "sum_squared_error", "mean_squared_error",
                                  "cross_entropy_error"])
def test_reexports_are_the_books_functions(name):
    assert getattr(fast, name) is getattr(ref, name)


def test_mean_squared_error_is_the_old_name():
    assert fast.mean_squared_error is fast.sum_squared_error


@given(x=float_arrays(np.float32, min_dims=1, max_dims=2) | float_arrays(np.float64, min_dims=1,
                                                                          max_dims=2))
def test_hypothesis_softmax_and_sigmoid(x):
    if x.shape[-1] == 0:  # no classes: the book's max raises, and so does bpfast
        assert_same_outcome(fast.softmax, ref.softmax, x)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = fast.softmax(x)
        assert_close(y, _ref(ref.softmax, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = fast.sigmoid(x)
    assert_close(s, _ref(ref.sigmoid, x))
