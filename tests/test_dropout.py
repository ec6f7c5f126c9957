"""bpfast.Dropout against the book's Dropout: same masks from the same seeded stream."""

import numpy as np
import pytest

import bpfast
import bpfast.reference as ref
from bpfast._kernels import dropout as kdropout
from _conv_helpers import DTYPES, assert_same, assert_same_error, layouts, run_bad_input

SHAPES = [(100, 100), (3, 5), (1, 7), (2, 3, 4, 5), (13,), (0, 4)]


def _data(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _seeded(layer, x, seed=123, **kw):
    """Forward with a seeded global RNG; also returns the next draw (the stream position)."""
    np.random.seed(seed)
    out = layer.forward(x, **kw)
    return out, np.random.rand()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.0, 1.0])
def test_training_matches_reference(shape, dtype, ratio):
    x = _data(shape, dtype)
    fast, book = bpfast.Dropout(ratio), ref.Dropout(ratio)
    out, after = _seeded(fast, x)
    expected, after_book = _seeded(book, x)
    assert_same(out, expected)  # exact, x's dtype
    assert_same(fast.mask, book.mask)  # the same mask from the same stream...
    assert after == after_book  # ...which is left at the same position
    dout = _data(shape, dtype, seed=1)
    assert_same(fast.backward(dout), book.backward(dout))


@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_scales_and_keeps_the_mask(dtype):
    x = _data((6, 8), dtype)
    fast, book = bpfast.Dropout(0.3), ref.Dropout(0.3)
    _seeded(fast, x)
    _seeded(book, x)
    mask = fast.mask
    state = np.random.get_state()[1].copy()
    assert_same(fast.forward(x, train_flg=False), book.forward(x, train_flg=False))
    assert fast.mask is mask  # inference does not touch the mask...
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # ...nor the RNG
    dout = _data((6, 8), dtype, seed=2)
    assert_same(fast.backward(dout), book.backward(dout))  # the last training mask


def test_special_values_multiply_like_numpy():
    # x * mask multiplies by 0.0: -x gives -0.0 and inf/NaN give NaN where dropped.  NumPy
    # warns about inf * 0 ("invalid value"); bpfast gives the same values without the
    # warning (warnings are errors in this suite, so a warning from bpfast fails the test).
    x = np.array([[-1.0, -0.0, np.inf, -np.inf, np.nan, 2.0] * 4])
    fast, book = bpfast.Dropout(0.5), ref.Dropout(0.5)
    out, _ = _seeded(fast, x, seed=3)
    with np.errstate(invalid="ignore"):
        expected, _ = _seeded(book, x, seed=3)
        dx_book = book.backward(x)
    assert not book.mask.all() and book.mask.any()
    assert_same(out, expected)
    assert_same(fast.backward(x), dx_book)


def test_layouts():
    x = _data((5, 6, 7))
    book = ref.Dropout(0.4)
    expected, _ = _seeded(book, x)
    for name, xv in layouts(x):
        fast = bpfast.Dropout(0.4)
        before = xv.copy()
        assert_same(_seeded(fast, xv)[0], expected)
        assert_same(xv, before)
        for dname, dv in layouts(x):
            dbefore = dv.copy()
            assert_same(fast.backward(dv), book.backward(dv))
            assert_same(dv, dbefore)


@pytest.mark.parametrize(
    "ratio", [np.float32(0.3), np.float64(0.7), 0, 1, True, np.int64(0), float("nan")], ids=repr
)
def test_ratio_types(ratio):
    x = _data((20, 30))
    fast, book = bpfast.Dropout(ratio), ref.Dropout(ratio)
    assert_same(_seeded(fast, x)[0], _seeded(book, x)[0])
    assert_same(fast.mask, book.mask)
    assert_same(fast.forward(x, False), book.forward(x, False))


@pytest.mark.parametrize(
    "flag", [True, False, 1, 0, None, "", "False", np.True_, np.False_, np.array(1), []],
    ids=repr,
)
def test_train_flg_is_read_by_truthiness(flag):
    x = _data((4, 5))
    fast, book = bpfast.Dropout(), ref.Dropout()
    out, after = _seeded(fast, x, train_flg=flag)
    expected, after_book = _seeded(book, x, train_flg=flag)
    assert_same(out, expected)
    assert after == after_book
    assert (fast.mask is None) == (book.mask is None)


@pytest.mark.parametrize(
    "x", [np.arange(12).reshape(3, 4), np.ones((3, 4), np.float16), np.array(2.0)],
    ids=["int64", "float16", "0-d"],
)
def test_other_inputs_take_the_reference_path(x):
    fast, book = bpfast.Dropout(), ref.Dropout()
    out, after = _seeded(fast, x)
    expected, after_book = _seeded(book, x)
    assert_same(out, expected)
    assert after == after_book


def test_mask_of_another_shape_takes_the_reference_path():
    fast, book = bpfast.Dropout(), ref.Dropout()
    _seeded(fast, _data((1, 6)))
    _seeded(book, _data((1, 6)))
    dout = _data((4, 6), seed=5)  # broadcasts against the (1, 6) mask in the book
    assert_same(fast.backward(dout), book.backward(dout))


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_kernels_do_not_depend_on_the_thread_count(dtype):
    np_dtype = np.float32 if dtype == "float" else np.float64
    x = _data(1001, np_dtype)
    u = np.random.default_rng(1).random(1001)
    outs = []
    for threads in (1, 2, 3):
        out, mask, dx = np.empty(1001, np_dtype), np.empty(1001, np.uint8), np.empty(1001, np_dtype)
        kdropout.dropout_forward[dtype](x, u, 0.5, out, mask, n_threads=threads)
        kdropout.dropout_backward[dtype](x, mask, dx, n_threads=threads)
        outs.append((out, mask, dx))
    for r in outs[1:]:
        for a, b in zip(r, outs[0]):
            assert_same(a, b)


def test_kernels_reject_mismatched_buffers():
    x = np.zeros(5)
    with pytest.raises(ValueError):
        kdropout.dropout_forward["double"](x, np.zeros(4), 0.5, np.empty(5), np.empty(5, np.uint8))
    with pytest.raises(ValueError):
        kdropout.dropout_backward["double"](x, np.zeros(5, np.uint8), np.empty(6))


# ----------------------------------------------------------------- bad inputs (subprocess)

BAD_INPUTS = {
    "backward before forward": """
        def inputs():
            return {"dout": np.ones((2, 3))}
        def call(layers, util, dout):
            layers.Dropout().backward(dout)
    """,
    "train_flg an array of two": """
        def inputs():
            return {"x": np.ones((2, 3))}
        def call(layers, util, x):
            layers.Dropout().forward(x, train_flg=np.array([True, False]))
    """,
    "x a list": """
        def inputs():
            return {}
        def call(layers, util):
            layers.Dropout().forward([[1.0, 2.0]])
    """,
    "dout that does not broadcast": """
        def inputs():
            return {"x": np.ones((2, 3)), "dout": np.ones((3, 2))}
        def call(layers, util, x, dout):
            layer = layers.Dropout()
            layer.forward(x)
            layer.backward(dout)
    """,
    "ratio a string": """
        def inputs():
            return {"x": np.ones((2, 3))}
        def call(layers, util, x):
            layers.Dropout("0.5").forward(x)
    """,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_like_the_reference(case):
    assert_same_error(run_bad_input(BAD_INPUTS[case]))
