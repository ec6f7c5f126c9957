"""Trainer: the book's training loop, with imports swapped to bpfast, gives the book's numbers.

A training script written as in the book's chapters 6-8 (build a network, hand it to
``Trainer``, ``train()``) is run twice from the same seed -- once with ``bpfast.reference``
(the book's code), once with ``bpfast`` -- on real MNIST digits (the embedded subset) and the
loss and accuracy histories are compared.
"""

import numpy as np
import pytest

import bpfast
import bpfast.optimizers
from bpfast import reference as ref
from bpfast.datasets import load_dataset


@pytest.fixture(scope="module")
def mnist():
    (x_train, t_train), (x_test, t_test) = load_dataset("embedded")
    return x_train[:1000], t_train[:1000], x_test[:300], t_test[:300]


@pytest.fixture(scope="module")
def mnist_images():
    (x_train, t_train), (x_test, t_test) = load_dataset("embedded", flatten=False)
    return x_train[:200], t_train[:200], x_test[:100], t_test[:100]


def book_style_run(mod, data, make_network, seed=0, **trainer_kwargs):
    """The book's ch06/ch07 training script, with ``mod`` standing for the imports."""
    x_train, t_train, x_test, t_test = data
    np.random.seed(seed)
    network = make_network(mod)
    trainer = mod.Trainer(network, x_train, t_train, x_test, t_test, **trainer_kwargs)
    trainer.train()
    return network, trainer


def assert_same_history(tr_fast, tr_ref, rtol=1e-9):
    assert len(tr_fast.train_loss_list) == len(tr_ref.train_loss_list) == tr_ref.max_iter
    np.testing.assert_allclose(tr_fast.train_loss_list, tr_ref.train_loss_list, rtol=rtol)
    # Accuracies are counts of argmax matches: equal unless a score ties within rounding.
    assert tr_fast.train_acc_list == tr_ref.train_acc_list
    assert tr_fast.test_acc_list == tr_ref.test_acc_list
    assert (tr_fast.current_iter, tr_fast.current_epoch) == (tr_ref.current_iter,
                                                             tr_ref.current_epoch)


@pytest.mark.parametrize("optimizer,param", [("SGD", {"lr": 0.1}), ("Adam", {"lr": 0.001}),
                                             ("momentum", {"lr": 0.05})])
def test_multi_layer_net_training_matches_the_book(mnist, optimizer, param):
    make = lambda mod: mod.MultiLayerNet(784, [50, 50], 10, weight_decay_lambda=0.001)  # noqa
    kwargs = dict(epochs=3, mini_batch_size=100, optimizer=optimizer, optimizer_param=param,
                  verbose=False)
    net_ref, tr_ref = book_style_run(ref, mnist, make, **kwargs)
    net, tr = book_style_run(bpfast, mnist, make, **kwargs)
    assert_same_history(tr, tr_ref)
    assert len(tr.train_acc_list) == 3  # 1000 / 100: an integer number of steps per epoch
    for key in net_ref.params:
        np.testing.assert_allclose(net.params[key], net_ref.params[key], rtol=1e-8,
                                   atol=1e-12, err_msg=key)
    # It learns: well above chance (0.1) on held-out digits after 30 steps.
    assert tr.test_acc_list[-1] > 0.3
    assert net.accuracy(mnist[2], mnist[3]) == net_ref.accuracy(mnist[2], mnist[3])


def test_extend_training_with_dropout_and_batchnorm_matches_the_book(mnist):
    # Dropout masks come from the global stream: the same seed gives the same masks.
    make = lambda mod: mod.MultiLayerNetExtend(  # noqa: E731
        784, [40, 40, 40], 10, use_dropout=True, dropout_ration=0.2, use_batchnorm=True)
    kwargs = dict(epochs=2, mini_batch_size=128, optimizer="adagrad",
                  optimizer_param={"lr": 0.05}, evaluate_sample_num_per_epoch=200,
                  verbose=False)
    _, tr_ref = book_style_run(ref, mnist, make, seed=3, **kwargs)
    _, tr = book_style_run(bpfast, mnist, make, seed=3, **kwargs)
    # 1000 / 128 is not an integer: the book evaluates only when the float modulo is 0.
    assert tr_ref.iter_per_epoch == 1000 / 128 and len(tr_ref.train_acc_list) == 1
    assert_same_history(tr, tr_ref)


