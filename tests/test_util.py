"""bpfast.util (the book's common/util.py): im2col/col2im parity with the reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpfast.reference.util as ref_util
import bpfast.util as util
from bpfast._kernels import im2col as kim2col
from _conv_helpers import DTYPES, assert_same, assert_same_error, layouts, run_bad_input

# (N, C, H, W, filter_h, filter_w, stride, pad)
GEOMETRIES = [
    (100, 1, 28, 28, 5, 5, 1, 0),  # SimpleConvNet's first layer
    (2, 3, 7, 6, 3, 2, 1, 0),  # non-square filter, multi-channel
    (3, 2, 9, 8, 3, 3, 2, 1),  # stride 2, pad 1
    (1, 1, 5, 5, 5, 5, 1, 0),  # batch of one, filter = input, one output pixel
    (2, 2, 6, 7, 2, 3, 3, 2),  # stride 3, pad 2, non-square everything
    (2, 1, 4, 4, 3, 3, 1, 3),  # pad larger than the filter: whole rows of padding
    (1, 4, 8, 8, 1, 1, 2, 0),  # 1x1 filter with stride
    (2, 3, 5, 9, 4, 2, 2, 1),  # stride that does not divide: output size truncates
]


def _inputs(geometry, dtype, seed=0):
    n, c, h, w, fh, fw, s, p = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    oh, ow = (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1
    col = rng.standard_normal((n * oh * ow, c * fh * fw)).astype(dtype)
    return x, col


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_matches_reference(geometry, dtype):
    n, c, h, w, fh, fw, s, p = geometry
    x, _ = _inputs(geometry, dtype)
    expected = ref_util.im2col(x, fh, fw, s, p)
    for name, xv in layouts(x):
        before = xv.copy()
        col = util.im2col(xv, fh, fw, s, p)
        assert_same(col, expected)  # exact: a copy, float64 as in the book
        assert col.flags.c_contiguous, name
        assert_same(xv, before)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im_matches_reference(geometry, dtype):
    n, c, h, w, fh, fw, s, p = geometry
    _, col = _inputs(geometry, dtype)
    expected = ref_util.col2im(col, (n, c, h, w), fh, fw, s, p)
    for name, cv in layouts(col):
        before = cv.copy()
        img = util.col2im(cv, (n, c, h, w), fh, fw, s, p)
        # Exact in float64: the same additions in the same order.  The book returns a
        # non-contiguous view, bpfast a C-contiguous array with the same values.
        assert_same(img, expected)
        assert img.flags.c_contiguous, name
        assert_same(cv, before)


def test_col2im_reads_any_shape_of_the_right_size():
    geometry = (2, 2, 6, 5, 3, 2, 1, 1)
    n, c, h, w, fh, fw, s, p = geometry
    _, col = _inputs(geometry, np.float64)
    expected = ref_util.col2im(col, (n, c, h, w), fh, fw, s, p)
    for shaped in (col.ravel(), col.reshape(n, -1, c * fh * fw), col.reshape(-1, fh)):
        assert_same(util.col2im(shaped, [n, c, h, w], fh, fw, s, p), expected)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(geometry):
    # <im2col(x), col> == <x, col2im(col)>: col2im sums overlaps, it does not invert.
    n, c, h, w, fh, fw, s, p = geometry
    x, col = _inputs(geometry, np.float64, seed=1)
    lhs = np.vdot(util.im2col(x, fh, fw, s, p), col)
    rhs = np.vdot(x, util.col2im(col, x.shape, fh, fw, s, p))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


def test_nan_and_inf_propagate_as_in_the_reference():
    geometry = (2, 2, 6, 6, 3, 3, 1, 1)
    n, c, h, w, fh, fw, s, p = geometry
    x, col = _inputs(geometry, np.float64)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 0, 0] = np.inf
    x[1, 1, 5, 5] = -np.inf
    col[3, 4] = np.nan
    col[7, 0] = np.inf
    col[8, 8] = -np.inf  # inf + -inf on an overlapping pixel -> NaN in both
    assert_same(util.im2col(x, fh, fw, s, p), ref_util.im2col(x, fh, fw, s, p))
    assert_same(util.col2im(col, x.shape, fh, fw, s, p),
                ref_util.col2im(col, x.shape, fh, fw, s, p))


@pytest.mark.parametrize(
    "x",
    [
        np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5),  # int64: the book's code
        np.ones((1, 2, 4, 4), np.float16),
        np.ones((1, 2, 4, 4), bool),
    ],
    ids=["int64", "float16", "bool"],
)
def test_other_dtypes_take_the_reference_path(x):
    assert_same(util.im2col(x, 3, 2, 1, 1), ref_util.im2col(x, 3, 2, 1, 1))


def test_numpy_integer_geometry_arguments():
    x, _ = _inputs((2, 2, 6, 6, 3, 3, 2, 1), np.float64)
    args = (np.int64(3), np.int32(3), np.int8(2), np.uint8(1))
    assert_same(util.im2col(x, *args), ref_util.im2col(x, *args))
    col = ref_util.im2col(x, *args)
    assert_same(util.col2im(col, np.array(x.shape), *args),
                ref_util.col2im(col, x.shape, *args))


def test_helpers_are_the_books():
    assert util.conv_output_size is ref_util.conv_output_size
    assert util.shuffle_dataset is ref_util.shuffle_dataset
    assert util.smooth_curve is ref_util.smooth_curve
    assert util.conv_output_size(28, 5, 2, 0) == 12.5  # true division, as in the book


def test_reference_helpers():
    # shuffle_dataset: one permutation draw from the global RNG, x and t permuted alike.
    x = np.arange(20.0).reshape(10, 2)
    t = np.arange(10)
    np.random.seed(5)
    xs, ts = ref_util.shuffle_dataset(x, t)
    np.random.seed(5)
    perm = np.random.permutation(10)
    assert_same(xs, x[perm])
    assert_same(ts, t[perm])
    x4 = np.arange(10 * 2 * 2 * 2.0).reshape(10, 2, 2, 2)
    np.random.seed(5)
    assert_same(ref_util.shuffle_dataset(x4, t)[0], x4[perm])
    # smooth_curve: same length, a constant stays constant, a linear ramp inside stays.
    y = ref_util.smooth_curve(np.full(30, 2.5))
    assert y.shape == (30,)
    np.testing.assert_allclose(y, 2.5)
    ramp = ref_util.smooth_curve(np.arange(40.0))
    np.testing.assert_allclose(ramp[5:-5], np.arange(40.0)[5:-5])


@pytest.mark.parametrize("kernel", ["im2col", "col2im", "im2col_nkp", "col2im_nkp"])
@pytest.mark.parametrize("dtype", ["float", "double"])
def test_kernels_do_not_depend_on_the_thread_count(kernel, dtype):
    geometry = (7, 3, 9, 8, 3, 2, 2, 1)
    n, c, h, w, fh, fw, s, p = geometry
    np_dtype = np.float32 if dtype == "float" else np.float64
    x, col = _inputs(geometry, np_dtype)
    oh, ow = (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1
    f = getattr(kim2col, kernel)[dtype]
    results = []
    for threads in (1, 2, 3):
        if kernel == "im2col":
            out = np.empty((n * oh * ow, c * fh * fw))
            f(x, fh, fw, s, p, out, n_threads=threads)
        elif kernel == "im2col_nkp":
            out = np.empty((n, c * fh * fw + 1, oh * ow))
            f(x, fh, fw, s, p, out, n_threads=threads)
        elif kernel == "col2im":
            out = np.empty(x.shape)
            f(col, fh, fw, s, p, out, n_threads=threads)
        else:
            colt = np.ascontiguousarray(col.reshape(n, oh * ow, -1).transpose(0, 2, 1))
            out = np.empty(x.shape)
            f(colt, fh, fw, s, p, out, n_threads=threads)
        results.append(out)
    for r in results[1:]:
        assert_same(r, results[0])


def test_per_sample_layout_is_the_book_layout_transposed():
    geometry = (3, 2, 7, 9, 3, 2, 2, 1)
    n, c, h, w, fh, fw, s, p = geometry
    x, col = _inputs(geometry, np.float64)
    oh, ow = (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1
    k = c * fh * fw
    colt = np.empty((n, k + 1, oh * ow))
    kim2col.im2col_nkp["double"](x, fh, fw, s, p, colt)
    assert_same(colt[:, :k].transpose(0, 2, 1).reshape(n * oh * ow, k),
                ref_util.im2col(x, fh, fw, s, p))
    assert (colt[:, k] == 1.0).all()  # the bias row
    colt = np.ascontiguousarray(col.reshape(n, oh * ow, k).transpose(0, 2, 1))
    img = np.empty(x.shape)
    kim2col.col2im_nkp["double"](colt, fh, fw, s, p, img)
    assert_same(img, ref_util.col2im(col, x.shape, fh, fw, s, p))


def test_kernels_reject_mismatched_buffers():
    x = np.zeros((2, 1, 6, 6))
    f = kim2col.im2col["double"]
    with pytest.raises(ValueError):
        f(x, 3, 3, 1, 0, np.empty((2 * 16, 8)))  # wrong column count
    with pytest.raises(ValueError):
        f(x, 7, 3, 1, 0, np.empty((0, 9)))  # filter larger than the input
    with pytest.raises(ValueError):
        f(x, 3, 3, 0, 0, np.empty((32, 9)))  # stride 0
    with pytest.raises(ValueError):
        kim2col.col2im["double"](np.empty((31, 9)), 3, 3, 1, 0, np.empty((2, 1, 6, 6)))
    with pytest.raises(ValueError):
        kim2col.im2col_nkp["double"](x, 3, 3, 1, 0, np.empty((2, 11, 16)))
    with pytest.raises(ValueError):
        kim2col.col2im_nkp["double"](np.empty((2, 8, 16)), 3, 3, 1, 0, np.empty((2, 1, 6, 6)))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
    fh=st.integers(1, 5), fw=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3),
)
def test_im2col_col2im_any_geometry(n, c, h, w, fh, fw, s, p):
    rng = np.random.default_rng(n * 1000 + h * 10 + w)
    x = rng.standard_normal((n, c, h, w))
    if h + 2 * p < fh or w + 2 * p < fw:
        # No output: the book raises (ValueError); bpfast runs the book's code.
        with pytest.raises(ValueError):
            ref_util.im2col(x, fh, fw, s, p)
        with pytest.raises(ValueError):
            util.im2col(x, fh, fw, s, p)
        return
    col = ref_util.im2col(x, fh, fw, s, p)
    assert_same(util.im2col(x, fh, fw, s, p), col)
    dcol = rng.standard_normal(col.shape)
    assert_same(util.col2im(dcol, x.shape, fh, fw, s, p),
                ref_util.col2im(dcol, x.shape, fh, fw, s, p))


# ----------------------------------------------------------------- bad inputs (subprocess)

BAD_INPUTS = {
    "filter larger than the input": """
        def inputs():
            return {"x": np.ones((2, 1, 4, 4))}
        def call(layers, util, x):
            util.im2col(x, 5, 5, 1, 0)
    """,
    "filter larger than the input, stride 2": """
        def inputs():
            return {"x": np.ones((2, 1, 4, 4))}
        def call(layers, util, x):
            util.im2col(x, 5, 5, 2, 0)
    """,
    "3-D input": """
        def inputs():
            return {"x": np.ones((1, 4, 4))}
        def call(layers, util, x):
            util.im2col(x, 2, 2)
    """,
    "stride 0": """
        def inputs():
            return {"x": np.ones((1, 1, 4, 4))}
        def call(layers, util, x):
            util.im2col(x, 2, 2, 0)
    """,
    "float stride": """
        def inputs():
            return {"x": np.ones((1, 1, 4, 4))}
        def call(layers, util, x):
            util.im2col(x, 2, 2, 1.5)
    """,
    "col of the wrong size": """
        def inputs():
            return {"col": np.ones((9, 5))}
        def call(layers, util, col):
            util.col2im(col, (1, 1, 4, 4), 2, 2)
    """,
    "input_shape of three dims": """
        def inputs():
            return {"col": np.ones((9, 4))}
        def call(layers, util, col):
            util.col2im(col, (1, 4, 4), 2, 2)
    """,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_like_the_reference(case):
    assert_same_error(run_bad_input(BAD_INPUTS[case]))
