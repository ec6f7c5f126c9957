"""The oracle itself: bpfast.reference against numerical gradients and the book's values.

Every other test compares bpfast with bpfast.reference, so the reference must first be shown
to compute the right gradients (4th-order central differences of its own forward, float64)
and to reproduce the book's documented numbers and quirks
(/work/shared/docs/reference-semantics.md sections 1, 2 and 5).
"""

import numpy as np
import pytest

from _helpers import numerical_gradient
from bpfast import reference as ref
from bpfast.reference import layer_naive


def _check_layer_gradient(rng, layer, x, rtol=1e-6, atol=1e-8, **params):
    """backward(G) equals the numerical gradient of sum(forward(x) * G) w.r.t. x and params."""
    out = layer.forward(x)
    G = rng.standard_normal(out.shape)

    def f():
        return np.sum(layer.forward(x) * G)

    layer.forward(x)
    dx = layer.backward(G.copy())
    grads = {name: getattr(layer, "d" + name) for name in params}
    np.testing.assert_allclose(dx, numerical_gradient(f, x), rtol=rtol, atol=atol)
    for name, value in params.items():
        np.testing.assert_allclose(grads[name], numerical_gradient(f, value), rtol=rtol,
                                   atol=atol)


class TestGradients:
    def test_relu(self, rng):
        x = rng.standard_normal((5, 7))
        x[np.abs(x) < 0.05] = 0.5  # away from the kink at 0 (h = 1e-3, reach 2h)
        _check_layer_gradient(rng, ref.Relu(), x)

    def test_sigmoid(self, rng):
        _check_layer_gradient(rng, ref.Sigmoid(), rng.standard_normal((4, 6)) * 3)

    @pytest.mark.parametrize("x_shape", [(4, 6), (3, 2, 3), (2, 1, 2, 3)])
    def test_affine(self, rng, x_shape):
        d = int(np.prod(x_shape[1:]))
        W = rng.standard_normal((d, 5))
        b = rng.standard_normal(5)
        layer = ref.Affine(W, b)
        _check_layer_gradient(rng, layer, rng.standard_normal(x_shape), W=W, b=b)

    @pytest.mark.parametrize("onehot", [False, True], ids=["labels", "onehot"])
    def test_softmax_with_loss(self, rng, onehot):
        n, c = 4, 5
        x = rng.standard_normal((n, c))
        labels = rng.integers(0, c, n)
        t = np.eye(c)[labels] if onehot else labels
        layer = ref.SoftmaxWithLoss()
        num = numerical_gradient(lambda: layer.forward(x, t), x)  # one logit at a time
        layer.forward(x, t)
        dx = layer.backward()
        # The analytic gradient is that of -log(y_t); the loss has log(y_t + 1e-7), whose
        # gradient is smaller by the factor y_t / (y_t + 1e-7): rtol 1e-7 / min(y_t).
        y_t = layer.y[np.arange(n), labels]
        np.testing.assert_allclose(dx * (y_t / (y_t + 1e-7))[:, None], num, rtol=1e-7,
                                   atol=1e-9)
        assert not np.allclose(dx, num, rtol=1e-12, atol=0)  # the 1e-7 is really there


class TestBookExamples:
    """ch05/buy_apple.py and buy_apple_orange.py; golden values from the book's notebook."""

    def test_buy_apple(self):
        apple, apple_num, tax = 100, 2, 1.1
        mul_apple, mul_tax = layer_naive.MulLayer(), layer_naive.MulLayer()
        price = mul_tax.forward(mul_apple.forward(apple, apple_num), tax)
        dapple_price, dtax = mul_tax.backward(1)
        dapple, dapple_num = mul_apple.backward(dapple_price)
        assert int(price) == 220
        assert dapple == 2.2
        assert int(dapple_num) == 110
        assert dtax == 200

    def test_buy_apple_orange(self):
        apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1
        mul_apple, mul_orange = layer_naive.MulLayer(), layer_naive.MulLayer()
        add_fruit, mul_tax = layer_naive.AddLayer(), layer_naive.MulLayer()
        apple_price = mul_apple.forward(apple, apple_num)
        orange_price = mul_orange.forward(orange, orange_num)
        all_price = add_fruit.forward(apple_price, orange_price)
        price = mul_tax.forward(all_price, tax)
        dall_price, dtax = mul_tax.backward(1)
        dapple_price, dorange_price = add_fruit.backward(dall_price)
        dorange, dorange_num = mul_orange.backward(dorange_price)
        dapple, dapple_num = mul_apple.backward(dapple_price)
        assert int(price) == 715
        assert (dapple, int(dapple_num)) == (2.2, 110)
        assert dorange == 3.3000000000000003
        assert int(dorange_num) == 165
        assert dtax == 650

    def test_mul_layer_keeps_inputs(self):
        layer = layer_naive.MulLayer()
        assert (layer.x, layer.y) == (None, None)
        layer.forward(3.0, 4.0)
        assert (layer.x, layer.y) == (3.0, 4.0)
        assert layer.backward(2.0) == (8.0, 6.0)  # swapped inputs

    def test_layers_work_on_arrays(self):
        x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
        np.testing.assert_array_equal(layer_naive.MulLayer().forward(x, y), [3.0, 8.0])
        dx, dy = layer_naive.AddLayer().backward(np.array([5.0, 6.0]))
        np.testing.assert_array_equal(dx, [5.0, 6.0])
        np.testing.assert_array_equal(dy, [5.0, 6.0])