def test_simple_convnet_training_matches_the_book(mnist_images):
    make = lambda mod: mod.SimpleConvNet(  # noqa: E731
        conv_param={"filter_num": 4, "filter_size": 5, "pad": 0, "stride": 1},
        hidden_size=20, weight_init_std=0.05)
    kwargs = dict(epochs=2, mini_batch_size=50, optimizer="Adam",
                  optimizer_param={"lr": 0.01}, verbose=False)
    _, tr_ref = book_style_run(ref, mnist_images, make, **kwargs)
    _, tr = book_style_run(bpfast, mnist_images, make, **kwargs)
    assert_same_history(tr, tr_ref)


def test_verbose_prints_the_books_epoch_lines_and_a_progress_bar(mnist, capsys):
    make = lambda mod: mod.MultiLayerNet(784, [20], 10)  # noqa: E731
    kwargs = dict(epochs=2, mini_batch_size=200, optimizer="sgd",
                  optimizer_param={"lr": 0.1}, verbose=True)
    book_style_run(ref, mnist, make, **kwargs)
    book = capsys.readouterr().out.splitlines()
    book_style_run(bpfast, mnist, make, **kwargs)
    captured = capsys.readouterr()
    ours = captured.out.splitlines()
    # The book's per-epoch and final lines, verbatim; the per-step loss lines are replaced
    # by the progress bar (on stderr).
    assert [l for l in book if not l.startswith("train loss:")] == ours
    assert sum(l.startswith("=== epoch:") for l in ours) == 2
    assert ours[-2:] == ["=============== Final Test Accuracy ===============",
                         ours[-1]] and ours[-1].startswith("test acc:")
    assert "10/10" in captured.err  # tqdm's bar reached max_iter


def test_quiet_trainer_prints_nothing(mnist, capsys):
    book_style_run(bpfast, mnist, lambda mod: mod.MultiLayerNet(784, [10], 10), epochs=1,
                   mini_batch_size=500, verbose=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("name,cls", [
    ("sgd", "SGD"), ("SGD", "SGD"), ("Momentum", "Momentum"), ("nesterov", "Nesterov"),
    ("AdaGrad", "AdaGrad"), ("rmsprop", "RMSprop"), ("RMSprpo", "RMSprop"), ("adam", "Adam"),
])
def test_optimizer_by_name(mnist, name, cls):
    net = bpfast.MultiLayerNet(784, [10], 10)
    trainer = bpfast.Trainer(net, *mnist, optimizer=name, optimizer_param={"lr": 0.5},
                             verbose=False)
    assert type(trainer.optimizer) is getattr(bpfast.optimizers, cls)
    assert trainer.optimizer.lr == 0.5


def test_unknown_optimizer_raises_keyerror_as_in_the_book(mnist):
    net = bpfast.MultiLayerNet(784, [10], 10)
    for mod in (ref, bpfast):
        with pytest.raises(KeyError):
            mod.Trainer(net, *mnist, optimizer="lbfgs")
    with pytest.raises(KeyError):  # the book's current table has no misspelt key
        ref.Trainer(net, *mnist, optimizer="rmsprpo")


def test_book_attributes(mnist):
    net = bpfast.MultiLayerNet(784, [10], 10)
    tr, tr_ref = (mod.Trainer(net, *mnist, epochs=3, mini_batch_size=300, verbose=False)
                  for mod in (bpfast, ref))
    for attr in ("network", "verbose", "x_train", "t_train", "x_test", "t_test", "epochs",
                 "batch_size", "evaluate_sample_num_per_epoch", "train_size",
                 "iter_per_epoch", "max_iter", "current_iter", "current_epoch",
                 "train_loss_list", "train_acc_list", "test_acc_list"):
        a, b = getattr(tr, attr), getattr(tr_ref, attr)
        assert a is b or (type(a) is type(b) and np.all(a == b)), attr
    assert tr.iter_per_epoch == 1000 / 300 and tr.max_iter == 10
