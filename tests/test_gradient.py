"""numerical_gradient (the book's and bpfast's) and the chapter-5 gradient check."""

import io

import numpy as np
import pytest

import bpfast
from bpfast import reference as ref
from bpfast.gradient import gradient_check, numerical_gradient
from _train_helpers import mnist_like, net_pair, one_hot

IMPLS = {"reference": ref.numerical_gradient, "bpfast": numerical_gradient}


class Recorder:
    """A function of x that records, at every call, the object it got and a copy of it."""

    def __init__(self, fn):
        self.fn = fn
        self.objects = []
        self.copies = []

    def __call__(self, x):
        self.objects.append(x)
        self.copies.append(x.copy())
        return self.fn(x)


def nonlinear(x):
    return np.sum(np.sin(3 * x) * x**2) + np.prod(np.cos(x.reshape(-1)[:3]))


def special_values(dtype):
    """An array with -0.0, a NaN with a payload, a denormal and ordinary values."""
    bits = np.uint64 if dtype == np.float64 else np.uint32
    nan = np.array([0x7FF8000000000123 if dtype == np.float64 else 0x7FC00123], bits).view(dtype)[0]
    tiny = np.finfo(dtype).smallest_subnormal
    return np.array([[1.5, -0.0, nan], [tiny, -2.25, 3.0]], dtype)


# ------------------------------------------------------------------ the book's semantics


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_perturbs_in_place_in_c_order(impl, dtype):
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -4.0]], dtype)
    x0 = x.copy()
    f = Recorder(lambda a: np.sum(a**2))
    IMPLS[impl](f, x)
    h = 1e-4
    assert len(f.objects) == 2 * x.size
    assert all(obj is x for obj in f.objects)  # f gets x itself, not a copy
    for k, seen in enumerate(f.copies):
        i = k // 2
        expected = x0.copy()
        flat = expected.reshape(-1)
        flat[i] = flat[i] + h if k % 2 == 0 else flat[i] - h  # + first, in x's precision
        np.testing.assert_array_equal(seen, expected)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_restores_bit_exactly_and_keeps_dtype(impl, dtype):
    x = special_values(dtype)
    before = x.copy()
    grad = IMPLS[impl](lambda a: np.sum(np.nan_to_num(a)), x)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    view = np.uint64 if dtype == np.float64 else np.uint32
    np.testing.assert_array_equal(x.view(view), before.view(view))


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_values(impl):
    x = np.array([3.0, 4.0])
    np.testing.assert_allclose(IMPLS[impl](lambda a: np.sum(a**2), x), [6.0, 8.0], rtol=1e-8)
    # float32: the perturbation is rounded to float32 but the denominator stays 2h (the book).
    x32 = np.array([1.0, 2.0], np.float32)
    g32 = IMPLS[impl](lambda a: np.sum(a**2), x32)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, [2.0, 4.0], rtol=2e-3)


# ------------------------------------------------------------------ bpfast == the book


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 2)])
def test_bpfast_equals_reference_bit_for_bit(dtype, shape):
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.standard_normal(shape).astype(dtype)
    x_ref = x.copy()
    f_fast, f_ref = Recorder(nonlinear), Recorder(nonlinear)
    g_fast = numerical_gradient(f_fast, x)
    g_ref = ref.numerical_gradient(f_ref, x_ref)
    assert g_fast.dtype == g_ref.dtype and g_fast.shape == g_ref.shape
    np.testing.assert_array_equal(g_fast, g_ref)
    np.testing.assert_array_equal(x, x_ref)
    assert len(f_fast.copies) == len(f_ref.copies)
    for a, b in zip(f_fast.copies, f_ref.copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "layout",
    [
        lambda a: np.asfortranarray(a),
        lambda a: a[:, ::2],
        lambda a: a[::-1],
    ],
    ids=["fortran", "strided", "negative-stride"],
)
def test_other_layouts_follow_the_book(layout):
    base = np.random.default_rng(3).standard_normal((4, 6))
    x, x_ref = layout(base.copy()), layout(base.copy())
    f_fast, f_ref = Recorder(nonlinear), Recorder(nonlinear)
    np.testing.assert_array_equal(numerical_gradient(f_fast, x), ref.numerical_gradient(f_ref, x_ref))
    # Same sequence of calls (the book's nditer visits memory order).
    for a, b in zip(f_fast.copies, f_ref.copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_integer_input_gives_the_books_result():
    x = np.array([1, 2])
    np.testing.assert_array_equal(
        numerical_gradient(lambda a: np.sum(a**2), x.copy()),
        ref.numerical_gradient(lambda a: np.sum(a**2), x.copy()),
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_read_only_input_raises_like_the_book(impl):
    x = np.arange(3.0)
    x.setflags(write=False)
    with pytest.raises(ValueError):
        IMPLS[impl](np.sum, x)


def test_restores_x_when_f_raises():
    x = np.arange(4.0)
    calls = []

    def f(a):
        calls.append(a.copy())
        if len(calls) == 3:
            raise RuntimeError("boom")
        return np.sum(a)

    with pytest.raises(RuntimeError):
        numerical_gradient(f, x)
    np.testing.assert_array_equal(x, np.arange(4.0))
    assert calls[2][1] == 1.0 + 1e-4  # it did perturb the second element before raising


# ------------------------------------------------------------------ TwoLayerNet and the check


def test_network_numerical_gradient_equals_reference():
    rng = np.random.default_rng(5)
    x, t = mnist_like(rng, 4, features=20, classes=4)
    net_ref, net_fast = net_pair((20, 6, 4), seed=11)
    g_ref = net_ref.numerical_gradient(x, t)
    g_fast = net_fast.numerical_gradient(x, t)
    assert list(g_fast) == ["W1", "b1", "W2", "b2"]
    for key in g_ref:
        assert g_fast[key].dtype == g_ref[key].dtype
        # The losses differ in the last bits (bpfast's exp), divided by 2h = 2e-4.
        np.testing.assert_allclose(g_fast[key], g_ref[key], rtol=1e-7, atol=1e-10, err_msg=key)
    for key in net_ref.params:  # both restored their weights
        np.testing.assert_array_equal(net_fast.params[key], net_ref.params[key])


def test_gradient_check_magnitude_784_50_10():
    # ch05/gradient_check.py: 3 samples, one-hot targets, TwoLayerNet(784, 50, 10).
    rng = np.random.default_rng(0)
    x, t = mnist_like(rng, 3)
    np.random.seed(1)
    net = bpfast.TwoLayerNet(784, 50, 10)
    out = io.StringIO()
    diffs = gradient_check(net, x, one_hot(t), file=out)
    assert list(diffs) == ["W1", "b1", "W2", "b2"]
    for key, diff in diffs.items():
        assert isinstance(diff, np.float64)
        assert 0 < diff < 1e-6, (key, diff)  # the book's magnitude (nonzero: the 1e-7 in the loss)
    lines = out.getvalue().splitlines()
    assert lines == [f"{k}:{diffs[k]}" for k in diffs]


def test_gradient_check_prints_to_stdout_by_default(capsys):
    # Dense inputs: with 12 sparse features a hidden unit may sit within h = 1e-4 of the ReLU
    # kink, where central differences are wrong (the book's batch-norm check shows that).
    rng = np.random.default_rng(2)
    x, t = rng.random((2, 12)) + 0.5, np.array([2, 0])
    np.random.seed(4)
    diffs = gradient_check(ref.TwoLayerNet(12, 5, 3), x, t)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(diffs)
    assert all(d < 1e-6 for d in diffs.values())
