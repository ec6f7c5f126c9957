"""bpfast.AddLayer / bpfast.MulLayer: the book's ch05/layer_naive.py, through bpfast's import.

They work on Python scalars (nothing to compile), so bpfast re-exports the book's classes; the
book's apple examples must give the book's numbers through ``from bpfast import ...``.
"""

import numpy as np
import pytest

import bpfast
from _helpers import assert_identical
from bpfast import AddLayer, MulLayer
from bpfast.reference import layer_naive


def test_same_classes_as_the_book():
    assert AddLayer is layer_naive.AddLayer
    assert MulLayer is layer_naive.MulLayer
    assert bpfast.layers.AddLayer is AddLayer and bpfast.layers.MulLayer is MulLayer


def test_buy_apple_orange():
    mul_apple, mul_orange, add, mul_tax = MulLayer(), MulLayer(), AddLayer(), MulLayer()
    price = mul_tax.forward(add.forward(mul_apple.forward(100, 2), mul_orange.forward(150, 3)),
                            1.1)
    dall, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add.backward(dall)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    assert int(price) == 715
    assert (dapple, int(dapple_num), dorange, int(dorange_num), dtax) == (
        2.2, 110, 3.3000000000000003, 165, 650)


@pytest.mark.parametrize("x,y,dout", [
    (2.0, 3.0, 1.5),
    (np.float32(2.0), np.float32(3.0), np.float32(0.5)),
    (np.arange(4.0), np.full(4, 3.0), np.ones(4)),
    (np.arange(6, dtype=np.float32).reshape(2, 3), np.float32(2), np.ones((2, 3), np.float32)),
], ids=["python", "numpy_scalar", "arrays", "broadcast"])
def test_mul_and_add(x, y, dout):
    mul = MulLayer()
    assert_identical(mul.forward(x, y), np.multiply(x, y))
    assert mul.x is x and mul.y is y
    dx, dy = mul.backward(dout)
    assert_identical(dx, dout * y)
    assert_identical(dy, dout * x)
    add = AddLayer()
    assert_identical(add.forward(x, y), np.add(x, y))
    dx, dy = add.backward(dout)
    assert_identical(dx, dout * 1)
    assert_identical(dy, dout * 1)
