"""``MultiLayerNetExtend``: the book's ``common/multi_layer_net_extend.py``, compiled layers.

Same constructor (including the book's misspelt ``dropout_ration``), attributes, methods,
random-number consumption (weights from ``np.random.randn``, dropout masks from
``np.random.rand``, in the book's order) and numbers as the book's class.  Faster through the
compiled layers, because ``gradient`` skips the first Affine layer's unused input gradient,
and because ``gradient`` is one fused, allocation-free step (a hidden block Affine ->
BatchNorm -> Relu -> Dropout is one kernel per direction) whose arrays are buffers reused by
the next call -- see :mod:`bpfast._network`.  Additions:
``save_params``/``load_params`` (atomic, checked; see :class:`bpfast._network.ParamsFile`).
"""

from bpfast import reference as _ref
from bpfast._network import FusedGradient, ParamsFile, backprop, use_compiled_layers
from bpfast.gradient import numerical_gradient

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(FusedGradient, ParamsFile, _ref.MultiLayerNetExtend):
    """Fully connected network with optional Batch Normalization and Dropout (chapter 6).

    Per hidden layer ``i``: ``Affine{i}`` -> ``BatchNorm{i}`` (if ``use_batchnorm``) ->
    ``Activation_function{i}`` -> ``Dropout{i}`` (if ``use_dropout``); then
    ``Affine{L+1}`` and ``last_layer`` (SoftmaxWithLoss).

    Parameters
    ----------
    input_size, hidden_size_list, output_size, activation, weight_init_std,
    weight_decay_lambda
        As :class:`bpfast.MultiLayerNet`.
    use_dropout : bool, default False
    dropout_ration : float, default 0.5
        The dropout ratio (the book's spelling).
    use_batchnorm : bool, default False
        Adds ``gamma{i}`` (ones) and ``beta{i}`` (zeros) for every hidden layer, after all
        ``W``/``b`` in ``params``.

    Attributes
    ----------
    params : dict
        ``W1``, ``b1``, ..., ``W{L+1}``, ``b{L+1}``, then ``gamma1``, ``beta1``, ...
    layers : OrderedDict
        Of :mod:`bpfast.layers` classes, under the book's keys.
    last_layer : bpfast.layers.SoftmaxWithLoss
    hidden_layer_num : int
    use_dropout, use_batchnorm : bool
    weight_decay_lambda : float

    Notes
    -----
    ``predict(x, train_flg=False)`` and ``loss(x, t, train_flg=False)`` pass ``train_flg`` to
    the BatchNorm and Dropout layers, which read it by truthiness as the book does;
    ``accuracy`` runs in inference mode, ``gradient`` in training mode.
    """

    def __init__(self, input_size, hidden_size_list, output_size,
                 activation="relu", weight_init_std="relu", weight_decay_lambda=0,
                 use_dropout=False, dropout_ration=0.5, use_batchnorm=False):
        super().__init__(input_size, hidden_size_list, output_size, activation=activation,
                         weight_init_std=weight_init_std,
                         weight_decay_lambda=weight_decay_lambda, use_dropout=use_dropout,
                         dropout_ration=dropout_ration, use_batchnorm=use_batchnorm)
        use_compiled_layers(self)

    def numerical_gradient(self, x, t):
        """Gradients by central differences, as the book's (``loss(..., train_flg=True)``).

        As in the book, every loss evaluation runs in training mode: dropout masks are
        redrawn and BatchNorm running statistics updated each time (so with dropout the
        result is not meaningful, and the global random stream advances).

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) or (N, C)

        Returns
        -------
        grads : dict
            Keys ``W1``, ``b1``, ``gamma1``, ``beta1``, ``W2``, ..., ``b{L+1}``.
        """
        loss_W = lambda W: self.loss(x, t, train_flg=True)  # noqa: E731

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = numerical_gradient(loss_W, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_W, self.params["b" + str(idx)])
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads["gamma" + str(idx)] = numerical_gradient(
                    loss_W, self.params["gamma" + str(idx)])
                grads["beta" + str(idx)] = numerical_gradient(
                    loss_W, self.params["beta" + str(idx)])
        return grads

    def gradient(self, x, t):
        """Gradients of the loss in training mode, by backpropagation.

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) or (N, C)

        Returns
        -------
        grads : dict
            Keys ``W1``, ``b1``, ``gamma1``, ``beta1``, ``W2``, ..., ``b{L+1}``;
            ``W{i}`` is ``dW + weight_decay_lambda * W``, the others are the layers' own
            ``db``/``dgamma``/``dbeta`` -- as in the book.  Unlike the book, ``W{i}`` and
            ``b{i}`` (and the layers' ``dW``/``db``) are buffers **overwritten by the next
            call** (see :mod:`bpfast._network`); copy them to keep them.
        """
        grads = self._fused_gradient(x, t)
        if grads is not None:
            return grads
        # The forward of the book's loss(x, t, train_flg=True) without its weight-decay
        # sum: the value is discarded here, and sum(W**2) is a pass over all the weights.
        self.last_layer.forward(self.predict(x, True), t)
        backprop(self)

        grads = {}
        lam = self.weight_decay_lambda
        last = self.hidden_layer_num + 1
        for idx in range(1, last + 1):
            affine = self.layers["Affine" + str(idx)]
            grads["W" + str(idx)] = affine.dW + lam * self.params["W" + str(idx)]
            grads["b" + str(idx)] = affine.db
            if self.use_batchnorm and idx != last:
                bn = self.layers["BatchNorm" + str(idx)]
                grads["gamma" + str(idx)] = bn.dgamma
                grads["beta" + str(idx)] = bn.dbeta
        return grads
