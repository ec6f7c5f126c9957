"""``Trainer``: the book's ``common/trainer.py`` with the compiled optimizers and a progress bar.

Same constructor, attributes (``network``, ``optimizer``, ``train_size``, ``batch_size``,
``iter_per_epoch``, ``max_iter``, ``current_iter``, ``current_epoch``,
``train_loss_list``, ``train_acc_list``, ``test_acc_list``, ...) and the same training: the
mini-batches are drawn with ``np.random.choice(train_size, batch_size)`` (with replacement)
from the global legacy RNG, the loss is recomputed after each update, and accuracy is
evaluated when ``current_iter % iter_per_epoch == 0`` (a float; see the class notes).
Trained from the same seed, a network ends with the same numbers as under the book's Trainer.
"""

import numpy as np
from tqdm.auto import tqdm

from bpfast import reference as _ref
from bpfast.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["Trainer"]

#: The book's table of ``optimizer`` names (lower-cased before the look-up).  ``rmsprpo``
#: is the key's spelling in the book's code before March 2020 (issue #22), kept so that
#: scripts written against an old copy still run.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "rmsprpo": RMSprop, "adam": Adam}


class Trainer(_ref.Trainer):
    """Train a network with mini-batch gradient descent (book chapters 6-8).

    Parameters
    ----------
    network : object
        Any network with the book's API: ``params``, ``gradient(x, t)``, ``loss(x, t)``,
        ``accuracy(x, t)`` (bpfast's or the book's classes).
    x_train, t_train : ndarray
        Training inputs (N, ...) and labels (N,) or one-hot targets (N, C).
    x_test, t_test : ndarray
    epochs : int, default 20
    mini_batch_size : int, default 100
    optimizer : str, default 'SGD'
        'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop' (also the book's old spelling
        'rmsprpo') or 'adam', in any case; another name raises ``KeyError`` as in the book.
    optimizer_param : dict, default ``{'lr': 0.01}``
        Keyword arguments of the optimizer (a :mod:`bpfast.optimizers` class).
    evaluate_sample_num_per_epoch : int or None, default None
        Evaluate the per-epoch accuracies on the first this many samples only.
    verbose : bool, default True
        Show a progress bar (tqdm, with the latest loss) and print the book's per-epoch
        lines (``=== epoch:1, train acc:..., test acc:... ===``) and final accuracy.

    Attributes
    ----------
    train_loss_list : list
        The loss of every mini-batch, computed after its update (NumPy scalars).
    train_acc_list, test_acc_list : list
        Accuracies at every evaluation.
    iter_per_epoch : float
        ``max(train_size / mini_batch_size, 1)``.
    max_iter : int
        ``int(epochs * iter_per_epoch)``.

    Notes
    -----
    As in the book, evaluation happens when ``current_iter % iter_per_epoch == 0``; with a
    non-integer ``iter_per_epoch`` (e.g. 1000 samples in batches of 128) that is rarely
    true, so ``train_acc_list`` may hold fewer entries than ``epochs``.

    Differences from the book: the per-iteration ``train loss:...`` lines are not printed
    (the progress bar shows the latest loss instead; thousands of lines would drown the
    per-epoch ones); ``'rmsprpo'`` is accepted as well as ``'rmsprop'``.
    """

    def __init__(self, network, x_train, t_train, x_test, t_test,
                 epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param={"lr": 0.01},
                 evaluate_sample_num_per_epoch=None, verbose=True):
        # The optimizer first, as in the book (a bad name raises KeyError before anything
        # else is looked at); the reference constructor sets up everything else.
        chosen = OPTIMIZERS[optimizer.lower()](**optimizer_param)
        super().__init__(network, x_train, t_train, x_test, t_test, epochs=epochs,
                         mini_batch_size=mini_batch_size, optimizer="sgd",
                         optimizer_param={}, evaluate_sample_num_per_epoch=(
                             evaluate_sample_num_per_epoch), verbose=verbose)
        self.optimizer = chosen
        self._bar = None

    def _write(self, line):
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line)

    def train_step(self):
        """One mini-batch: sample, gradient, update, loss; evaluate at epoch boundaries."""
        batch_mask = np.random.choice(self.train_size, self.batch_size)
        x_batch = self.x_train[batch_mask]
        t_batch = self.t_train[batch_mask]

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)

        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1

            x_train_sample, t_train_sample = self.x_train, self.t_train
            x_test_sample, t_test_sample = self.x_test, self.t_test
            if self.evaluate_sample_num_per_epoch is not None:
                n = self.evaluate_sample_num_per_epoch
                x_train_sample, t_train_sample = self.x_train[:n], self.t_train[:n]
                x_test_sample, t_test_sample = self.x_test[:n], self.t_test[:n]

            train_acc = self.network.accuracy(x_train_sample, t_train_sample)
            test_acc = self.network.accuracy(x_test_sample, t_test_sample)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)

            if self.verbose:
                self._write("=== epoch:" + str(self.current_epoch) + ", train acc:"
                            + str(train_acc) + ", test acc:" + str(test_acc) + " ===")
        self.current_iter += 1

    def train(self):
        """Run ``max_iter`` steps, then evaluate on the whole test set.

        Returns
        -------
        None
            As the book's (the final accuracy is printed when ``verbose``).
        """
        self._bar = tqdm(total=self.max_iter, unit="it", disable=not self.verbose,
                         dynamic_ncols=True) if self.verbose else None
        try:
            for _ in range(self.max_iter):
                self.train_step()
                if self._bar is not None:
                    self._bar.update(1)
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None

        test_acc = self.network.accuracy(self.x_test, self.t_test)

        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
