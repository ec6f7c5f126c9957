"""bpfast.BatchNormalization against the book's BatchNormalization."""

import numpy as np
import pytest

import bpfast
import bpfast.reference as ref
from bpfast._kernels import batch_normalization as kbn
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

SHAPES = [(100, 100), (100, 30, 24, 24), (7, 13), (1, 5), (3, 2, 3, 4), (64, 3000), (2, 1)]


def _data(shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (3.0 * rng.standard_normal(shape) + 1.0).astype(dtype)


def _params(d, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    return (1.0 + 0.1 * rng.standard_normal(d)).astype(dtype), rng.standard_normal(d).astype(dtype)


def _check(actual, expected, dtype):
    """Bit-exact for float64 (same operations, same order); float32 to its rounding."""
    if np.dtype(dtype) == np.float64:
        assert_same(actual, expected)
    else:
        assert_same(actual, expected, rtol=RTOL[np.dtype(dtype)],
                    atol=scale_atol(expected, np.float32))


ATTRIBUTES = ("input_shape", "batch_size", "xc", "xn", "std", "running_mean", "running_var")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_training_step_matches_reference(shape, dtype):
    x = _data(shape, dtype)
    d = x[0].size
    gamma, beta = _params(d, dtype)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    _check(fast.forward(x), book.forward(x), dtype)
    for name in ATTRIBUTES:
        a, e = getattr(fast, name), getattr(book, name)
        if isinstance(e, np.ndarray):
            _check(a, e, dtype)
        else:
            assert a == e, name
    dout = _data(shape, dtype, seed=2)
    _check(fast.backward(dout), book.backward(dout), dtype)
    _check(fast.dgamma, book.dgamma, dtype)
    _check(fast.dbeta, book.dbeta, dtype)


@pytest.mark.parametrize("shape", [(50, 20), (8, 3, 4, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.8, np.float32(0.7), np.float64(0.9), 1, 0],
                         ids=repr)
def test_running_statistics_sequence(shape, dtype, momentum):
    d = int(np.prod(shape[1:]))
    gamma, beta = _params(d, dtype)
    rm0, rv0 = np.full(d, 0.5), np.full(d, 2.0)
    fast = bpfast.BatchNormalization(gamma, beta, momentum=momentum, running_mean=rm0.copy(),
                                     running_var=rv0.copy())
    book = ref.BatchNormalization(gamma, beta, momentum=momentum, running_mean=rm0.copy(),
                                  running_var=rv0.copy())
    given_mean = fast.running_mean
    seen = []
    for step in range(5):
        x = _data(shape, dtype, seed=10 + step)
        _check(fast.forward(x, train_flg=True), book.forward(x, train_flg=True), dtype)
        _check(fast.running_mean, book.running_mean, dtype)
        _check(fast.running_var, book.running_var, dtype)
        seen.append(fast.running_mean)
        xt = _data(shape, dtype, seed=20 + step)
        _check(fast.forward(xt, train_flg=False), book.forward(xt, train_flg=False), dtype)
    # Re-bound at every step: new arrays, the caller's array untouched.
    assert len({id(a) for a in seen}) == len(seen)
    assert_same(given_mean, rm0)
    assert fast.running_mean.dtype == book.running_mean.dtype


def test_running_statistics_of_another_dtype_take_numpy():
    gamma, beta = _params(6)
    rm = np.zeros(6, np.float32)
    fast = bpfast.BatchNormalization(gamma, beta, running_mean=rm.copy(), running_var=rm.copy())
    book = ref.BatchNormalization(gamma, beta, running_mean=rm.copy(), running_var=rm.copy())
    x = _data((5, 6))
    assert_same(fast.forward(x), book.forward(x))
    assert_same(fast.running_mean, book.running_mean)
    assert_same(fast.running_var, book.running_var)


def test_first_call_in_inference_mode():
    x = _data((4, 6))
    gamma, beta = np.ones(6), np.zeros(6)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    out = fast.forward(x, train_flg=False)
    assert_same(out, book.forward(x, train_flg=False))
    np.testing.assert_allclose(out, x / 0.001)  # zero running statistics, eps 1e-6
    assert_same(fast.running_mean, np.zeros(6))
    assert fast.xc is None  # inference caches nothing


def test_backward_uses_stale_training_statistics():
    gamma, beta = _params(10)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    x = _data((8, 10))
    fast.forward(x)
    book.forward(x)
    xt = _data((8, 10), seed=5)
    fast.forward(xt, train_flg=False)
    book.forward(xt, train_flg=False)
    dout = _data((8, 10), seed=6)
    assert_same(fast.backward(dout), book.backward(dout))
    assert_same(fast.dgamma, book.dgamma)


def test_xn_exists_after_a_training_forward_only():
    gamma, beta = _params(4)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    assert not hasattr(fast, "xn") and not hasattr(book, "xn")
    x = _data((5, 4))
    fast.forward(x, train_flg=False)
    book.forward(x, train_flg=False)
    assert not hasattr(fast, "xn") and not hasattr(book, "xn")
    fast.forward(x)
    book.forward(x)
    assert_same(fast.xn, book.xn)
    assert fast.xn is fast.xn  # computed once


def test_assigned_xn_is_what_backward_uses():
    gamma, beta = _params(4)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    x = _data((5, 4))
    fast.forward(x)
    book.forward(x)
    fast.xn = book.xn * 2.0
    book.xn = book.xn * 2.0
    dout = _data((5, 4), seed=9)
    assert_same(fast.backward(dout), book.backward(dout))
    assert_same(fast.dgamma, book.dgamma)
    fast.forward(x)
    book.forward(x)
    fast.xc = book.xc + 1.0  # re-bound xc: xn stays the forward's xc / std, as in the book
    book.xc = book.xc + 1.0
    assert_same(fast.backward(dout), book.backward(dout))
    assert_same(fast.dgamma, book.dgamma)


def test_gamma_and_beta_are_read_live():
    gamma, beta = _params(10)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    x = _data((8, 10))
    fast.forward(x)
    book.forward(x)
    gamma *= 3.0  # in place, as an optimizer does
    beta -= 1.0
    assert_same(fast.forward(x), book.forward(x))
    dout = _data((8, 10), seed=6)
    assert_same(fast.backward(dout), book.backward(dout))


@pytest.mark.parametrize("combo", ["f32 x, f64 gamma", "f64 x, f32 gamma", "f32 dout"])
def test_mixed_dtypes_follow_numpy_promotion(combo):
    shape = (16, 3, 2, 2)
    x = _data(shape, np.float32 if combo.startswith("f32 x") else np.float64)
    gamma, beta = _params(12, np.float32 if combo == "f64 x, f32 gamma" else np.float64)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    out, expected = fast.forward(x), book.forward(x)
    assert out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    dout = _data(shape, np.float32 if combo == "f32 dout" else expected.dtype, seed=3)
    dx, dx_book = fast.backward(dout), book.backward(dout)
    for a, e in ((dx, dx_book), (fast.dgamma, book.dgamma), (fast.dbeta, book.dbeta)):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)
    out_t, expected_t = fast.forward(x, False), book.forward(x, False)
    assert out_t.dtype == expected_t.dtype
    np.testing.assert_allclose(out_t, expected_t, rtol=1e-5, atol=1e-5)


def test_batch_of_one():
    gamma, beta = _params(5)
    fast = bpfast.BatchNormalization(gamma, beta)
    x = _data((1, 5))
    assert_same(fast.forward(x), beta.reshape(1, 5))  # xc = 0: the output is beta exactly
    assert not fast.backward(np.ones((1, 5))).any()


def test_layouts():
    shape = (6, 3, 4, 5)
    x = _data(shape)
    gamma, beta = _params(60)
    book = ref.BatchNormalization(gamma, beta)
    expected = book.forward(x)
    dout = _data(shape, seed=4)
    dx = book.backward(dout)
    for name, xv in layouts(x):
        fast = bpfast.BatchNormalization(gamma, beta)
        before = xv.copy()
        assert_same(fast.forward(xv), expected)
        assert_same(xv, before)
        for dname, dv in layouts(dout):
            dbefore = dv.copy()
            assert_same(fast.backward(dv), dx)
            assert_same(dv, dbefore)


def test_nan_and_inf_propagate_as_in_the_reference():
    x = _data((6, 4))
    x[2, 1] = np.nan
    x[3, 2] = np.inf
    gamma, beta = _params(4)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    with np.errstate(invalid="ignore"):
        expected = book.forward(x)
        assert_same(fast.forward(x), expected)
        dout = _data((6, 4), seed=3)
        assert_same(fast.backward(dout), book.backward(dout))
        assert_same(fast.dgamma, book.dgamma)


def test_per_channel_gamma_takes_the_books_path():
    # The book normalises 4-D input per activation, so gamma needs C*H*W entries; a gamma of
    # shape (1, D) still broadcasts and goes through NumPy for the scale and shift.
    x = _data((4, 2, 3, 3))
    gamma, beta = _params(18)
    fast = bpfast.BatchNormalization(gamma.reshape(1, 18), beta.reshape(1, 18))
    book = ref.BatchNormalization(gamma.reshape(1, 18), beta.reshape(1, 18))
    assert_same(fast.forward(x), book.forward(x))
    dout = _data(x.shape, seed=2)
    assert_same(fast.backward(dout), book.backward(dout))


@pytest.mark.parametrize(
    "flag", [True, False, 1, 0, None, "", "False", np.True_, np.False_, np.array(1.0), []],
    ids=repr,
)
def test_train_flg_is_read_by_truthiness(flag):
    gamma, beta = _params(5)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    x = _data((4, 5))
    assert_same(fast.forward(x, flag), book.forward(x, flag))
    assert (fast.xc is None) == (book.xc is None)


def test_reference_backward_matches_numerical_gradient():
    x = _data((5, 2, 2, 2), seed=7)
    gamma, beta = _params(8)
    book = ref.BatchNormalization(gamma, beta)
    dout = _data(x.shape, seed=8)
    book.forward(x)
    dx = book.backward(dout)
    dgamma, dbeta = book.dgamma.copy(), book.dbeta.copy()

    def loss():
        return float(np.sum(book.forward(x) * dout))

    np.testing.assert_allclose(dx, numerical_gradient(loss, x), atol=1e-7)
    np.testing.assert_allclose(dgamma, numerical_gradient(loss, gamma), atol=1e-7)
    np.testing.assert_allclose(dbeta, numerical_gradient(loss, beta), atol=1e-7)


@pytest.mark.parametrize("x", [np.arange(12).reshape(4, 3), np.ones((4, 3), np.float16)],
                         ids=["int64", "float16"])
def test_other_dtypes_take_the_reference_path(x):
    gamma, beta = _params(3)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    assert_same(fast.forward(x), book.forward(x))
    assert_same(fast.backward(np.ones((4, 3))), book.backward(np.ones((4, 3))))


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_kernels_do_not_depend_on_the_thread_count(dtype):
    np_dtype = np.float32 if dtype == "float" else np.float64
    x = _data((9, 4000), np_dtype)  # several column blocks
    gamma, beta = _params(4000, np_dtype)
    dout = _data((9, 4000), np_dtype, seed=3)
    results = []
    for threads in (1, 2, 3):
        d = 4000
        stats = [np.empty(d, np_dtype) for _ in range(3)]
        xc, xn, out = (np.empty(x.shape, np_dtype) for _ in range(3))
        kbn.bn_forward_train[dtype](x, *stats, xc, xn, gamma, beta, out, n_threads=threads)
        dx, dg, db = np.empty(x.shape, np_dtype), np.empty(d, np_dtype), np.empty(d, np_dtype)
        kbn.bn_backward[dtype](dout, xn, xc, stats[2], gamma, 9, dx, dg, db, n_threads=threads)
        inf = np.empty(x.shape)
        kbn.bn_forward_infer[dtype](x, np.abs(stats[0]).astype(np.float64),
                                    stats[1].astype(np.float64), gamma.astype(np.float64),
                                    beta.astype(np.float64), inf, n_threads=threads)
        results.append((*stats, xc, xn, out, dx, dg, db, inf))
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            assert_same(a, b)


def test_kernels_reject_mismatched_buffers():
    x = np.zeros((4, 3))
    v = np.zeros(3)
    f = kbn.bn_forward_train["double"]
    with pytest.raises(ValueError):
        f(x, v, v, np.zeros(2), x.copy(), x.copy(), v, v, x.copy())
    with pytest.raises(ValueError):
        f(x, v, v, v, x.copy(), np.zeros((4, 2)), v, v, x.copy())
    with pytest.raises(ValueError):
        f(x, v, v, v, x.copy(), x.copy(), None, None, x.copy())  # out without gamma/beta
    with pytest.raises(ValueError):
        kbn.bn_backward["double"](x, x, x, v, v, 5, x.copy(), v.copy(), v.copy())  # batch size
    with pytest.raises(ValueError):
        kbn.bn_forward_infer["double"](x, v, np.zeros(4), v, v, x.copy())
    # Outputs must not overlap other arguments (the C loops assume it).
    xc = x.copy()
    with pytest.raises(ValueError):
        f(x, v.copy(), v.copy(), v.copy(), xc, xc, v, v, x.copy())
    with pytest.raises(ValueError):
        f(x, v.copy(), v.copy(), v.copy(), x.copy(), None, v, v, x)  # out is x
    dout = np.ones((4, 3))
    with pytest.raises(ValueError):
        kbn.bn_backward["double"](dout, None, x, np.ones(3), v, 4, dout, v.copy(), np.zeros(3))
    buf = np.zeros(6)
    with pytest.raises(ValueError):
        kbn.bn_backward["double"](dout, None, x, np.ones(3), v, 4, x.copy(), buf[:3], buf[2:5])


# ----------------------------------------------------------------- bad inputs (subprocess)

BAD_INPUTS = {
    "3-D input": """
        def inputs():
            return {"x": np.ones((2, 3, 4)), "g": np.ones(12), "b": np.zeros(12)}
        def call(layers, util, x, g, b):
            layers.BatchNormalization(g, b).forward(x)
    """,
    "1-D input": """
        def inputs():
            return {"x": np.ones(5), "g": np.ones(5), "b": np.zeros(5)}
        def call(layers, util, x, g, b):
            layers.BatchNormalization(g, b).forward(x)
    """,
    "per-channel gamma on 4-D input": """
        def inputs():
            return {"x": np.ones((2, 3, 4, 4)), "g": np.ones(3), "b": np.zeros(3)}
        def call(layers, util, x, g, b):
            layers.BatchNormalization(g, b).forward(x)
    """,
    "gamma of the wrong length, inference": """
        def inputs():
            return {"x": np.ones((2, 6)), "g": np.ones(5), "b": np.zeros(5)}
        def call(layers, util, x, g, b):
            layers.BatchNormalization(g, b).forward(x, train_flg=False)
    """,
    "running statistics of the wrong length": """
        def inputs():
            return {"x": np.ones((2, 6)), "g": np.ones(6), "b": np.zeros(6),
                    "rm": np.zeros(4), "rv": np.ones(4)}
        def call(layers, util, x, g, b, rm, rv):
            layers.BatchNormalization(g, b, running_mean=rm, running_var=rv).forward(x)
    """,
    "train_flg an array of two": """
        def inputs():
            return {"x": np.ones((2, 6)), "g": np.ones(6), "b": np.zeros(6)}
        def call(layers, util, x, g, b):
            layers.BatchNormalization(g, b).forward(x, train_flg=np.array([True, False]))
    """,
    "backward before forward": """
        def inputs():
            return {"g": np.ones(6), "b": np.zeros(6), "dout": np.ones((2, 6))}
        def call(layers, util, g, b, dout):
            layers.BatchNormalization(g, b).backward(dout)
    """,
    "dout of another batch size": """
        def inputs():
            return {"x": np.ones((4, 6)), "g": np.ones(6), "b": np.zeros(6),
                    "dout": np.ones((3, 6))}
        def call(layers, util, x, g, b, dout):
            layer = layers.BatchNormalization(g, b)
            layer.forward(x)
            layer.backward(dout)
    """,
    "dout of 3 dims": """
        def inputs():
            return {"x": np.ones((4, 6)), "g": np.ones(6), "b": np.zeros(6),
                    "dout": np.ones((4, 2, 3))}
        def call(layers, util, x, g, b, dout):
            layer = layers.BatchNormalization(g, b)
            layer.forward(x)
            layer.backward(dout)
    """,
    "backward after an inference call on another batch size": """
        def inputs():
            return {"x": np.ones((4, 6)), "xt": np.ones((5, 6)), "g": np.ones(6),
                    "b": np.zeros(6), "dout": np.ones((4, 6))}
        def call(layers, util, x, xt, g, b, dout):
            layer = layers.BatchNormalization(g, b)
            layer.forward(x)
            layer.forward(xt, train_flg=False)
            layer.backward(dout)  # the book reshapes dx to the last input's shape
    """,
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_like_the_reference(case):
    assert_same_error(run_bad_input(BAD_INPUTS[case]))


def test_pickle_and_copy_keep_the_lazy_xn():
    import copy
    import pickle

    gamma, beta = _params(4)
    fast, book = bpfast.BatchNormalization(gamma, beta), ref.BatchNormalization(gamma, beta)
    x = _data((5, 4))
    fast.forward(x)
    book.forward(x)
    dout = _data((5, 4), seed=3)
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast), copy.copy(fast)):
        assert_same(clone.xn, book.xn)
        assert_same(clone.backward(dout), book.backward(dout))
