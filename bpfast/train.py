"""The training loop of ``bpfast train`` and the timed gradient check of ``bpfast gradcheck``.

This is the book's ``ch05/train_neuralnet.py`` as a function, :func:`train`, that returns a
:class:`TrainResult` (loss and accuracy histories, timings) instead of printing, so that the
command line (:mod:`bpfast.cli`) only parses, prints and plots, and so that the loop can be
used and tested from Python::

    from bpfast.train import load_data, train
    data = load_data("embedded")
    result = train(data, iters=2000, seed=0)
    result.test_acc[-1], result.steps_per_second
    fast, ref = compare(data, iters=2000)   # both backends, interleaved, same batches

What one step does (both backends)
----------------------------------
``np.random.choice(train_size, batch_size)`` (with replacement, NumPy's global legacy RNG,
as in the book), the backprop gradient of that batch, the optimizer's update of
``network.params`` in place.  For the two-layer network the bpfast backend runs
``TwoLayerNet.train_step`` (plain SGD fused into the step); otherwise, and on the reference
backend (the book's code), ``network.gradient`` then the optimizer's ``update``.  The
networks (:data:`MODELS`: ``two-layer``, ``mlp``, ``mlp-extend``, ``convnet``) are the
classes of :mod:`bpfast` or, for the reference backend, of :mod:`bpfast.reference`.

Reproducibility and identical batches
-------------------------------------
:func:`train` calls ``np.random.seed(seed)``, builds the network (which draws its initial
weights from the global RNG, as the book's constructors do) and then draws every batch from
the same global RNG.  Nothing else draws from it except the networks themselves (dropout
masks), and bpfast's classes consume it exactly as the book's do, so two runs with the same
seed and model -- one per backend -- get the same initial weights and the same batches,
draw for draw; ``--backend reference`` with a seed is the book's script after
``np.random.seed``.
(The global RNG state is therefore changed by a call, as the book's script changes it.)

Differences from the book's script
----------------------------------
* The recorded loss of a step is the loss of its batch **before** the update (what the
  forward pass of the gradient computed; free), not a second forward pass after the update.
* Labels are class indices (``uint8``), not one-hot rows: the same losses and gradients,
  less memory traffic.
* Accuracies are computed before the first step ("epoch 0") and after every
  ``ceil(train_size / batch_size)`` steps (one epoch), plus after the last step; the book
  evaluates after steps 0, 600, 1200, ... with a float ``iter_per_epoch``.  They are computed
  on the full training and test sets, in chunks of 10,000 images to bound memory, with
  each network's own ``accuracy`` (so ``SimpleConvNet``'s book quirk -- a last partial
  chunk of 100 is left out of the count -- applies to sets whose size is not a multiple of
  100).
"""

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bpfast import reference as _ref

__all__ = [
    "BACKENDS",
    "DEFAULT_ITERS",
    "MODELS",
    "OPTIMIZERS",
    "Dataset",
    "GradCheckResult",
    "ModelSpec",
    "Progress",
    "TrainResult",
    "compare",
    "default_lr",
    "gradient_check_timed",
    "relu_kinks",
    "resolve_model",
    "load_data",
    "make_network",
    "make_optimizer",
    "resolve_iters",
    "train",
]

#: Default number of steps: enough for >= 88 % test accuracy on the embedded digits (50
#: epochs of its 4,000 training images).  The book's script runs 10,000.
DEFAULT_ITERS = 2000
BACKENDS = ("bpfast", "reference")
#: ``--optimizer`` name -> class name in :mod:`bpfast.optimizers` and the book's module.
OPTIMIZERS = {
    "sgd": "SGD",
    "momentum": "Momentum",
    "nesterov": "Nesterov",
    "adagrad": "AdaGrad",
    "rmsprop": "RMSprop",
    "adam": "Adam",
}
_EVAL_CHUNK = 10_000


