"""bpfast.SoftmaxWithLoss against the book's SoftmaxWithLoss (bpfast.reference).

Forward: softmax and loss within the dtype's tolerance (bpfast's exp and double sums vs
NumPy's); the loss is a NumPy scalar of the logits' dtype.  Backward: given the same cached
``y`` the gradient is the book's bit for bit (same operations in the same order).

Deliberate deviations, listed in bpfast.layers' docstring and tested explicitly here:
negative labels and labels of another batch size raise (the book wraps/broadcasts), ``(N, 1)``
label columns give the right answer (the book's is wrong for N > 1), and the gradient of a
single 1-D sample is divided by 1 (the book divides one-hot targets by C and fails for labels).
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
)
from bpfast import LabelError, SoftmaxWithLoss, reference as ref

LOSS_SCALE = 20  # a per-row loss is at most -log(1e-7) = 16.1


def _forward_backward(cls, x, t, y=None):
    layer = cls()
    with np.errstate(all="ignore"):  # the book warns on rows with inf
        loss = layer.forward(x, t)
        if y is not None:
            layer.y = y.copy()  # compare backward on the same softmax output
        dx = layer.backward()
    return layer, loss, dx


def _check_parity(x, t, dx_exact=True):
    layer, loss, dx = _forward_backward(SoftmaxWithLoss, x, t)
    rlayer, rloss, rdx = _forward_backward(ref.SoftmaxWithLoss, x, t, y=layer.y)
    with np.errstate(all="ignore"):
        rloss = ref.SoftmaxWithLoss().forward(x, t)
        ry = ref.softmax(x)
    assert type(loss) is type(rloss) is x.dtype.type
    assert layer.loss is loss
    assert layer.t is t
    assert_close(loss, rloss, scale=LOSS_SCALE)
    assert_close(layer.y, ry)
    if dx_exact:
        assert_identical(dx, rdx)
    else:
        assert_close(dx, rdx)
    return layer, loss, dx


def _labels(rng, n, c, dtype=np.int64):
    return rng.integers(0, c, n).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
@pytest.mark.parametrize("target", ["labels", "onehot"])
def test_parity(rng, dtype, n_threads, shape, target):
    n, c = shape
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = _labels(rng, n, c)
    if c == 1 and target == "labels":
        # Same size as the logits, so the book takes the labels for one-hot targets and
        # argmax(axis=1) fails on them; bpfast follows.
        for impl in (SoftmaxWithLoss, ref.SoftmaxWithLoss):
            with pytest.raises(np.exceptions.AxisError):
                impl().forward(x, labels)
        return
    t = labels if target == "labels" else np.eye(c, dtype=dtype)[labels]
    layer, loss, dx = _check_parity(x, t)
    assert layer.y.shape == dx.shape == shape
    assert layer.y.dtype == dx.dtype == dtype


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32,
                                         np.uint32, np.int64, np.uint64, np.intc, np.intp,
                                         ">i8", "<i4"], ids=str)
def test_label_dtypes(rng, dtype, label_dtype):
    x = rng.standard_normal((12, 10)).astype(dtype)
    t = _labels(rng, 12, 10, label_dtype)
    layer, loss, dx = _check_parity(x, t)
    assert layer.t is t


@pytest.mark.parametrize("t_dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8,
                                     np.bool_, np.float16], ids=str)
def test_onehot_dtypes(rng, dtype, t_dtype):
    x = rng.standard_normal((9, 4)).astype(dtype)
    t = np.eye(4, dtype=t_dtype)[_labels(rng, 9, 4)]
    layer, loss, dx = _check_parity(x, t)
    # dx has NumPy's promotion of y and t (float32 logits with float64 targets -> float64)
    with np.errstate(all="ignore"):
        assert dx.dtype == (layer.y - t).dtype


def test_label_column_is_accepted(rng, dtype):
    """(N, 1) labels: bpfast gives the (N,) answer; the book silently gives a wrong one."""
    x = rng.standard_normal((6, 5)).astype(dtype)
    labels = np.array([0, 4, 2, 2, 1, 3])
    col = labels[:, None]
    _, loss, dx = _forward_backward(SoftmaxWithLoss, x, col)
    _, loss1, dx1 = _forward_backward(SoftmaxWithLoss, x, labels)
    assert_identical(loss, loss1)
    assert_identical(dx, dx1)
    _, rloss, _ = _forward_backward(ref.SoftmaxWithLoss, x, labels)
    assert_close(loss, rloss, scale=LOSS_SCALE)
    book = ref.SoftmaxWithLoss()
    assert not np.isclose(book.forward(x, col), rloss)  # the book's (N, N) pick
    # With N = 1 the book's column works (ch07/gradient_check.py does that): same numbers.
    _check_parity(x[:1], col[:1])


class TestSingleSample:
    """1-D logits are one sample; bpfast's backward divides by a batch size of 1."""

    @pytest.mark.parametrize("label", [np.array(2), np.array([2]), np.uint8(2)],
                             ids=["0d", "1d", "numpy_scalar"])
    def test_label(self, dtype, label):
        x = np.array([0.5, -1.0, 2.0, 0.0], dtype)
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, np.asarray(label))
        with np.errstate(all="ignore"):
            rlayer = ref.SoftmaxWithLoss()
            rloss = rlayer.forward(x, np.asarray(label))
        assert type(loss) is dtype.type
        assert_close(loss, rloss, scale=LOSS_SCALE)
        assert layer.y.shape == (4,)
        assert_close(layer.y, rlayer.y)
        dx = layer.backward()
        expected = layer.y.copy()
        expected[2] -= 1
        assert_identical(dx, expected / dtype.type(1))
        with pytest.raises(IndexError):  # the book's backward cannot index a 1-D y twice
            rlayer.backward()

    @pytest.mark.parametrize("t_dtype", [None, np.float64, np.int64])
    def test_onehot(self, dtype, t_dtype):
        x = np.array([0.5, -1.0, 2.0, 0.0], dtype)
        t = np.array([0, 0, 1, 0], t_dtype or dtype)
        layer, loss, dx = _forward_backward(SoftmaxWithLoss, x, t)
        rlayer, rloss, rdx = _forward_backward(ref.SoftmaxWithLoss, x, t, y=layer.y)
        assert_close(loss, rloss, scale=LOSS_SCALE)
        with np.errstate(all="ignore"):
            expected = (layer.y - t) / 1
        assert_identical(dx, expected)
        assert_identical(rdx, expected / 4)  # the book divides by C = t.shape[0]

    def test_label_for_a_batch_of_one(self, dtype):
        # (1, C) logits with a 0-d label: the book's forward works (fancy indexing
        # broadcasts), its backward raises IndexError (t.shape[0]); bpfast does the same.
        x = np.array([[0.5, -1.0, 2.0]], dtype)
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, np.array(1))
        assert_close(loss, ref.SoftmaxWithLoss().forward(x, np.array(1)), scale=LOSS_SCALE)
        with pytest.raises(IndexError):
            layer.backward()

    @pytest.mark.parametrize("t_shape", [(3, 1), (1, 1, 3)], ids=str)
    def test_other_target_shapes_follow_the_book(self, dtype, t_shape):
        x = np.array([0.5, -1.0, 2.0], dtype)
        t = np.array([0, 1, 0], dtype).reshape(t_shape)
        _check_parity(x, t)

    def test_onehot_row(self, dtype):
        # t of shape (1, C): the book's batch size t.shape[0] is 1 too -> same numbers
        x = np.array([0.5, -1.0, 2.0], dtype)
        t = np.array([[0, 1, 0]], dtype)
        _check_parity(x, t)


