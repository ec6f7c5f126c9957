"""The book's ``common/trainer.py``: mini-batch training of any book network.

Written from the book's semantics (``reference-semantics.md`` section 9), never optimised:
``np.random.choice`` with replacement on the global RNG, the loss recomputed after each
update, evaluation when ``current_iter % iter_per_epoch == 0`` (``iter_per_epoch`` is a
float, so a non-integer value rarely triggers it), and the book's prints.
"""

import numpy as np

from bpfast.reference.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop


class Trainer:
    """Train a network with an optimizer chosen by name (book chapters 6-8).

    Parameters
    ----------
    network : object with ``params``, ``gradient``, ``loss``, ``accuracy``
    x_train, t_train, x_test, t_test : ndarray
    epochs : int
    mini_batch_size : int
    optimizer : str
        'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop' or 'adam' (any case).
    optimizer_param : dict
        Keyword arguments of the optimizer.
    evaluate_sample_num_per_epoch : int or None
        Evaluate accuracy on the first samples only.
    verbose : bool
    """

    def __init__(self, network, x_train, t_train, x_test, t_test,
                 epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param={"lr": 0.01},
                 evaluate_sample_num_per_epoch=None, verbose=True):
        self.network = network
        self.verbose = verbose
        self.x_train = x_train
        self.t_train = t_train
        self.x_test = x_test
        self.t_test = t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch

        # optimizer
        optimizer_class_dict = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov,
                                "adagrad": AdaGrad, "rmsprop": RMSprop, "adam": Adam}
        self.optimizer = optimizer_class_dict[optimizer.lower()](**optimizer_param)

        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []

    def train_step(self):
        batch_mask = np.random.choice(self.train_size, self.batch_size)
        x_batch = self.x_train[batch_mask]
        t_batch = self.t_train[batch_mask]

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)

        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1

            x_train_sample, t_train_sample = self.x_train, self.t_train
            x_test_sample, t_test_sample = self.x_test, self.t_test
            if self.evaluate_sample_num_per_epoch is not None:
                t = self.evaluate_sample_num_per_epoch
                x_train_sample, t_train_sample = self.x_train[:t], self.t_train[:t]
                x_test_sample, t_test_sample = self.x_test[:t], self.t_test[:t]

            train_acc = self.network.accuracy(x_train_sample, t_train_sample)
            test_acc = self.network.accuracy(x_test_sample, t_test_sample)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)

            if self.verbose:
                print("=== epoch:" + str(self.current_epoch) + ", train acc:" + str(train_acc)
                      + ", test acc:" + str(test_acc) + " ===")
        self.current_iter += 1

    def train(self):
        for i in range(self.max_iter):
            self.train_step()

        test_acc = self.network.accuracy(self.x_test, self.t_test)

        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
