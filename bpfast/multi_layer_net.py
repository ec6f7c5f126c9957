"""``MultiLayerNet``: the book's ``common/multi_layer_net.py`` on the compiled layers.

Same constructor, attributes (``params``, ``layers`` -- an ``OrderedDict`` ``Affine1``,
``Activation_function1``, ..., ``Affine{L+1}`` of :mod:`bpfast.layers` classes --
``last_layer``, ``hidden_layer_num``, ``weight_decay_lambda``, ...), methods and numbers as
the book's class; the weights come from the same ``np.random.randn`` draws in the same order.

Faster than the book's code through the compiled layers, because ``gradient`` does not
compute the first Affine layer's input gradient (the book computes it and discards it), and
because ``gradient`` is one allocation-free step whose arrays are buffers reused by the next
call (see :mod:`bpfast._network`).
Additions: ``save_params``/``load_params`` (atomic, checked; see :class:`bpfast._network.ParamsFile`).
"""

from bpfast import reference as _ref
from bpfast._network import FusedGradient, ParamsFile, backprop, use_compiled_layers
from bpfast.gradient import numerical_gradient

__all__ = ["MultiLayerNet"]


class MultiLayerNet(FusedGradient, ParamsFile, _ref.MultiLayerNet):
    """Fully connected network: (Affine -> activation) x L -> Affine -> SoftmaxWithLoss.

    Parameters
    ----------
    input_size : int
        D, the number of input features (an (N, ...) input is flattened to (N, D)).
    hidden_size_list : list of int
        Sizes of the L hidden layers, e.g. ``[100, 100, 100]``.
    output_size : int
        C, the number of classes.
    activation : {'relu', 'sigmoid'}, default 'relu'
        Exactly these strings (another raises ``KeyError``, as in the book).
    weight_init_std : {'relu', 'he', 'sigmoid', 'xavier'} or float, default 'relu'
        'relu'/'he': std ``sqrt(2 / fan_in)``; 'sigmoid'/'xavier': ``sqrt(1 / fan_in)``
        (case-insensitive); a number is used as the std.  W are drawn with
        ``np.random.randn`` in layer order, biases are zeros (float64).
    weight_decay_lambda : float, default 0
        L2 weight decay: the loss adds ``0.5 * lambda * sum(W**2)`` for every W, the
        gradient ``lambda * W``.

    Attributes
    ----------
    params : dict
        ``W1`` (D, H1), ``b1`` (H1,), ..., ``W{L+1}`` (HL, C), ``b{L+1}`` (C,): the very
        arrays the layers hold.
    layers : OrderedDict
        ``Affine1``, ``Activation_function1``, ..., ``Affine{L+1}``.
    last_layer : bpfast.layers.SoftmaxWithLoss
    hidden_layer_num : int
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation="relu", weight_init_std="relu", weight_decay_lambda=0):
        super().__init__(input_size, hidden_size_list, output_size, activation=activation,
                         weight_init_std=weight_init_std,
                         weight_decay_lambda=weight_decay_lambda)
        use_compiled_layers(self)

    def numerical_gradient(self, x, t):
        """Gradients by central differences (h = 1e-4), as the book's (2 losses per weight).

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) (labels) or (N, C) (one-hot)

        Returns
        -------
        grads : dict
            ``W1``, ``b1``, ..., new arrays of the parameters' shapes and dtypes.
        """
        loss_W = lambda W: self.loss(x, t)  # noqa: E731 (the book's form; W is ignored)

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = numerical_gradient(loss_W, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_W, self.params["b" + str(idx)])
        return grads

    def gradient(self, x, t):
        """Gradients of the loss (weight decay included) by backpropagation.

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) (labels) or (N, C) (one-hot)

        Returns
        -------
        grads : dict
            ``W{i}``: ``dW + weight_decay_lambda * W``; ``b{i}``: the layer's own ``db`` -- as
            in the book, except that both are buffers **overwritten by the next call** (see
            :mod:`bpfast._network`); copy them to keep them.
        """
        grads = self._fused_gradient(x, t)
        if grads is not None:
            return grads
        # The forward of the book's loss(x, t) without its weight-decay sum: the value is
        # discarded here, and sum(W**2) over every W is a pass over all the weights.
        self.last_layer.forward(self.predict(x), t)
        backprop(self)

        grads = {}
        lam = self.weight_decay_lambda
        for idx in range(1, self.hidden_layer_num + 2):
            affine = self.layers["Affine" + str(idx)]
            grads["W" + str(idx)] = affine.dW + lam * affine.W
            grads["b" + str(idx)] = affine.db
        return grads
