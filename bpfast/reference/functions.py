"""The book's ``common/functions.py``: activation and loss functions, naive NumPy."""

import numpy as np


def identity_function(x):
    return x


def step_function(x):
    return np.array(x > 0, dtype=int)


def sigmoid(x):
    # The naive form: overflows (with a RuntimeWarning) for very negative x and returns 0.0.
    return 1 / (1 + np.exp(-x))


def sigmoid_grad(x):
    # Takes the pre-activation, not the sigmoid output.
    return (1.0 - sigmoid(x)) * sigmoid(x)


def relu(x):
    return np.maximum(0, x)


def relu_grad(x):
    # Gradient 1 at exactly 0: the opposite convention from the Relu layer.
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return grad


def softmax(x):
    # Shift by the maximum of the last axis so exp never overflows; exp is evaluated twice,
    # as in the book.
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def sum_squared_error(y, t):
    return 0.5 * np.sum((y - t) ** 2)


# The book's name for the same formula until October 2019.
mean_squared_error = sum_squared_error


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)

    # One-hot detection is by size alone.
    if t.size == y.size:
        t = t.argmax(axis=1)

    batch_size = y.shape[0]
    # 1e-7 inside the log keeps log(0) finite (and makes a perfect prediction slightly negative).
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def softmax_loss(X, t):
    y = softmax(X)
    return cross_entropy_error(y, t)
