"""``SimpleConvNet``: the book's ``ch07/simple_convnet.py`` on the compiled layers.

Conv1 -> Relu1 -> Pool1 -> Affine1 -> Relu2 -> Affine2 -> ``last_layer`` (SoftmaxWithLoss),
with the book's constructor, attributes, methods, weight draws and numbers.  Faster through
the compiled Convolution/Pooling layers, and because ``gradient`` does not compute the
convolution's input gradient (the book's ``dcol`` product and col2im, about half of that
layer's backward pass, whose result it discards).  ``save_params``/``load_params`` write the
book's file format, atomically, and check a file against the network before loading it.
"""

from bpfast import reference as _ref
from bpfast._network import ParamsFile, backprop, use_compiled_layers
from bpfast.gradient import numerical_gradient

__all__ = ["SimpleConvNet"]


class SimpleConvNet(ParamsFile, _ref.SimpleConvNet):
    """Simple convolutional network of chapter 7 (section 7.5).

    Parameters
    ----------
    input_dim : tuple (C, H, W), default (1, 28, 28)
    conv_param : dict, default ``{'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1}``
    hidden_size : int, default 100
    output_size : int, default 10
    weight_init_std : float, default 0.01
        ``W1``, ``W2``, ``W3`` are ``weight_init_std * np.random.randn(...)``, drawn in that
        order from the global legacy RNG; biases are zeros.

    Attributes
    ----------
    params : dict
        ``W1`` (FN, C, FS, FS), ``b1`` (FN,), ``W2`` (FN*PH*PW, hidden), ``b2``,
        ``W3`` (hidden, output), ``b3``: the very arrays the layers hold.
    layers : OrderedDict
        ``Conv1``, ``Relu1``, ``Pool1`` (2x2, stride 2), ``Affine1``, ``Relu2``, ``Affine2``
        of :mod:`bpfast.layers` classes.
    last_layer : bpfast.layers.SoftmaxWithLoss

    Notes
    -----
    ``accuracy(x, t, batch_size=100)`` predicts in chunks and, as in the book, leaves a final
    partial chunk out of the count while dividing by the full N.
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01):
        super().__init__(input_dim=input_dim, conv_param=conv_param, hidden_size=hidden_size,
                         output_size=output_size, weight_init_std=weight_init_std)
        use_compiled_layers(self)

    def numerical_gradient(self, x, t):
        """Gradients by central differences (h = 1e-4), as the book's (2 losses per weight).

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
        t : ndarray of shape (N,) or (N, output_size)

        Returns
        -------
        grads : dict
            ``W1``, ``b1``, ``W2``, ``b2``, ``W3``, ``b3``: new arrays.
        """
        loss_w = lambda w: self.loss(x, t)  # noqa: E731 (the book's form; w is ignored)

        grads = {}
        for idx in (1, 2, 3):
            grads["W" + str(idx)] = numerical_gradient(loss_w, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_w, self.params["b" + str(idx)])
        return grads

    def gradient(self, x, t):
        """Gradients of the loss by backpropagation.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
        t : ndarray of shape (N,) or (N, output_size)

        Returns
        -------
        grads : dict
            ``W1``, ``b1`` (Conv1), ``W2``, ``b2`` (Affine1), ``W3``, ``b3`` (Affine2): the
            layers' own ``dW``/``db`` arrays, as in the book.
        """
        self.loss(x, t)
        backprop(self)

        grads = {}
        grads["W1"], grads["b1"] = self.layers["Conv1"].dW, self.layers["Conv1"].db
        grads["W2"], grads["b2"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W3"], grads["b3"] = self.layers["Affine2"].dW, self.layers["Affine2"].db
        return grads