def test_soft_targets_as_in_the_book(rng, dtype):
    """Forward hardens soft targets with argmax, backward uses them as they are."""
    x = rng.standard_normal((5, 4)).astype(dtype)
    t = rng.dirichlet(np.ones(4), 5).astype(dtype)
    layer, loss, dx = _check_parity(x, t)
    _, hard_loss, _ = _forward_backward(SoftmaxWithLoss, x, t.argmax(axis=1))
    assert_identical(loss, hard_loss)
    assert_identical(dx, (layer.y - t) / dtype.type(5))


@pytest.mark.parametrize("t_dtype", [np.float32, np.float64])
def test_onehot_rows_are_read_with_numpys_argmax(dtype, t_dtype):
    """All-zero rows, ties, NaN and infinities pick the class np.argmax picks."""
    t = np.array([[0, 0, 0, 0], [0.5, 0, 0.5, 0], [0, 1, np.nan, 1], [np.nan, 1, 0, 0],
                  [-np.inf, -np.inf, -1, -np.inf], [0, np.inf, 0, np.inf], [-0.0, 0.0, 0, 0],
                  [1, 1, 1, 2]], t_dtype)
    x = np.arange(t.size, dtype=dtype).reshape(t.shape) % 5
    layer, loss, dx = _check_parity(x, t)
    _, label_loss, _ = _forward_backward(SoftmaxWithLoss, x, t.argmax(axis=1))
    assert_identical(loss, label_loss)