# ------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """Training and test arrays, as ``load_mnist`` returns them.

    Attributes
    ----------
    name : str
        What was asked for (``"embedded"``, ``"fashion-mnist"``, a directory...).
    x_train : ndarray of shape (N, D) or (N, 1, H, W)
    t_train : ndarray of shape (N,)
        Class indices.
    x_test : ndarray of shape (M, D) or (M, 1, H, W)
    t_test : ndarray of shape (M,)
    """

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray

    @property
    def n_classes(self):
        """Number of classes: ``max(10, largest label + 1)`` (what one-hot rows would have)."""
        labels = [int(t.max()) + 1 for t in (self.t_train, self.t_test) if t.size]
        return max([10, *labels])

    @property
    def sample_shape(self):
        """Shape of one image: ``(D,)`` flattened or ``(1, H, W)``."""
        return self.x_train.shape[1:]


def load_data(name_or_dir="embedded", *, flatten=True):
    """Load a dataset for training: normalised float32 images and index labels.

    Parameters
    ----------
    name_or_dir : str or os.PathLike, default "embedded"
        As :func:`bpfast.datasets.load_dataset`: ``"embedded"``, ``"mnist"``,
        ``"fashion-mnist"`` or a directory of the four IDX files.
    flatten : bool, default True
        Images as rows of D values, or as ``(1, H, W)`` (convolutional models).

    Returns
    -------
    Dataset

    Raises
    ------
    bpfast.datasets.DatasetNotFoundError
        If the dataset is nowhere to be found (the message says where to put it).
    ValueError
        If a file is corrupt, or the training set is empty.
    """
    from bpfast.datasets import load_dataset

    (x_train, t_train), (x_test, t_test) = load_dataset(name_or_dir, flatten=flatten)
    if x_train.shape[0] == 0:
        raise ValueError(f"{name_or_dir}: the training set is empty")
    return Dataset(str(name_or_dir), x_train, t_train, x_test, t_test)


# ------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """How ``--model NAME`` builds a network.

    Attributes
    ----------
    build : callable
        ``build(backend, sample_shape, n_classes, hidden, dtype, **options)`` -> a network
        with ``params``, ``gradient``, ``accuracy`` (and, optionally, ``train_step``);
        ``hidden`` is a tuple of layer sizes.
    hidden : tuple of int
        Default hidden layer sizes.
    max_hidden_layers : int or None
        How many sizes ``hidden`` may have (None: any number).
    flatten : bool
        Whether the network takes flattened images (rows of D values) or ``(1, H, W)``.
    dtypes : tuple of str
        The dtypes it can be trained in.
    options : tuple of str
        The keyword options ``build`` accepts (e.g. ``weight_decay``).
    help : str
        One line for ``--help``.
    """

    build: Callable
    hidden: tuple
    max_hidden_layers: int | None = 1
    flatten: bool = True
    dtypes: tuple = ("float64",)
    options: tuple = ()
    help: str = ""


def _with_dtype(net, dtype):
    """Give a book TwoLayerNet parameters of ``dtype``, re-bound in ``params`` and the layers.

    The book's constructors always make float64 weights; the arrays are converted (the
    float64 draws rounded, as ``bpfast.TwoLayerNet(dtype=float32)`` does) and the layers are
    pointed at the new arrays so that ``params`` and layers stay shared.
    """
    if np.dtype(dtype) == np.float64:
        return net
    for key, layer, attr in (("W1", "Affine1", "W"), ("b1", "Affine1", "b"),
                             ("W2", "Affine2", "W"), ("b2", "Affine2", "b")):
        net.params[key] = net.params[key].astype(dtype)
        setattr(net.layers[layer], attr, net.params[key])
    return net


def _classes(backend):
    """The module holding the network classes of a backend."""
    if backend == "bpfast":
        import bpfast

        return bpfast
    return _ref


def _two_layer(backend, sample_shape, n_classes, hidden, dtype):
    (hidden_size,) = hidden
    input_size = math.prod(sample_shape)
    if backend == "bpfast":
        return _classes(backend).TwoLayerNet(input_size, hidden_size, n_classes, dtype=dtype)
    return _with_dtype(_ref.TwoLayerNet(input_size, hidden_size, n_classes), dtype)


def _mlp(backend, sample_shape, n_classes, hidden, dtype, weight_decay=0):
    return _classes(backend).MultiLayerNet(math.prod(sample_shape), list(hidden), n_classes,
                                           weight_decay_lambda=weight_decay)


def _mlp_extend(backend, sample_shape, n_classes, hidden, dtype, weight_decay=0,
                batchnorm=False, dropout=None):
    return _classes(backend).MultiLayerNetExtend(
        math.prod(sample_shape), list(hidden), n_classes, weight_decay_lambda=weight_decay,
        use_dropout=dropout is not None, dropout_ration=0.5 if dropout is None else dropout,
        use_batchnorm=batchnorm)


def _convnet(backend, sample_shape, n_classes, hidden, dtype):
    (hidden_size,) = hidden
    return _classes(backend).SimpleConvNet(input_dim=tuple(sample_shape), hidden_size=hidden_size,
                                           output_size=n_classes)


#: ``--model`` name -> :class:`ModelSpec`.  A new network is one entry here.
MODELS = {
    "two-layer": ModelSpec(
        _two_layer, hidden=(50,), dtypes=("float64", "float32"),
        help="the book's ch05 TwoLayerNet: Affine, Relu, Affine, SoftmaxWithLoss (hidden 50)",
    ),
    "mlp": ModelSpec(
        _mlp, hidden=(100, 100, 100, 100), max_hidden_layers=None, options=("weight_decay",),
        help="MultiLayerNet (common/multi_layer_net.py): Affine+Relu per hidden layer "
        "(default 100,100,100,100 as in ch06/optimizer_compare_mnist.py), He init",
    ),
    "mlp-extend": ModelSpec(
        _mlp_extend, hidden=(100, 100, 100, 100), max_hidden_layers=None,
        options=("weight_decay", "batchnorm", "dropout"),
        help="MultiLayerNetExtend (common/multi_layer_net_extend.py): MultiLayerNet with "
        "optional --batchnorm and --dropout",
    ),
    "convnet": ModelSpec(
        _convnet, hidden=(100,), flatten=False,
        help="SimpleConvNet (ch07/simple_convnet.py): Conv 30 5x5, Relu, Pool 2x2, Affine "
        "(hidden 100), Relu, Affine",
    ),
}


def resolve_model(model, hidden=None, dtype=np.float64, options=None):
    """Check a model's settings before anything is loaded or built.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    hidden : int or sequence of int, optional
        Hidden layer size(s); default the model's.
    dtype : str or numpy.dtype
    options : dict, optional
        Model options (``weight_decay``, ``batchnorm``, ``dropout``).

    Returns
    -------
    spec : ModelSpec
    hidden : tuple of int
        The sizes to build with.

    Raises
    ------
    ValueError
        An unknown model, a dtype or option it does not take, or bad sizes.
    """
    spec = MODELS.get(model)
    if spec is None:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    if np.dtype(dtype).name not in spec.dtypes:
        raise ValueError(f"model {model} trains in {' or '.join(spec.dtypes)}, not "
                         f"{np.dtype(dtype).name}")
    for name in options or {}:
        if name not in spec.options:
            users = [m for m, other in MODELS.items() if name in other.options]
            raise ValueError(f"model {model} takes no option {name}"
                             + (f" (model {' or '.join(users)} does)" if users else ""))
    hidden = spec.hidden if hidden is None else (
        (hidden,) if isinstance(hidden, int) else tuple(hidden))
    if not hidden or any(int(h) != h or h < 1 for h in hidden):
        raise ValueError(f"hidden layer sizes must be positive integers, got {hidden}")
    if spec.max_hidden_layers is not None and len(hidden) > spec.max_hidden_layers:
        raise ValueError(f"model {model} has one hidden layer size, got {len(hidden)}")
    return spec, hidden


def make_network(model, backend, sample_shape, n_classes, hidden=None, dtype=np.float64,
                 **options):
    """Build a network of the :data:`MODELS` table (draws from NumPy's global RNG).

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    backend : {"bpfast", "reference"}
        bpfast's compiled classes or the book's pure-NumPy ones.
    sample_shape : tuple of int
        Shape of one input sample: ``(D,)``, or ``(C, H, W)`` for ``convnet``.
    n_classes : int
    hidden : int or sequence of int, optional
        Hidden layer size(s); default the model's (:attr:`ModelSpec.hidden`).
    dtype : {numpy.float64, numpy.float32}
    **options
        Model options (:attr:`ModelSpec.options`): ``weight_decay``, ``batchnorm``,
        ``dropout`` (a ratio, or None for no dropout).

    Returns
    -------
    network

    Raises
    ------
    ValueError
        Unknown model or backend, an option or dtype the model does not take, bad sizes.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    spec, hidden = resolve_model(model, hidden, dtype, options)
    if not spec.flatten and len(sample_shape) != 3:
        raise ValueError(f"model {model} needs images of shape (channels, height, width), "
                         f"got samples of shape {tuple(sample_shape)}")
    return spec.build(backend, tuple(sample_shape), n_classes, hidden, np.dtype(dtype),
                      **options)


def default_lr(optimizer):
    """The learning rate used when none is given.

    0.1 for SGD (the book's ``ch05/train_neuralnet.py``); otherwise the optimizer class's
    own default (0.01, Adam 0.001), which is what the book's chapter-6 scripts use.
    """
    if optimizer == "sgd":
        return 0.1
    cls = getattr(_ref, OPTIMIZERS[optimizer])
    return cls.__init__.__defaults__[0]


def make_optimizer(name, backend, lr=None):
    """An optimizer of :mod:`bpfast.optimizers` (or of the book, for the reference backend).

    Parameters
    ----------
    name : str
        A key of :data:`OPTIMIZERS` (``"sgd"``, ``"adam"``...).
    backend : {"bpfast", "reference"}
    lr : float, optional
        Learning rate (default :func:`default_lr`); other hyperparameters are the book's.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if backend == "bpfast":
        from bpfast import optimizers as module
    else:
        module = _ref
    return getattr(module, OPTIMIZERS[name])(lr=default_lr(name) if lr is None else lr)


# ------------------------------------------------------------------------------- training


class Progress:
    """Receives the events of :func:`train` (the command line draws a progress bar).

    Subclass and override what is needed; the default does nothing.
    """

    def start(self, total_steps):
        """Called once before the first step."""

    def step(self, loss):
        """Called after every step with the loss of its batch (before the update)."""

    def evaluated(self, epoch, step, train_acc, test_acc):
        """Called after each evaluation (``epoch`` may be fractional after the last step)."""

    def close(self):
        """Called once at the end, also when training is interrupted."""


@dataclass
class TrainResult:
    """What :func:`train` measured.

    Attributes
    ----------
    model, backend, optimizer : str
    lr : float
    batch_size, iters, iter_per_epoch, seed : int
    dtype : str
    loss : ndarray of shape (iters,)
        Loss of every step's batch, before that step's update.
    eval_steps : ndarray of int
        Steps after which accuracies were computed (0 = before training).
    train_acc, test_acc : ndarray of float
        Accuracy on the full training and test sets at ``eval_steps``.
    wall_time : float
        Seconds for the whole loop, evaluations included (network construction and data
        loading excluded); from :func:`compare`, this backend's share of the interleaved
        loop.
    eval_time : float
        Seconds spent in the evaluations.
    network : object
        The trained network.
    """

    model: str
    backend: str
    optimizer: str
    lr: float
    batch_size: int
    iters: int
    iter_per_epoch: int
    seed: int
    dtype: str
    loss: np.ndarray
    eval_steps: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    wall_time: float
    eval_time: float
    network: object = field(repr=False)

    @property
    def train_time(self):
        """Seconds spent in the training steps (batch selection, gradient, update)."""
        return self.wall_time - self.eval_time

    @property
    def steps_per_second(self):
        """Training steps per second of :attr:`train_time`."""
        return self.iters / self.train_time if self.train_time > 0 else math.inf

    @property
    def eval_epochs(self):
        """``eval_steps`` in epochs."""
        return self.eval_steps / self.iter_per_epoch


def resolve_iters(train_size, batch_size, iters=None, epochs=None):
    """The number of steps of a run, and of one epoch.

    Parameters
    ----------
    train_size, batch_size : int
    iters : int, optional
        Steps; default :data:`DEFAULT_ITERS` (unless ``epochs`` is given).
    epochs : float, optional
        Epochs instead of steps (rounded up to whole steps).

    Returns
    -------
    iters : int
    iter_per_epoch : int
        ``ceil(train_size / batch_size)``, at least 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    per_epoch = max(1, math.ceil(train_size / batch_size))
    if iters is not None and epochs is not None:
        raise ValueError("give iters or epochs, not both")
    if epochs is not None:
        if not 0 < epochs < math.inf:
            raise ValueError(f"epochs must be positive, got {epochs}")
        iters = math.ceil(epochs * per_epoch)
    elif iters is None:
        iters = DEFAULT_ITERS
    if iters < 1:
        raise ValueError(f"iters must be positive, got {iters}")
    return iters, per_epoch


def _accuracy(network, x, t):
    """Accuracy on (x, t) in chunks (the book's ``accuracy`` holds all scores at once)."""
    n = x.shape[0]
    if n == 0:
        return math.nan
    correct = 0
    for start in range(0, n, _EVAL_CHUNK):
        xs, ts = x[start:start + _EVAL_CHUNK], t[start:start + _EVAL_CHUNK]
        correct += round(float(network.accuracy(xs, ts)) * xs.shape[0])
    return correct / n


def _last_loss(network):
    # The book's TwoLayerNet says lastLayer, its MultiLayerNet*/SimpleConvNet last_layer.
    last = getattr(network, "lastLayer", None) or getattr(network, "last_layer")
    return last.loss


def train(data, *, model="two-layer", backend="bpfast", hidden=None, batch_size=100,
          optimizer="sgd", lr=None, iters=None, epochs=None, seed=0, dtype="float64",
          model_options=None, progress=None):
    """Train a network of :data:`MODELS` like the book's ``ch05/train_neuralnet.py``.

    Parameters
    ----------
    data : Dataset
        From :func:`load_data` (flattened or not, as the model needs).
    model : str, default "two-layer"
        A key of :data:`MODELS`.
    backend : {"bpfast", "reference"}, default "bpfast"
        bpfast's compiled classes, or the book's pure-NumPy code (:mod:`bpfast.reference`).
    hidden : int or sequence of int, optional
        Hidden layer size(s); default the model's (50 for the two-layer network).
    batch_size : int, default 100
    optimizer : str, default "sgd"
        A key of :data:`OPTIMIZERS`.
    lr : float, optional
        Learning rate; default :func:`default_lr` (0.1 for SGD).
    iters, epochs : int or float, optional
        Number of steps, or of epochs of ``ceil(train_size / batch_size)`` steps (rounded
        up); at most one of them.  Default :data:`DEFAULT_ITERS` steps.
    seed : int, default 0
        ``np.random.seed(seed)`` before the network is built: same seed, same initial
        weights and same batches on both backends.
    dtype : {"float64", "float32"}, default "float64"
        dtype of the parameters (the images are float32 either way; with float64 weights
        they are converted as NumPy's ``np.dot`` does).
    model_options : dict, optional
        Options of the model's constructor (see :func:`make_network`).
    progress : Progress, optional
        Receives the step and evaluation events.

    Returns
    -------
    TrainResult
    """
    train_size = data.x_train.shape[0]
    iters, per_epoch = resolve_iters(train_size, batch_size, iters, epochs)
    run = _Run(data, model=model, backend=backend, hidden=hidden, batch_size=batch_size,
               optimizer=optimizer, lr=lr, iters=iters, per_epoch=per_epoch, seed=seed,
               dtype=dtype, model_options=model_options, progress=progress)
    run.progress.start(iters)
    try:
        run.advance(iters)
    finally:
        run.progress.close()
    return run.result()


#: Steps each backend runs in its turn of :func:`compare`.
COMPARE_CHUNK = 20


def compare(data, *, backends=BACKENDS, progress_for=None, chunk=COMPARE_CHUNK, **kwargs):
    """Train the same network on several backends, interleaved, from the same seed.

    Each backend gets exactly what :func:`train` would give it alone -- same initial
    weights, same batches, same dropout masks, so the same numbers -- but the runs take turns
    of ``chunk`` steps (alternating which goes first), each with its own copy of NumPy's
    global RNG state.  On a shared machine the load changes from second to second; taking
    turns every few milliseconds exposes both backends to the same load, where two runs one
    after the other would each see different conditions.  A turn of many steps keeps each
    network's buffers warm in the cache, as in a real run.

    Parameters
    ----------
    data : Dataset
    backends : sequence of str, default ("bpfast", "reference")
    progress_for : callable, optional
        ``progress_for(backend)`` -> :class:`Progress` for that backend's run.
    chunk : int, default :data:`COMPARE_CHUNK`
        Steps per turn.
    **kwargs
        The other arguments of :func:`train` (``model``, ``iters``, ``seed``...).

    Returns
    -------
    list of TrainResult
        One per backend, in ``backends`` order.  Each ``wall_time`` is that backend's own
        share of the interleaved loop (its steps and evaluations).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    batch_size = kwargs.pop("batch_size", 100)
    iters, per_epoch = resolve_iters(data.x_train.shape[0], batch_size,
                                     kwargs.pop("iters", None), kwargs.pop("epochs", None))
    runs, states = [], []
    for backend in backends:
        progress = progress_for(backend) if progress_for is not None else None
        runs.append(_Run(data, backend=backend, iters=iters, per_epoch=per_epoch,
                         batch_size=batch_size, progress=progress,
                         **kwargs))
        states.append(np.random.get_state())  # after the seed and the weight draws
    try:
        for run in runs:
            run.progress.start(iters)
        turn = 0
        while not all(run.done for run in runs):
            order = range(len(runs)) if turn % 2 == 0 else reversed(range(len(runs)))
            for k in order:
                np.random.set_state(states[k])
                runs[k].advance(chunk)
                states[k] = np.random.get_state()
            turn += 1
    finally:
        for run in runs:
            run.progress.close()
    return [run.result() for run in runs]


class _Run:
    """One network in training: the state of :func:`train`'s loop, run in chunks of steps."""

    def __init__(self, data, *, model="two-layer", backend="bpfast", hidden=None,
                 batch_size=100, optimizer="sgd", lr=None, iters, per_epoch, seed=0,
                 dtype="float64", model_options=None, progress=None):
        self.data = data
        self.settings = dict(model=model, backend=backend, optimizer=optimizer,
                             batch_size=batch_size, iters=iters, iter_per_epoch=per_epoch,
                             seed=seed, dtype=np.dtype(dtype).name)
        self.progress = Progress() if progress is None else progress
        np.random.seed(seed)
        self.network = network = make_network(model, backend, data.sample_shape,
                                              data.n_classes, hidden, dtype,
                                              **(model_options or {}))
        self.opt = make_optimizer(optimizer, backend, lr)
        if backend == "bpfast" and hasattr(network, "train_step"):
            self.step = network.train_step
        else:
            def step(x, t, opt):
                grads = network.gradient(x, t)
                opt.update(network.params, grads)
                return _last_loss(network)

            self.step = step
        self.batch_size, self.iters, self.per_epoch = batch_size, iters, per_epoch
        self.i = 0  # steps done
        self.loss = np.empty(iters)
        self.eval_steps, self.train_acc, self.test_acc = [], [], []
        self.eval_time = 0.0
        self.wall_time = 0.0

    @property
    def done(self):
        return self.i >= self.iters

    def evaluate(self):
        d = self.data
        t0 = time.perf_counter()
        acc = _accuracy(self.network, d.x_train, d.t_train), _accuracy(self.network, d.x_test,
                                                                        d.t_test)
        self.eval_time += time.perf_counter() - t0
        self.eval_steps.append(self.i)
        self.train_acc.append(acc[0])
        self.test_acc.append(acc[1])
        self.progress.evaluated(self.i / self.per_epoch, self.i, *acc)

    def advance(self, n):
        """Run up to ``n`` more steps, evaluating before the first and after each epoch."""
        start = time.perf_counter()
        if not self.eval_steps:
            self.evaluate()
        x_train, t_train = self.data.x_train, self.data.t_train
        train_size, batch_size, per_epoch = x_train.shape[0], self.batch_size, self.per_epoch
        step, opt, loss, progress = self.step, self.opt, self.loss, self.progress
        choice = np.random.choice
        end = min(self.i + n, self.iters)
        for i in range(self.i + 1, end + 1):
            batch_mask = choice(train_size, batch_size)
            loss[i - 1] = step(x_train[batch_mask], t_train[batch_mask], opt)
            self.i = i
            progress.step(loss[i - 1])
            if i % per_epoch == 0 or i == self.iters:
                self.evaluate()
        self.wall_time += time.perf_counter() - start

    def result(self):
        return TrainResult(
            **self.settings, lr=self.opt.lr, loss=self.loss,
            eval_steps=np.array(self.eval_steps), train_acc=np.array(self.train_acc),
            test_acc=np.array(self.test_acc), wall_time=self.wall_time,
            eval_time=self.eval_time, network=self.network,
        )


# ------------------------------------------------------------------------------- gradient check


@dataclass
class GradCheckResult:
    """What :func:`gradient_check_timed` measured.

    Attributes
    ----------
    diffs : dict of str to float
        Mean absolute difference between backprop and numerical gradients, per parameter.
    numerical_time : float
        Seconds for one ``numerical_gradient`` call.
    backprop_time : float
        Seconds for one ``gradient`` call (median over repeated timings).
    n_params : int
        Number of parameters (the numerical gradient costs two losses per parameter).
    """

    diffs: dict
    numerical_time: float
    backprop_time: float
    n_params: int

    @property
    def ratio(self):
        """How many times slower the numerical gradient is."""
        return self.numerical_time / self.backprop_time


class _Timed:
    """A network proxy that times ``numerical_gradient`` for :func:`bpfast.gradient.gradient_check`."""

    def __init__(self, network):
        self.network = network
        self.numerical_time = math.nan

    def numerical_gradient(self, x, t):
        t0 = time.perf_counter()
        grads = self.network.numerical_gradient(x, t)
        self.numerical_time = time.perf_counter() - t0
        return grads

    def gradient(self, x, t):
        return self.network.gradient(x, t)


def gradient_check_timed(network, x, t, *, file=None, repeat=5):
    """The book's gradient check (printed), plus one numerical vs one backprop gradient's time.

    Parameters
    ----------
    network : object
        With ``params``, ``numerical_gradient(x, t)`` and ``gradient(x, t)``.
    x : ndarray of shape (N, D)
        A small batch (the book's ``gradient_check.py`` takes 3 samples).
    t : ndarray of shape (N,) or (N, C)
    file : file-like, optional
        Where :func:`bpfast.gradient.gradient_check` prints ``key:difference`` lines.
    repeat : int, default 5
        The backprop time is the median of ``repeat`` timings, each averaging enough calls
        to last 0.2 s (one call takes microseconds; a single timing would be noise).

    Returns
    -------
    GradCheckResult
    """
    import timeit

    from bpfast.gradient import gradient_check

    timed = _Timed(network)
    diffs = gradient_check(timed, x, t, file=file)
    timer = timeit.Timer(lambda: network.gradient(x, t))
    per_call = []
    for _ in range(repeat):
        loops, total = timer.autorange()
        per_call.append(total / loops)
    n_params = sum(np.size(p) for p in network.params.values())
    return GradCheckResult({k: float(v) for k, v in diffs.items()}, timed.numerical_time,
                           float(np.median(per_call)), n_params)


def relu_kinks(network, x, h=1e-4):
    """How many hidden pre-activations of a TwoLayerNet lie within ``h`` of the ReLU kink.

    A central difference that moves such a pre-activation across 0 measures half the slope
    of the kink instead of the derivative backprop computes, so the gradient check of
    ``W1``/``b1`` shows a difference of ~1e-6 or more there although backprop is right
    (the book's notebook shows ``W1:1.8e-06 b1:2.4e-05`` for this reason).

    Parameters
    ----------
    network : TwoLayerNet
        bpfast's or the book's.
    x : ndarray of shape (N, D)
        Values in [0, 1] (perturbing a weight by h moves a pre-activation by at most h).
    h : float, default 1e-4
        The numerical gradient's step.

    Returns
    -------
    int
    """
    W1, b1 = network.params["W1"], network.params["b1"]
    pre = x.reshape(x.shape[0], -1) @ W1 + b1
    return int(np.count_nonzero(np.abs(pre) < h))
