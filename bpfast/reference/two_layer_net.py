"""The book's ``ch05/two_layer_net.py``: a two-layer network built from layers.

Affine -> Relu -> Affine -> SoftmaxWithLoss.  ``params`` holds the arrays, and the layers
hold *the same objects*, which is what makes in-place optimizers and ``numerical_gradient``
work.  ``gradient`` runs the layers' ``backward`` in reverse order and returns the layers'
own ``dW``/``db`` arrays.
"""

from collections import OrderedDict

import numpy as np

from bpfast.reference.gradient import numerical_gradient
from bpfast.reference.layers import Affine, Relu, SoftmaxWithLoss


class TwoLayerNet:
    """Two-layer network of chapter 5 (section 5.7)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        # Draws W1 then W2 from the global legacy RNG (np.random.seed reproduces them).
        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(input_size, hidden_size)
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params["b2"] = np.zeros(output_size)

        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])

        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)

        return x

    def loss(self, x, t):
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)

        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

    def numerical_gradient(self, x, t):
        # The closure ignores W: numerical_gradient perturbs params[...] in place, and the
        # layers hold the same arrays.
        loss_W = lambda W: self.loss(x, t)  # noqa: E731 (the book's form)

        grads = {}
        grads["W1"] = numerical_gradient(loss_W, self.params["W1"])
        grads["b1"] = numerical_gradient(loss_W, self.params["b1"])
        grads["W2"] = numerical_gradient(loss_W, self.params["W2"])
        grads["b2"] = numerical_gradient(loss_W, self.params["b2"])

        return grads

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.lastLayer.backward(dout)

        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        grads = {}
        grads["W1"], grads["b1"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W2"], grads["b2"] = self.layers["Affine2"].dW, self.layers["Affine2"].db

        return grads
