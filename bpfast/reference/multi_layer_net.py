"""The book's ``common/multi_layer_net.py``: a fully connected network of any depth.

``Affine1, Activation_function1, ..., Affine{L+1}`` followed by ``last_layer``
(``SoftmaxWithLoss``), with L2 weight decay on every ``W``.  Written from the book's
semantics (see ``reference-semantics.md`` section 8), never optimised.
"""

from collections import OrderedDict

import numpy as np

from bpfast.reference.gradient import numerical_gradient
from bpfast.reference.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss


def _init_weights(params, all_size_list, weight_init_std):
    """``W{i}`` / ``b{i}`` in the book's order (W1, b1, W2, b2, ...), W from ``np.random.randn``."""
    for idx in range(1, len(all_size_list)):
        scale = weight_init_std
        if str(weight_init_std).lower() in ("relu", "he"):
            scale = np.sqrt(2.0 / all_size_list[idx - 1])  # He
        elif str(weight_init_std).lower() in ("sigmoid", "xavier"):
            scale = np.sqrt(1.0 / all_size_list[idx - 1])  # the book's "Xavier" (fan-in only)
        params["W" + str(idx)] = scale * np.random.randn(all_size_list[idx - 1],
                                                         all_size_list[idx])
        params["b" + str(idx)] = np.zeros(all_size_list[idx])


class MultiLayerNet:
    """Fully connected multi-layer network (book section 6.1 / 6.4).

    Parameters
    ----------
    input_size : int
    hidden_size_list : list of int
    output_size : int
    activation : {'relu', 'sigmoid'}
    weight_init_std : 'relu', 'he', 'sigmoid', 'xavier' or a number
    weight_decay_lambda : float
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation="relu", weight_init_std="relu", weight_decay_lambda=0):
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(hidden_size_list)
        self.weight_decay_lambda = weight_decay_lambda
        self.params = {}

        self.__init_weight(weight_init_std)

        activation_layer = {"sigmoid": Sigmoid, "relu": Relu}
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)],
                                                      self.params["b" + str(idx)])
            self.layers["Activation_function" + str(idx)] = activation_layer[activation]()

        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)],
                                                  self.params["b" + str(idx)])

        self.last_layer = SoftmaxWithLoss()

    def __init_weight(self, weight_init_std):
        all_size_list = [self.input_size] + list(self.hidden_size_list) + [self.output_size]
        _init_weights(self.params, all_size_list, weight_init_std)

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        y = self.predict(x)

        weight_decay = 0
        for idx in range(1, self.hidden_layer_num + 2):
            W = self.params["W" + str(idx)]
            weight_decay += 0.5 * self.weight_decay_lambda * np.sum(W**2)

        return self.last_layer.forward(y, t) + weight_decay

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)

        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

    def numerical_gradient(self, x, t):
        loss_W = lambda W: self.loss(x, t)  # noqa: E731 (the book's form; W is ignored)

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = numerical_gradient(loss_W, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_W, self.params["b" + str(idx)])

        return grads

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.last_layer.backward(dout)

        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            affine = self.layers["Affine" + str(idx)]
            grads["W" + str(idx)] = affine.dW + self.weight_decay_lambda * affine.W
            grads["b" + str(idx)] = affine.db

        return grads