class TestCrossEntropyError:
    """common/functions.py cross_entropy_error (reference-semantics.md section 1)."""

    def test_perfect_prediction_is_slightly_negative(self):
        loss = ref.cross_entropy_error(np.array([[0.0, 1.0, 0.0]]), np.array([1]))
        assert loss < 0
        assert loss == -np.log(1.0 + 1e-7)
        assert loss == pytest.approx(-9.9999995e-08, rel=1e-7)

    def test_zero_probability_is_finite(self):
        loss = ref.cross_entropy_error(np.array([[1.0, 0.0]]), np.array([1]))
        assert loss == -np.log(1e-7)
        assert loss == pytest.approx(16.118095650958, rel=1e-12)

    def test_returns_numpy_scalar_of_y_dtype(self):
        for dtype in (np.float32, np.float64):
            loss = ref.cross_entropy_error(np.full((2, 4), 0.25, dtype), np.array([0, 3]))
            assert type(loss) is np.dtype(dtype).type

    def test_onehot_by_size_and_soft_targets_hardened(self):
        y = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
        labels = ref.cross_entropy_error(y, np.array([1, 0]))
        soft = ref.cross_entropy_error(y, np.array([[0.2, 0.6, 0.2], [0.4, 0.3, 0.3]]))
        assert soft == labels

    def test_one_dimensional_is_one_sample(self):
        y = np.array([0.1, 0.7, 0.2])
        assert ref.cross_entropy_error(y, np.array(1)) == -np.log(0.7 + 1e-7)
        assert ref.cross_entropy_error(y, np.array([0, 1, 0])) == -np.log(0.7 + 1e-7)

    def test_negative_label_wraps(self):
        y = np.array([[0.1, 0.7, 0.2]])
        assert ref.cross_entropy_error(y, np.array([-1])) == -np.log(0.2 + 1e-7)

    def test_label_column_is_silently_wrong(self):
        y = np.array([[0.1, 0.9], [0.8, 0.2]])
        right = ref.cross_entropy_error(y, np.array([1, 0]))
        column = ref.cross_entropy_error(y, np.array([[1], [0]]))
        assert column != right  # (N, 1) broadcasts into an (N, N) pick

    @pytest.mark.parametrize("labels", [np.array([0.0, 1.0]), np.array([0, 2])])
    def test_float_or_out_of_range_labels_raise_index_error(self, labels):
        with pytest.raises(IndexError):
            ref.cross_entropy_error(np.full((2, 2), 0.5), labels)


class TestBookQuirks:
    """Layer behaviours the drop-in layers must keep (reference-semantics.md section 2)."""

    def test_relu_backward_zeroes_dout_in_place(self):
        layer = ref.Relu()
        layer.forward(np.array([-1.0, 0.0, 2.0, np.nan, -0.0]))
        np.testing.assert_array_equal(layer.mask, [True, True, False, False, True])
        dout = np.ones(5)
        assert layer.backward(dout) is dout
        np.testing.assert_array_equal(dout, [0, 0, 1, 1, 0])

    def test_relu_forward_copies(self):
        x = np.array([-1.0, 2.0])
        out = ref.Relu().forward(x)
        np.testing.assert_array_equal(x, [-1.0, 2.0])
        np.testing.assert_array_equal(out, [0.0, 2.0])

    def test_sigmoid_returns_its_cached_output(self):
        layer = ref.Sigmoid()
        out = layer.forward(np.zeros(3))
        assert out is layer.out

    def test_affine_flattens_and_keeps_a_view(self):
        x = np.arange(24.0).reshape(2, 3, 4)
        layer = ref.Affine(np.ones((12, 2)), np.zeros(2))
        layer.forward(x)
        assert layer.x.shape == (2, 12) and np.shares_memory(layer.x, x)
        assert layer.original_x_shape == (2, 3, 4)
        assert layer.backward(np.ones((2, 2))).shape == (2, 3, 4)

    def test_softmax_with_loss_backward_ignores_dout(self):
        layer = ref.SoftmaxWithLoss()
        layer.forward(np.array([[1.0, 2.0, 3.0]]), np.array([0]))
        np.testing.assert_array_equal(layer.backward(5), layer.backward())

    def test_softmax_with_loss_single_sample_divides_by_classes(self):
        x = np.array([1.0, 2.0, 3.0, 4.0])
        t = np.array([0.0, 0.0, 1.0, 0.0])
        layer = ref.SoftmaxWithLoss()
        layer.forward(x, t)
        np.testing.assert_allclose(layer.backward(), (ref.softmax(x) - t) / 4, rtol=1e-15)

    def test_sigmoid_overflow_warns_in_the_book(self):
        with pytest.warns(RuntimeWarning, match="overflow"):
            assert ref.sigmoid(np.array([-1000.0]))[0] == 0.0