def test_backward_ignores_dout(rng, dtype):
    layer = SoftmaxWithLoss()
    layer.forward(rng.standard_normal((3, 4)).astype(dtype), np.array([0, 1, 3]))
    dx = layer.backward()
    assert_identical(layer.backward(5), dx)
    assert_identical(layer.backward(np.full((3, 4), 7.0)), dx)
    assert_identical(layer.backward(dout=None), dx)


@pytest.mark.parametrize("big", [1e4, 1e30])
def test_huge_logits_give_a_finite_loss(dtype, big):
    x = np.array([[big, -big, 0.0], [-big, big, -big], [big, big, -big]], dtype)
    t = np.array([0, 0, 1])
    layer, loss, dx = _check_parity(x, t)
    assert np.isfinite(loss)
    assert_identical(layer.y, np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]], dtype))
    eps = dtype.type(1e-7)
    expected = -(np.log(dtype.type(1) + eps) + np.log(eps) + np.log(dtype.type(0.5) + eps)) / 3
    assert_close(loss, expected.astype(dtype), scale=LOSS_SCALE)


def test_perfect_and_impossible_predictions(dtype):
    x = np.array([[0.0, 1e4]], dtype)
    assert SoftmaxWithLoss().forward(x, np.array([1])) < 0  # -log(1 + 1e-7)
    loss = SoftmaxWithLoss().forward(x, np.array([0]))
    assert_close(loss, dtype.type(-np.log(dtype.type(1e-7))), scale=LOSS_SCALE)


def test_nan_and_inf_rows_as_in_the_book(dtype):
    x = np.array([[np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0],
                  [-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]], dtype)
    layer, loss, dx = _check_parity(x, np.array([1, 1, 2, 0, 2]))
    assert np.isnan(loss)
    assert np.isnan(layer.y[[0, 1, 3]]).all()
    assert np.isfinite(layer.y[[2, 4]]).all() and layer.y[2, 0] == 0.0
    layer, loss, dx = _check_parity(x[[2, 4]], np.array([2, 2]))
    assert np.isfinite(loss)


@pytest.mark.parametrize("target", ["labels", "onehot"])
def test_layouts(rng, dtype, target):
    n, c = 9, 7
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    labels = _labels(rng, n, c)
    t = labels if target == "labels" else np.eye(c, dtype=dtype)[labels]
    _, loss, dx = _forward_backward(SoftmaxWithLoss, x, t)
    y = SoftmaxWithLoss()
    y.forward(x, t)
    # Gaps of strided labels hold a label that is out of range, of one-hot targets NaN.
    fill = 100 if target == "labels" else np.nan
    cases = [("x", kind, xv, t) for kind, xv in layouts(x)]
    cases += [("t", kind, x, tv) for kind, tv in layouts(t, fill=fill)]
    for arg, kind, xv, tv in cases:
        before = (xv.copy(), tv.copy())
        layer, loss2, dx2 = _forward_backward(SoftmaxWithLoss, xv, tv)
        assert_identical(loss2, loss), (arg, kind)
        assert_identical(layer.y, y.y), (arg, kind)
        assert_identical(dx2, dx), (arg, kind)
        assert layer.t is tv
        assert_identical(xv, before[0]), (arg, kind)
        assert_identical(tv, before[1]), (arg, kind)


def test_results_not_overwritten_by_later_calls(rng, dtype):
    layer = SoftmaxWithLoss()
    t = np.array([0, 2, 1])
    loss1 = layer.forward(rng.standard_normal((3, 4)).astype(dtype), t)
    y1 = layer.y
    dx1 = layer.backward()
    keep = [y1.copy(), dx1.copy(), t.copy()]
    keep_loss = loss1.copy()
    layer.forward(rng.standard_normal((3, 4)).astype(dtype), np.array([3, 3, 3]))
    dx2 = layer.backward()
    assert layer.y is not y1 and dx2 is not dx1
    for a, k in zip((y1, dx1, t), keep):
        assert_identical(a, k)
    assert_identical(loss1, keep_loss)


@pytest.mark.parametrize("x_dtype", [np.float16, np.int64, np.int32, np.uint8, ">f8"],
                         ids=str)
def test_other_logit_dtypes_follow_the_book(rng, x_dtype):
    x = (rng.standard_normal((6, 5)) * 3).astype(x_dtype)
    for t in (_labels(rng, 6, 5), np.eye(5)[_labels(rng, 6, 5)]):
        layer, loss, dx = _forward_backward(SoftmaxWithLoss, x, t)
        rlayer, rloss, rdx = _forward_backward(ref.SoftmaxWithLoss, x, t)
        assert type(loss) is type(rloss)
        assert_identical(loss, rloss)
        assert_identical(layer.y, rlayer.y)
        assert_identical(dx, rdx)


def test_empty_batch_follows_the_book(dtype):
    x = np.empty((0, 3), dtype)
    t = np.empty((0, 3), dtype)
    layer, loss, dx = _forward_backward(SoftmaxWithLoss, x, t)
    rlayer, rloss, rdx = _forward_backward(ref.SoftmaxWithLoss, x, t)
    assert type(loss) is type(rloss) and np.isnan(loss) and np.isnan(rloss)  # 0 / 0
    assert_identical(dx, rdx)
    for impl in (SoftmaxWithLoss, ref.SoftmaxWithLoss):  # (0,) labels look one-hot: AxisError
        with pytest.raises(np.exceptions.AxisError):
            impl().forward(x, np.empty(0, np.int64))


@pytest.mark.parametrize("bad", [np.array([0, 5]), np.array([0, -1]), np.array([0, 300])])
def test_labels_out_of_range_raise(dtype, bad):
    x = np.zeros((2, 5), dtype)
    with pytest.raises(IndexError):
        SoftmaxWithLoss().forward(x, bad)
    with pytest.raises(LabelError):
        SoftmaxWithLoss().forward(x, bad.astype(np.uint16) if bad.min() >= 0 else bad)


def test_negative_labels_raise_where_the_book_wraps(dtype):
    x = np.array([[0.0, 1.0, 2.0]], dtype)
    assert np.isfinite(ref.SoftmaxWithLoss().forward(x, np.array([-1])))
    with pytest.raises(IndexError, match="out of range"):
        SoftmaxWithLoss().forward(x, np.array([-1]))


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]),
       onehot=st.booleans())
def test_hypothesis_parity(data, dtype, onehot):
    n, c = data.draw(st.integers(1, 6)), data.draw(st.integers(2, 9))
    x = data.draw(hnp.arrays(dtype, (n, c), elements=any_floats(dtype)))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    t = np.eye(c, dtype=dtype)[labels] if onehot else labels
    _check_parity(x, t)
