"""Benchmark suite: the book's NumPy layers against bpfast (and PyTorch eager, if installed).

Run it with any of::

    python -m bpfast.bench                 # print the markdown table
    python benchmarks/run.py --output BENCHMARKS.md
    bpfast bench --quick --filter 'Relu/*'

(``python -m bpfast.bench --help`` lists the options; ``benchmarks/README.md`` explains the
columns and the measurement hazards.)

How a case is timed
-------------------
Every case has two NumPy sides, ``reference`` (:mod:`bpfast.reference`, the book's code) and
``bpfast``, timed **in the same process and interleaved**: sample 1 of the reference, sample 1
of bpfast, sample 2 of bpfast, sample 2 of the reference, ... (the order alternates so that
neither side always runs right after the other), after warm-up samples that are discarded.
A sample is ``loops`` consecutive calls, ``loops`` chosen once per side so that a sample lasts
at least ``min_time``; its time divided by ``loops`` is one per-call figure.  The table shows
the median of those figures and their interquartile range.  ``time.perf_counter_ns`` is the
clock; the garbage collector is off during the timed samples.

Inputs are generated once per case, before any timing, and every case cycles through several
different input batches (16, or 4 above 2**20 elements): the reference's Relu
branches on the sign of each element, and fed one fixed input its branch predictor learns the
mask and it looks 2.6x faster than in training (``perf-notes.md``, hazard 5).  A backward
sample calls only ``backward``: the forward passes that set the layer state are run before
the timing, one layer object per input batch.  ``Relu.backward`` zeroes ``dout`` in place (the
book's contract), so each side has its own copies of the ``dout`` batches, restored from the
pristine ones before every sample of *both* sides, outside the timed region.

PyTorch (a third column when it imports and ``--no-torch`` is not given) is timed after all
NumPy cases, in a block of its own: its OpenMP threads spin after each parallel region, and
two thread pools fighting over two cores would slow whichever side runs next
(``perf-notes.md``, hazard 2).  NumPy's BLAS is pinned with threadpoolctl (when installed) to
the same thread count for both NumPy sides.
"""

import argparse
import datetime
import fnmatch
import gc
import importlib
import importlib.metadata
import itertools
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

import bpfast
from bpfast import reference

__all__ = ["main", "build_cases", "select", "run_cases", "measure", "render_table",
           "render_targets", "threshold_sweep", "TARGETS"]

# -------------------------------------------------------------------------------------------
# Targets of issue 3 (ratio = reference median / bpfast median, same run).  Keyed by case id;
# see `Case.id` for the format.  One-hot SoftmaxWithLoss rows have no target of their own.
# -------------------------------------------------------------------------------------------
TARGETS = {
    "Relu/fwd+bwd/1000x4096/f64": 8.0,
    "Relu/fwd+bwd/1000x4096/f32": 8.0,
    "Sigmoid/fwd+bwd/1000x4096/f64": 2.5,
    "Sigmoid/fwd+bwd/1000x4096/f32": 2.0,
    "Relu/fwd+bwd/100x50/f64": 3.0,
    "Sigmoid/fwd+bwd/100x50/f64": 2.0,
    "SoftmaxWithLoss/fwd+bwd/1000x1000/f64": 3.0,
    "SoftmaxWithLoss/fwd+bwd/1000x1000/f32": 3.0,
    "SoftmaxWithLoss/fwd+bwd/100x10/f64": 4.0,
    "Affine/fwd+bwd/100x784x50/f64": 1.0,
    "Affine/fwd+bwd/1000x1024x1024/f64": 0.95,
    "NetStep/step/b100 784-50-10/f64": 1.3,
    "NetStep/step/b100 784-50-10/f32": 1.3,
    "NetStep/step/b1000 784-1000-10/f64": 1.25,
    # Network level (issue 4's bpfast.TwoLayerNet): attached to its fused train_step when the
    # class has one, else to gradient + SGD (see _net_level_cases).
    "TwoLayerNet/*/b100 784-50-10/f64": 2.0,
    "TwoLayerNet/*/b1000 784-1000-10/f64": 1.8,
    # Issue 5, chapters 6-8 networks (see _network_cases).
    "SimpleConvNet/gradient/b100 1x28x28 30x5x5-100-10/f64": 3.0,
    "MultiLayerNetExtend/step/b100 784-5x100-10 BN+Dropout/f64": 2.0,
}

DTYPES = {"f64": np.float64, "f32": np.float32}
PASSES = ("fwd", "bwd", "fwd+bwd")
# (rows, columns) of the elementwise layers and of the softmax-loss at small/medium/large.
ELEMENTWISE_SHAPES = ((100, 50), (100, 1000), (1000, 4096))
SOFTMAX_SHAPES = ((100, 10), (100, 1000), (1000, 1000))
AFFINE_SHAPES = ((100, 784, 50), (1000, 1024, 1024))  # (N, D, M)
NET_SHAPES = ((100, 784, 50, 10), (1000, 784, 1000, 10))  # (batch, input, hidden, output)
LEARNING_RATE = 0.1  # the book's ch05 train_neuralnet.py
# A 1-minute load average above this (on this 2-core machine) means a neighbour is running:
# the command warns, as two-thread timings then stall on the busy core.
BUSY_LOAD = 1.0

# Distinct input batches a case cycles through (see the module docstring).  Above
# BIG_ELEMENTS a batch is megabytes of data whose sign pattern no predictor can learn, and 16
# copies would cost gigabytes.
N_INPUTS = 16
N_INPUTS_BIG = 4
BIG_ELEMENTS = 1 << 20


# -------------------------------------------------------------------------------------------
# Timing
# -------------------------------------------------------------------------------------------
def _noop():
    pass


@dataclass
class Runner:
    """One side of a case.

    Parameters
    ----------
    run : callable(loops: int) -> None
        Makes ``loops`` calls of the measured operation (cycling through the case's input
        batches).  Only this is timed.
    prepare : callable() -> None
        Called before every sample, outside the timed region (restores state that ``run``
        mutates, e.g. the ``dout`` that ``Relu.backward`` zeroes in place).
    """

    run: object
    prepare: object = _noop


@dataclass
class Stats:
    """Per-call times of one side of one case, in nanoseconds.

    Attributes
    ----------
    samples : list of float
        One per-call time per sample (sample time / loops), warm-up samples excluded.
    loops : int
        Calls per sample.
    """

    samples: list
    loops: int

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def iqr(self):
        """Interquartile range (0 with fewer than two samples)."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q3 - q1


def _time_once(runner, loops):
    runner.prepare()
    t0 = time.perf_counter_ns()
    runner.run(loops)
    return time.perf_counter_ns() - t0


def _calibrate(runner, min_ns, max_loops=10**7):
    """Calls per sample so that a sample lasts at least ``min_ns`` (as timeit's autorange).

    The first call is usually cold (caches, lazy imports, allocator), hence the loop: the
    estimate is refined until a whole sample really reaches the minimum.
    """
    loops = 1
    while True:
        elapsed = _time_once(runner, loops)
        if elapsed >= min_ns or loops >= max_loops:
            return loops
        loops = min(max_loops, max(2 * loops, math.ceil(1.2 * loops * min_ns / max(elapsed, 1))))


def measure(runners, *, repeat, warmup, min_time, quiesce=0.0):
    """Time several sides of one case, interleaved.

    Parameters
    ----------
    runners : dict of str to Runner
        The sides, in their initial order.
    repeat : int
        Samples kept per side.
    warmup : int
        Samples run first and discarded, per side.
    min_time : float
        Seconds a sample should last at least; ``loops`` is calibrated per side first
        (which also warms the code path up).
    quiesce : float
        Seconds to sleep before each sample (untimed), so that the thread pools of the side
        that ran before (OpenBLAS, libgomp, torch) have gone to sleep: spinning workers of
        one pool would otherwise compete with the next side's threads for the two cores.

    Returns
    -------
    dict of str to Stats
    """
    names = list(runners)
    loops = {name: _calibrate(runners[name], min_time * 1e9) for name in names}
    samples = {name: [] for name in names}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(warmup + repeat):
            k = i % len(names)
            # Rotate the order (for two sides: alternate) so that drift and the after-effects
            # of one side (caches, spinning threads) hit every side alike.
            for name in names[k:] + names[:k]:
                runner = runners[name]
                runner.prepare()
                if quiesce:
                    time.sleep(quiesce)
                t0 = time.perf_counter_ns()
                runner.run(loops[name])
                elapsed = time.perf_counter_ns() - t0
                if i >= warmup:
                    samples[name].append(elapsed / loops[name])
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Stats(samples[name], loops[name]) for name in names}


def copy_bandwidth(*, nbytes=1 << 26, repeat=9):
    """Measured single-thread memory bandwidth of ``np.copyto`` on two large arrays.

    Parameters
    ----------
    nbytes : int
        Size of each array; 64 MiB is well beyond the last-level cache.
    repeat : int
        Copies timed; the fastest is used.

    Returns
    -------
    float
        Bytes per second, counting the bytes read plus the bytes written (2 * nbytes per
        copy; write-allocate traffic is not counted, as in the per-case byte counts).
    """
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)
    np.copyto(dst, src)  # first touch: page faults out of the timing
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        t = time.perf_counter_ns() - t0
        best = t if best is None else min(best, t)
    # The fastest copy, not the median: this is a ceiling, and on a shared machine the slow
    # copies measure the neighbours.
    return 2 * src.nbytes / (best * 1e-9)


# -------------------------------------------------------------------------------------------
# Cases
# -------------------------------------------------------------------------------------------
@dataclass
class Case:
    """A benchmark case: one operation, one shape, one dtype, timed on every side.

    Attributes
    ----------
    layer, pass_, shape, dtype : str
        Together the case id ``layer/pass/shape/dtype`` (``--filter`` matches it).
    make_data : callable(rng) -> dict
        Generates the inputs, once, before any timing; shared by every side (read-only).
    sides : dict of str to callable(data) -> Runner
        ``"reference"`` and ``"bpfast"``.
    torch : callable(torch, data) -> Runner, or None
        The PyTorch eager version, if there is one.
    bytes_moved : int or None
        For elementwise cases, the bytes the operation must read and write at least (see
        ``benchmarks/README.md``); compared with the measured copy bandwidth.
    target : float or None
        The issue's minimum reference/bpfast ratio.
    skip : str
        Why the case cannot run here (empty if it can).
    torch_from : str
        Id of another case whose torch timing stands for this one (same computation).
    """

    layer: str
    pass_: str
    shape: str
    dtype: str
    make_data: object = None
    sides: dict = field(default_factory=dict)
    torch: object = None
    bytes_moved: int = None
    target: float = None
    skip: str = ""
    torch_from: str = ""

    @property
    def id(self):
        return f"{self.layer}/{self.pass_}/{self.shape}/{self.dtype}"

    @property
    def seed_offset(self):
        # Inputs depend on the seed and the case id only, so the torch block regenerates the
        # very same batches the NumPy sides saw.
        return zlib.crc32(f"{self.layer}/{self.shape}/{self.dtype}".encode())


def _n_inputs(elements):
    return N_INPUTS_BIG if elements > BIG_ELEMENTS else N_INPUTS


def _normal(rng, shape, dtype, count):
    return [rng.standard_normal(shape, dtype=dtype) for _ in range(count)]


def _cycled(*seqs):
    """An endless iterator over the tuples of ``zip(*seqs)`` (one item per input batch)."""
    return itertools.cycle(list(zip(*seqs)) if len(seqs) > 1 else list(seqs[0]))


def _dout_copies(douts0):
    """Private copies of the dout batches and a ``prepare`` that restores them (untimed)."""
    douts = [d.copy() for d in douts0]

    def prepare():
        for d, d0 in zip(douts, douts0):
            np.copyto(d, d0)

    return douts, prepare


# --- Relu / Sigmoid ------------------------------------------------------------------------
def _unary_data(shape, dtype):
    def make(rng):
        k = _n_inputs(math.prod(shape))
        return {"x": _normal(rng, shape, dtype, k), "dout": _normal(rng, shape, dtype, k)}

    return make


def _unary_runner(impl, cls_name, pass_):
    """Runner factory for Relu/Sigmoid on the layer classes of ``impl``."""
    # Relu.backward writes into dout: each side gets its own copies, restored before every
    # sample.  Sigmoid.backward does not, so it reads the shared batches directly.
    mutates_dout = cls_name == "Relu"

    def factory(data):
        cls = getattr(impl, cls_name)
        xs = data["x"]
        if pass_ == "fwd":
            fwd = cls().forward
            cyc = _cycled(xs)

            def run(loops):
                for x in itertools.islice(cyc, loops):
                    fwd(x)

            return Runner(run)
        if mutates_dout:
            douts, prepare = _dout_copies(data["dout"])
        else:
            douts, prepare = data["dout"], _noop
        if pass_ == "bwd":
            layers = [cls() for _ in xs]
            for layer, x in zip(layers, xs):
                layer.forward(x)
            cyc = _cycled([layer.backward for layer in layers], douts)

            def run(loops):
                for bwd, d in itertools.islice(cyc, loops):
                    bwd(d)

            return Runner(run, prepare)
        layer = cls()
        fwd, bwd = layer.forward, layer.backward
        cyc = _cycled(xs, douts)

        def run(loops):
            for x, d in itertools.islice(cyc, loops):
                fwd(x)
                bwd(d)

        return Runner(run, prepare)

    return factory


def _torch_unary(fn_name, pass_):
    def factory(torch, data):
        fn = getattr(torch, fn_name)
        grad = torch.autograd.grad
        xs = [torch.from_numpy(x).requires_grad_() for x in data["x"]]
        douts = [torch.from_numpy(d) for d in data["dout"]]
        if pass_ == "fwd":
            cyc = _cycled(xs)

            def run(loops):
                for x in itertools.islice(cyc, loops):
                    fn(x)

        elif pass_ == "bwd":
            outs = [fn(x) for x in xs]
            cyc = _cycled(outs, xs, douts)

            def run(loops):
                for y, x, d in itertools.islice(cyc, loops):
                    grad(y, x, d, retain_graph=True)

        else:
            cyc = _cycled(xs, douts)

            def run(loops):
                for x, d in itertools.islice(cyc, loops):
                    grad(fn(x), x, d)

        return Runner(run)

    return factory


def _unary_bytes(cls_name, pass_, n, itemsize):
    # Relu keeps a 1-byte-per-element mask (written forward, read backward); Sigmoid's
    # backward reads dout and out.
    if cls_name == "Relu":
        per = {"fwd": 2 * itemsize + 1, "bwd": 2 * itemsize + 1}
    else:
        per = {"fwd": 2 * itemsize, "bwd": 3 * itemsize}
    per["fwd+bwd"] = per["fwd"] + per["bwd"]
    return n * per[pass_]


# --- SoftmaxWithLoss -----------------------------------------------------------------------
def _softmax_data(shape, dtype, onehot):
    def make(rng):
        k = _n_inputs(math.prod(shape))
        n, c = shape
        labels = [rng.integers(0, c, n) for _ in range(k)]
        targets = [np.eye(c, dtype=dtype)[t] for t in labels] if onehot else labels
        return {"x": _normal(rng, shape, dtype, k), "t": targets}

    return make


def _softmax_runner(impl, pass_):
    def factory(data):
        cls = impl.SoftmaxWithLoss
        xs, ts = data["x"], data["t"]
        if pass_ == "fwd":
            fwd = cls().forward
            cyc = _cycled(xs, ts)

            def run(loops):
                for x, t in itertools.islice(cyc, loops):
                    fwd(x, t)

        elif pass_ == "bwd":
            layers = [cls() for _ in xs]
            for layer, x, t in zip(layers, xs, ts):
                layer.forward(x, t)
            cyc = _cycled([layer.backward for layer in layers])

            def run(loops):
                for bwd in itertools.islice(cyc, loops):
                    bwd(1)

        else:
            layer = cls()
            fwd, bwd = layer.forward, layer.backward
            cyc = _cycled(xs, ts)

            def run(loops):
                for x, t in itertools.islice(cyc, loops):
                    fwd(x, t)
                    bwd(1)

        return Runner(run)

    return factory


def _torch_softmax(pass_):
    def factory(torch, data):
        xent = torch.nn.functional.cross_entropy
        grad = torch.autograd.grad
        xs = [torch.from_numpy(x).requires_grad_() for x in data["x"]]
        ts = [torch.from_numpy(t) for t in data["t"]]
        if pass_ == "fwd":
            cyc = _cycled(xs, ts)

            def run(loops):
                for x, t in itertools.islice(cyc, loops):
                    xent(x, t)

        elif pass_ == "bwd":
            losses = [xent(x, t) for x, t in zip(xs, ts)]
            cyc = _cycled(losses, xs)

            def run(loops):
                for loss, x in itertools.islice(cyc, loops):
                    grad(loss, x, retain_graph=True)

        else:
            cyc = _cycled(xs, ts)

            def run(loops):
                for x, t in itertools.islice(cyc, loops):
                    grad(xent(x, t), x)

        return Runner(run)

    return factory


def _softmax_bytes(pass_, n, itemsize, onehot):
    # Forward reads the logits and writes y; backward reads y and writes dx; a one-hot target
    # (n floats) is read once per pass; label vectors are negligible.
    t = itemsize if onehot else 0
    per = {"fwd": 2 * itemsize + t, "bwd": 2 * itemsize + t}
    per["fwd+bwd"] = per["fwd"] + per["bwd"]
    return n * per[pass_]


# --- Affine --------------------------------------------------------------------------------
def _affine_data(shape, dtype):
    n, d, m = shape

    def make(rng):
        k = _n_inputs(n * d)
        return {
            "x": _normal(rng, (n, d), dtype, k),
            "dout": _normal(rng, (n, m), dtype, k),
            "W": rng.standard_normal((d, m), dtype=dtype) * dtype(0.01),
            "b": rng.standard_normal(m, dtype=dtype) * dtype(0.01),
        }

    return make


def _affine_runner(impl, pass_):
    def factory(data):
        cls = impl.Affine
        W, b, xs, douts = data["W"], data["b"], data["x"], data["dout"]
        if pass_ == "fwd":
            fwd = cls(W, b).forward
            cyc = _cycled(xs)

            def run(loops):
                for x in itertools.islice(cyc, loops):
                    fwd(x)

        elif pass_ == "bwd":
            layers = [cls(W, b) for _ in xs]
            for layer, x in zip(layers, xs):
                layer.forward(x)
            cyc = _cycled([layer.backward for layer in layers], douts)

            def run(loops):
                for bwd, d in itertools.islice(cyc, loops):
                    bwd(d)

        else:
            layer = cls(W, b)
            fwd, bwd = layer.forward, layer.backward
            cyc = _cycled(xs, douts)

            def run(loops):
                for x, d in itertools.islice(cyc, loops):
                    fwd(x)
                    bwd(d)

        return Runner(run)

    return factory


def _torch_affine(pass_):
    def factory(torch, data):
        addmm = torch.addmm
        grad = torch.autograd.grad
        W = torch.from_numpy(data["W"]).requires_grad_()
        b = torch.from_numpy(data["b"]).requires_grad_()
        # The book's Affine computes dx as well: x requires grad too.
        xs = [torch.from_numpy(x).requires_grad_() for x in data["x"]]
        douts = [torch.from_numpy(d) for d in data["dout"]]
        if pass_ == "fwd":
            cyc = _cycled(xs)

            def run(loops):
                for x in itertools.islice(cyc, loops):
                    addmm(b, x, W)

        elif pass_ == "bwd":
            outs = [addmm(b, x, W) for x in xs]
            cyc = _cycled(outs, xs, douts)

            def run(loops):
                for y, x, d in itertools.islice(cyc, loops):
                    grad(y, (x, W, b), d, retain_graph=True)

        else:
            cyc = _cycled(xs, douts)

            def run(loops):
                for x, d in itertools.islice(cyc, loops):
                    grad(addmm(b, x, W), (x, W, b), d)

        return Runner(run)

    return factory


# --- TwoLayerNet step from the drop-in layers ----------------------------------------------
class BookTwoLayerNet:
    """The book's ``TwoLayerNet`` (ch05/two_layer_net.py) built from a given layers module.

    Only what a training step needs: the same layer graph, ``gradient`` written exactly as
    the book writes it, and the SGD update of ``ch05/train_neuralnet.py``.

    Parameters
    ----------
    impl : module
        Provides ``Affine``, ``Relu`` and ``SoftmaxWithLoss`` (``bpfast.reference`` or
        ``bpfast``).
    params : dict of str to ndarray
        ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,); held, updated in place.
    """

    def __init__(self, impl, params):
        self.params = params
        self.layers = OrderedDict()
        self.layers["Affine1"] = impl.Affine(params["W1"], params["b1"])
        self.layers["Relu1"] = impl.Relu()
        self.layers["Affine2"] = impl.Affine(params["W2"], params["b2"])
        self.lastLayer = impl.SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.lastLayer.forward(self.predict(x), t)

    def gradient(self, x, t):
        """Backprop gradients of the loss, as a dict keyed like ``params``."""
        self.loss(x, t)
        dout = self.lastLayer.backward(1)
        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW,
            "b1": self.layers["Affine1"].db,
            "W2": self.layers["Affine2"].dW,
            "b2": self.layers["Affine2"].db,
        }

    def step(self, x, t, lr=LEARNING_RATE):
        """One SGD step: ``p -= lr * g`` for every parameter (book's train_neuralnet.py)."""
        grads = self.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            self.params[key] -= lr * grads[key]


PARAM_KEYS = ("W1", "b1", "W2", "b2")


def _net_data(shape, dtype):
    batch, d, h, c = shape

    def make(rng):
        # MNIST-like inputs in [0, 1) and one-hot targets (the book's ch05 trains with
        # one_hot_label=True), in the case's dtype so the float32 case stays float32.
        xs = [rng.random((batch, d), dtype=dtype) for _ in range(N_INPUTS)]
        ts = [np.eye(c, dtype=dtype)[rng.integers(0, c, batch)] for _ in range(N_INPUTS)]
        params = {
            "W1": rng.standard_normal((d, h), dtype=dtype) * dtype(0.01),
            "b1": np.zeros(h, dtype),
            "W2": rng.standard_normal((h, c), dtype=dtype) * dtype(0.01),
            "b2": np.zeros(c, dtype),
        }
        return {"x": xs, "t": ts, "params": params}

    return make


def _restore_params(params, pristine):
    """A ``prepare`` that puts the weights back before each sample: same work every sample."""

    def prepare():
        for key in PARAM_KEYS:
            np.copyto(params[key], pristine[key])

    return prepare


def _book_net_runner(impl):
    def factory(data):
        params = {k: v.copy() for k, v in data["params"].items()}
        step = BookTwoLayerNet(impl, params).step
        cyc = _cycled(data["x"], data["t"])

        def run(loops):
            for x, t in itertools.islice(cyc, loops):
                step(x, t)

        return Runner(run, _restore_params(params, data["params"]))

    return factory


def _torch_net(torch, data):
    """Affine-Relu-Affine-softmax cross-entropy, ``loss.backward()``, SGD under no_grad."""
    F = torch.nn.functional
    params = [torch.from_numpy(data["params"][k].copy()).requires_grad_() for k in PARAM_KEYS]
    pristine = [torch.from_numpy(data["params"][k]) for k in PARAM_KEYS]
    W1, b1, W2, b2 = params
    xs = [torch.from_numpy(x) for x in data["x"]]
    ts = [torch.from_numpy(t) for t in data["t"]]
    cyc = _cycled(xs, ts)
    lr = LEARNING_RATE

    def prepare():
        with torch.no_grad():
            for p, p0 in zip(params, pristine):
                p.copy_(p0)

    def run(loops):
        for x, t in itertools.islice(cyc, loops):
            h = torch.relu(torch.addmm(b1, x, W1))
            F.cross_entropy(torch.addmm(b2, h, W2), t).backward()
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-lr)
                    p.grad = None

    return Runner(run, prepare)


# --- TwoLayerNet at network level (issue 4's classes) --------------------------------------
def _net_level_runner(cls, fused):
    """Runner for a book-API ``TwoLayerNet`` class: ``gradient`` + SGD, or ``train_step``."""

    def factory(data):
        pristine = data["params"]
        d, h = pristine["W1"].shape
        c = pristine["W2"].shape[1]
        net = cls(input_size=d, hidden_size=h, output_size=c)
        params = net.params
        for key in PARAM_KEYS:  # in place: the layers hold these very arrays
            params[key][...] = pristine[key]
        cyc = _cycled(data["x"], data["t"])
        lr = LEARNING_RATE
        if fused:
            train_step = net.train_step

            def run(loops):
                for x, t in itertools.islice(cyc, loops):
                    train_step(x, t, lr)

        else:
            gradient = net.gradient

            def run(loops):
                for x, t in itertools.islice(cyc, loops):
                    grads = gradient(x, t)
                    for key in PARAM_KEYS:
                        params[key] -= lr * grads[key]

        return Runner(run, _restore_params(params, pristine))

    return factory


def _net_level_cases(net_shapes):
    try:
        ref_cls = importlib.import_module("bpfast.reference.two_layer_net").TwoLayerNet
        skip = ""
    except (ImportError, AttributeError) as exc:
        ref_cls, skip = None, f"reference TwoLayerNet not importable ({exc})"
    bp_cls = getattr(bpfast, "TwoLayerNet", None)
    if bp_cls is None and not skip:
        skip = "bpfast.TwoLayerNet not available"
    fused = bp_cls is not None and callable(getattr(bp_cls, "train_step", None))
    cases = []
    for shape in net_shapes:
        label = _net_label(shape)
        variants = [("gradient+SGD", False)] + ([("train_step", True)] if fused else [])
        for pass_, is_fused in variants:
            case = Case("TwoLayerNet", pass_, label, "f64", skip=skip,
                        torch_from=f"NetStep/step/{label}/f64")
            # The target is for the network-level step: the fused one when there is one.
            if is_fused == fused:
                case.target = TARGETS.get(f"TwoLayerNet/*/{label}/f64")
            if not skip:
                case.make_data = _net_data(shape, np.float64)
                case.sides = {
                    "reference": _net_level_runner(ref_cls, False),
                    "bpfast": _net_level_runner(bp_cls, is_fused),
                }
            cases.append(case)
    return cases


def _net_label(shape):
    batch, d, h, c = shape
    return f"b{batch} {d}-{h}-{c}"


def _shape_label(shape):
    return "x".join(str(s) for s in shape)


def _tiny(shape):
    return tuple(max(2, s // 64) for s in shape)


# --- Chapters 6-8 networks (issue 5): SimpleConvNet, MultiLayerNetExtend -------------------
# (batch, (C, H, W), filter_num, filter_size, hidden, output); tiny: every path, no meaning.
CONVNET_SHAPE = (100, (1, 28, 28), 30, 5, 100, 10)
CONVNET_TINY = (2, (1, 8, 8), 2, 3, 4, 3)
# (batch, input, hidden layers, output): the book's ch06 batch-norm / dropout experiments.
MLP_EXTEND_SHAPE = (100, 784, (100,) * 5, 10)
MLP_EXTEND_TINY = (2, 8, (4,) * 5, 3)
MLP_EXTEND_LR = 0.01  # the book's Trainer default (optimizer_param={'lr': 0.01})


def _convnet_label(shape):
    batch, (c, h, w), fn, fs, hidden, out = shape
    return f"b{batch} {c}x{h}x{w} {fn}x{fs}x{fs}-{hidden}-{out}"


def _convnet_data(shape):
    batch, dim, _, _, _, out = shape

    def make(rng):
        xs = [rng.random((batch, *dim)) for _ in range(N_INPUTS)]
        ts = [rng.integers(0, out, batch) for _ in range(N_INPUTS)]
        return {"x": xs, "t": ts, "seed": int(rng.integers(2**31))}

    return make


def _convnet_runner(cls, shape):
    """``gradient`` of a SimpleConvNet (the book's or bpfast's) with the same weights."""
    _, dim, fn, fs, hidden, out = shape

    def factory(data):
        np.random.seed(data["seed"])  # the same weight draws for both sides
        net = cls(input_dim=dim, conv_param={"filter_num": fn, "filter_size": fs, "pad": 0,
                                             "stride": 1},
                  hidden_size=hidden, output_size=out)
        gradient = net.gradient
        cyc = _cycled(data["x"], data["t"])

        def run(loops):
            for x, t in itertools.islice(cyc, loops):
                gradient(x, t)

        return Runner(run)

    return factory


def _mlp_extend_label(shape):
    batch, d, hidden, c = shape
    return f"b{batch} {d}-{len(hidden)}x{hidden[0]}-{c} BN+Dropout"


def _mlp_extend_data(shape):
    batch, d, _, c = shape

    def make(rng):
        xs = [rng.random((batch, d)) for _ in range(N_INPUTS)]
        ts = [rng.integers(0, c, batch) for _ in range(N_INPUTS)]
        return {"x": xs, "t": ts, "seed": int(rng.integers(2**31))}

    return make


def _mlp_extend_runner(cls, sgd_cls, shape):
    """One training step of MultiLayerNetExtend: ``gradient`` + ``SGD.update`` (as Trainer)."""
    _, d, hidden, c = shape

    def factory(data):
        np.random.seed(data["seed"])
        net = cls(d, list(hidden), c, use_dropout=True, dropout_ration=0.5,
                  use_batchnorm=True)
        params = net.params
        pristine = {k: v.copy() for k, v in params.items()}
        optimizer = sgd_cls(lr=MLP_EXTEND_LR)
        cyc = _cycled(data["x"], data["t"])

        def prepare():
            for key, value in pristine.items():
                np.copyto(params[key], value)

        def run(loops):
            for x, t in itertools.islice(cyc, loops):
                optimizer.update(params, net.gradient(x, t))

        return Runner(run, prepare)

    return factory


def _network_cases(tiny):
    cases = []
    conv = CONVNET_TINY if tiny else CONVNET_SHAPE
    case = Case("SimpleConvNet", "gradient", _convnet_label(conv), "f64",
                make_data=_convnet_data(conv))
    case.sides = {"reference": _convnet_runner(reference.SimpleConvNet, conv),
                  "bpfast": _convnet_runner(bpfast.SimpleConvNet, conv)}
    cases.append(case)
    mlp = MLP_EXTEND_TINY if tiny else MLP_EXTEND_SHAPE
    case = Case("MultiLayerNetExtend", "step", _mlp_extend_label(mlp), "f64",
                make_data=_mlp_extend_data(mlp))
    case.sides = {"reference": _mlp_extend_runner(reference.MultiLayerNetExtend,
                                                  reference.SGD, mlp),
                  "bpfast": _mlp_extend_runner(bpfast.MultiLayerNetExtend,
                                               bpfast.optimizers.SGD, mlp)}
    cases.append(case)
    return cases


def build_cases(tiny=False):
    """Every benchmark case of issue 3, in table order.

    Parameters
    ----------
    tiny : bool
        Shrink every dimension 64-fold (at least 2): exercises every code path of the
        harness in a fraction of a second per case.  The ids then carry the tiny shapes, so
        no target applies; the numbers mean nothing.

    Returns
    -------
    list of Case
    """
    shrink = _tiny if tiny else tuple
    cases = []
    impls = {"reference": reference, "bpfast": bpfast}
    for cls_name, fn_name in (("Relu", "relu"), ("Sigmoid", "sigmoid")):
        for shape in map(shrink, ELEMENTWISE_SHAPES):
            for dname, dtype in DTYPES.items():
                for pass_ in PASSES:
                    case = Case(cls_name, pass_, _shape_label(shape), dname,
                                make_data=_unary_data(shape, dtype),
                                torch=_torch_unary(fn_name, pass_),
                                bytes_moved=_unary_bytes(cls_name, pass_, math.prod(shape),
                                                         np.dtype(dtype).itemsize))
                    case.sides = {s: _unary_runner(m, cls_name, pass_) for s, m in impls.items()}
                    cases.append(case)
    for shape in map(shrink, AFFINE_SHAPES):
        for dname, dtype in DTYPES.items():
            for pass_ in PASSES:
                case = Case("Affine", pass_, _shape_label(shape), dname,
                            make_data=_affine_data(shape, dtype), torch=_torch_affine(pass_))
                case.sides = {s: _affine_runner(m, pass_) for s, m in impls.items()}
                cases.append(case)
    for onehot in (False, True):
        for shape in map(shrink, SOFTMAX_SHAPES):
            for dname, dtype in DTYPES.items():
                for pass_ in PASSES:
                    case = Case("SoftmaxWithLoss" + ("(one-hot)" if onehot else ""), pass_,
                                _shape_label(shape), dname,
                                make_data=_softmax_data(shape, dtype, onehot),
                                torch=_torch_softmax(pass_),
                                bytes_moved=_softmax_bytes(pass_, math.prod(shape),
                                                           np.dtype(dtype).itemsize, onehot))
                    case.sides = {s: _softmax_runner(m, pass_) for s, m in impls.items()}
                    cases.append(case)
    net_shapes = [shrink(s) for s in NET_SHAPES]
    for shape in net_shapes:
        for dname, dtype in DTYPES.items():
            case = Case("NetStep", "step", _net_label(shape), dname,
                        make_data=_net_data(shape, dtype), torch=_torch_net)
            case.sides = {s: _book_net_runner(m) for s, m in impls.items()}
            cases.append(case)
    cases += _net_level_cases(net_shapes)
    cases += _network_cases(tiny)
    for case in cases:
        if case.target is None:
            case.target = TARGETS.get(case.id)
    return cases


def select(cases, patterns):
    """Cases whose id matches any of the shell-style ``patterns`` (case-insensitive).

    A pattern matches anywhere in the id (``relu`` matches ``Relu/fwd/100x50/f64``); use
    ``*`` and ``?`` as in file names (``+`` and ``(`` are literal).
    """
    if not patterns:
        return list(cases)
    pats = [f"*{p.lower()}*" for p in patterns]
    return [c for c in cases if any(fnmatch.fnmatchcase(c.id.lower(), p) for p in pats)]


# -------------------------------------------------------------------------------------------
# Running
# -------------------------------------------------------------------------------------------
@dataclass
class Result:
    """What one case measured: a ``Stats`` per side (``None`` where a side did not run)."""

    case: Case
    stats: dict = field(default_factory=dict)
    note: str = ""


def _blas_limiter(n_threads):
    """Context manager pinning NumPy's BLAS to ``n_threads`` (or a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n_threads, user_api="blas")


def _log(msg, stream):
    if stream is not None:
        print(msg, file=stream, flush=True)


def run_cases(cases, *, repeat=21, warmup=3, min_time=0.005, quiesce=0.0, seed=0,
              torch_threads=2, use_torch=True, blas_threads=None, progress=sys.stderr):
    """Time every case: the NumPy sides interleaved, then (optionally) PyTorch in its own block.

    Parameters
    ----------
    cases : list of Case
    repeat, warmup : int
        Samples kept and discarded per side.
    min_time : float
        Minimum seconds per sample.
    quiesce : float
        Seconds of sleep before each sample (see :func:`measure`).
    seed : int
        Inputs are drawn from ``default_rng(seed + crc32(case))``.
    torch_threads : int
        ``torch.set_num_threads`` for the PyTorch block.
    use_torch : bool
        Time PyTorch if it imports.
    blas_threads : int or None
        NumPy's BLAS threads for both NumPy sides (default: ``bpfast.get_num_threads()``).
    progress : file or None
        Where to log each case as it runs.

    Returns
    -------
    list of Result
    """
    if blas_threads is None:
        blas_threads = bpfast.get_num_threads()
    results = [Result(case) for case in cases]
    opts = {"repeat": repeat, "warmup": warmup, "min_time": min_time, "quiesce": quiesce}
    # `measure` runs a full collection before each case; objects alive now (and torch's
    # ~10^6 objects, once imported) are frozen so that it only walks what the cases made
    # (0.1-0.2 s per collection otherwise).
    gc.collect()
    gc.freeze()
    try:
        with _blas_limiter(blas_threads):
            for res in results:
                case = res.case
                if case.skip:
                    res.note = case.skip
                    _log(f"skip  {case.id}: {case.skip}", progress)
                    continue
                t0 = time.perf_counter()
                data = case.make_data(np.random.default_rng(seed + case.seed_offset))
                runners = {side: factory(data) for side, factory in case.sides.items()}
                res.stats.update(measure(runners, **opts))
                del runners, data
                _log(f"{time.perf_counter() - t0:6.1f}s {case.id}", progress)
        if use_torch:
            _run_torch(results, torch_threads, seed, opts, progress)
    finally:
        gc.unfreeze()
    return results


def _run_torch(results, torch_threads, seed, opts, progress):
    """The PyTorch column, in a block of its own after every NumPy case.

    torch's OpenMP workers spin after each parallel region and would steal the second core
    from whatever NumPy or bpfast code ran next (perf-notes hazard 2), so nothing else runs
    in between.  torch is imported only here, so the NumPy block runs without its thread
    pools even existing.
    """
    torch = _import_torch()
    if torch is None:
        return
    gc.freeze()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        for res in results:
            case = res.case
            if case.torch is None or case.skip:
                continue
            t0 = time.perf_counter()
            data = case.make_data(np.random.default_rng(seed + case.seed_offset))
            res.stats.update(measure({"torch": case.torch(torch, data)}, **opts))
            del data
            _log(f"{time.perf_counter() - t0:6.1f}s {case.id} [torch]", progress)
    finally:
        torch.set_num_threads(previous_threads)
    by_id = {res.case.id: res for res in results}
    for res in results:
        src = by_id.get(res.case.torch_from)
        if src is not None and "torch" in src.stats and not res.case.skip:
            res.stats["torch"] = src.stats["torch"]


def _import_torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


# -------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------
def _fmt_us(ns):
    us = ns / 1e3
    if us < 10:
        return f"{us:.2f}"
    if us < 100:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def _fmt_stat(stats):
    if stats is None:
        return ""
    med = stats.median
    spread = f" ({100 * stats.iqr / med:.0f}%)" if med > 0 and len(stats.samples) > 1 else ""
    return _fmt_us(med) + spread


def _ratio(num, den):
    if num is None or den is None or den.median <= 0:
        return None
    return num.median / den.median


def _fmt_ratio(r):
    return "" if r is None else f"{r:.2f}"


def _group(case):
    return {"NetStep": "TwoLayerNet step from the drop-in layers",
            "TwoLayerNet": "TwoLayerNet, network level (bpfast.TwoLayerNet vs the book's)"
            }.get(case.layer, case.layer)


TABLE_HEADER = (
    "| case | pass | shape | dtype | reference µs | bpfast µs | ref/bpfast | torch µs "
    "| torch/bpfast | target | met? | bpfast GB/s (% copy) |"
)


def result_row(res, copy_bw):
    """One markdown table row for a result (times are medians, IQR % in parentheses)."""
    case, st = res.case, res.stats
    ref, bp, th = st.get("reference"), st.get("bpfast"), st.get("torch")
    r = _ratio(ref, bp)
    target = case.target
    met = "" if target is None or r is None else ("yes" if r >= target else "**no**")
    roof = ""
    if case.bytes_moved and bp is not None and bp.median > 0:
        gbs = case.bytes_moved / bp.median  # bytes per ns = GB/s
        roof = f"{gbs:.1f}" + (f" ({100 * gbs * 1e9 / copy_bw:.0f}%)" if copy_bw else "")
    cells = [
        case.layer, case.pass_, case.shape, case.dtype,
        _fmt_stat(ref) or (f"skipped: {res.note}" if res.note else ""),
        _fmt_stat(bp), _fmt_ratio(r), _fmt_stat(th), _fmt_ratio(_ratio(th, bp)),
        "" if target is None else f"≥ {target:g}", met, roof,
    ]
    return "| " + " | ".join(cells) + " |"


def render_table(results, copy_bw=None):
    """The results as markdown: one table per layer group, in case order.

    Parameters
    ----------
    results : list of Result
    copy_bw : float or None
        Measured copy bandwidth in bytes/s, for the roofline column.

    Returns
    -------
    str
    """
    out = []
    group = None
    for res in results:
        g = _group(res.case)
        if g != group:
            group = g
            out += ["", f"### {g}", "", TABLE_HEADER, "|" + "---|" * 12]
        out.append(result_row(res, copy_bw))
    return "\n".join(out).lstrip("\n") + "\n"


def render_targets(results):
    """Markdown summary of the rows that have a target (met or not)."""
    rows = ["| case | target | ref/bpfast | met? |", "|---|---|---|---|"]
    for res in results:
        t = res.case.target
        if t is None:
            continue
        r = _ratio(res.stats.get("reference"), res.stats.get("bpfast"))
        met = "not run" if r is None else ("yes" if r >= t else "**no**")
        rows.append(f"| {res.case.id} | ≥ {t:g} | {_fmt_ratio(r)} | {met} |")
    return "\n".join(rows) + "\n"


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision():
    here = os.path.dirname(os.path.abspath(bpfast.__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, text=True, capture_output=True, timeout=10)
        return rev.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _have_threadpoolctl():
    try:
        importlib.import_module("threadpoolctl")
    except ImportError:
        return False
    return True


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    parts = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            parts.append(f"{info.get('internal_api')} {info.get('version')} "
                         f"(architecture {info.get('architecture')}, "
                         f"{info.get('num_threads')} threads by default)")
    return "; ".join(parts) or "none found"


ENV_PREFIXES = ("OPENBLAS_", "OMP_", "GOMP_", "MKL_", "BPFAST_")


def environment_snapshot():
    """The environment variables that change threading or BLAS kernels, as they are."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def render_header(*, command, env, settings, copy_bw, load_before, load_after):
    """The header of BENCHMARKS.md: command, date, machine, versions, threads, environment."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count()
    env_txt = ", ".join(f"`{k}={v}`" for k, v in env.items()) or "none set"
    lines = [
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Machine: {_cpu_model()}, {os.cpu_count()} cores ({cpus} usable), "
        f"{platform.system()} {platform.release()}",
        f"- Load average (1 min) before / after: {load_before:.2f} / {load_after:.2f} "
        "(the machine is shared: a high load means noisy numbers)",
        f"- Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Cython {_version('Cython')}, torch {_version('torch')}, "
        f"threadpoolctl {_version('threadpoolctl')}",
        f"- bpfast {bpfast.__version__}"
        + (f" (git {settings['git']})" if settings.get("git") else "")
        + f": openmp_enabled() = {bpfast.openmp_enabled()}, get_num_threads() = "
        f"{settings['bpfast_threads']}, simd_dispatch() = `{bpfast.simd_dispatch()}`",
        f"- NumPy BLAS: {_blas_info()}; "
        + (f"pinned to {settings['blas_threads']} thread(s) for both NumPy sides"
           if _have_threadpoolctl() else "threads NOT pinned (install threadpoolctl)"),
        f"- PyTorch: {settings['torch']}",
        f"- Threading and BLAS environment variables as they were: {env_txt}. Ratios are "
        "measured under this environment, as it is (an `OPENBLAS_CORETYPE` here slows every "
        "GEMM on both NumPy sides alike; see perf-notes hazard 1).",
        f"- Copy bandwidth (`np.copyto` of 64 MiB, one thread, read + write counted): "
        f"{copy_bw / 1e9:.1f} GB/s" if copy_bw else "- Copy bandwidth: not measured",
        f"- Samples: {settings['repeat']} per side after {settings['warmup']} warm-up, each "
        f"at least {settings['min_time'] * 1e3:g} ms"
        + (f", each after {settings['quiesce'] * 1e3:g} ms of sleep"
           if settings.get("quiesce") else "")
        + f"; seed {settings['seed']}",
    ]
    return "\n".join(lines) + "\n"


METHOD_NOTE = """\
Times are medians per call in microseconds, with the interquartile range as a percentage of
the median in parentheses. `ref/bpfast` > 1 means bpfast is faster than the book's NumPy code;
`torch/bpfast` > 1 means bpfast is faster than PyTorch eager. The reference and bpfast are
timed in the same process, interleaved sample by sample; PyTorch is timed afterwards in a
block of its own. Each case cycles through several input batches (the reference Relu's
branch predictor would otherwise learn a fixed mask). Backward rows time `backward` only.
`bpfast GB/s` is the minimal traffic of the operation (bytes it must read and write) divided
by bpfast's time, and its percentage of the measured copy bandwidth: how close bpfast is to
the memory roofline (above 100% is possible when the data fits in cache or two threads run).
The TwoLayerNet rows use one-hot float targets in the case's dtype (as the book's ch05
training script) and reset the weights before every sample; the torch net step is
`loss.backward()` plus `p.add_(p.grad, alpha=-lr)` under `no_grad`, without an input
gradient for the first layer (torch does not compute what nothing needs).
See benchmarks/README.md for the details and the hazards.
"""


# -------------------------------------------------------------------------------------------
# Threshold sweep
# -------------------------------------------------------------------------------------------
def _sweep_kernels():
    """(name, constant in layers.py, setup(n, dtype, rng) -> callable(n_threads)) per kernel."""
    from bpfast._kernels import affine, relu, sigmoid, softmax_with_loss

    def spec(fused, dtype, *extra):
        return fused["|".join(["float" if dtype == np.float32 else "double", *extra])]

    def relu_fwd(n, dtype, rng):
        k = spec(relu.relu_forward, dtype)
        x = rng.standard_normal(n, dtype=dtype)
        out, mask = np.empty_like(x), np.empty(n, np.uint8)
        return lambda nt: k(x, out, mask, n_threads=nt)

    def relu_bwd(n, dtype, rng):
        k = spec(relu.relu_backward, dtype)
        d = rng.standard_normal(n, dtype=dtype)
        mask = (rng.random(n) < 0.5).astype(np.uint8)
        dx = np.empty_like(d)
        return lambda nt: k(d, mask, dx, n_threads=nt)

    def sig_fwd(n, dtype, rng):
        k = spec(sigmoid.sigmoid_forward, dtype)
        x = rng.standard_normal(n, dtype=dtype)
        out = np.empty_like(x)
        return lambda nt: k(x, out, n_threads=nt)

    def sig_bwd(n, dtype, rng):
        k = spec(sigmoid.sigmoid_backward, dtype)
        d, o = rng.standard_normal(n, dtype=dtype), rng.random(n, dtype=dtype)
        dx = np.empty_like(d)
        return lambda nt: k(d, o, dx, n_threads=nt)

    def cols(n):
        m = min(n, 1024)
        return n // m, m

    def bias(n, dtype, rng):
        k = spec(affine.bias_add, dtype)
        out = rng.standard_normal(cols(n), dtype=dtype)
        b = rng.standard_normal(out.shape[1], dtype=dtype)
        return lambda nt: k(out, b, n_threads=nt)

    def colsum(n, dtype, rng):
        k = spec(affine.column_sum, dtype)
        x = rng.standard_normal(cols(n), dtype=dtype)
        out = np.empty(x.shape[1], dtype)
        return lambda nt: k(x, out, n_threads=nt)

    def xent(c, backward):
        def setup(n, dtype, rng):
            rows = max(1, n // c)
            x = rng.standard_normal((rows, c), dtype=dtype)
            t = rng.integers(0, c, rows)
            y = np.empty_like(x)
            fwd = spec(softmax_with_loss.softmax_xent_forward, dtype, "long")
            if not backward:
                return lambda nt: fwd(x, t, y, n_threads=nt)
            fwd(x, t, y, n_threads=1)
            bwd = spec(softmax_with_loss.softmax_xent_backward, dtype, "long")
            dx = np.empty_like(y)
            return lambda nt: bwd(y, t, dx, n_threads=nt)

        return setup

    return [
        ("relu_forward", "_PAR_ELEMENTWISE", relu_fwd),
        ("relu_backward", "_PAR_ELEMENTWISE", relu_bwd),
        ("sigmoid_forward", "_PAR_EXP", sig_fwd),
        ("sigmoid_backward", "_PAR_ELEMENTWISE", sig_bwd),
        ("bias_add (1024 cols)", "_PAR_ELEMENTWISE", bias),
        ("column_sum (1024 cols)", "_PAR_ELEMENTWISE", colsum),
        ("softmax_xent_forward (10 cols)", "_PAR_ROWS", xent(10, False)),
        ("softmax_xent_forward (1000 cols)", "_PAR_ROWS", xent(1000, False)),
        ("softmax_xent_backward (10 cols)", "_PAR_ELEMENTWISE", xent(10, True)),
        ("softmax_xent_backward (1000 cols)", "_PAR_ELEMENTWISE", xent(1000, True)),
    ]


def _fmt_speedup(r):
    return f"{r:.2f}" if r >= 0.01 else "<0.01"


def crossover(sizes, serial, parallel):
    """Smallest size from which ``parallel`` time is below ``serial`` at every larger size.

    Returns
    -------
    int or None
        ``None`` when the parallel time is not below at the largest size.
    """
    best = None
    for n, t1, t2 in reversed(list(zip(sizes, serial, parallel))):
        if t2 < t1:
            best = n
        else:
            break
    return best


def threshold_sweep(*, exponents=range(10, 23), n_threads=2, dtypes=("f64", "f32"), repeat=9,
                    warmup=2, min_time=0.002, seed=0, progress=sys.stderr):
    """Time each elementwise kernel at 1 and ``n_threads`` threads over sizes ``2**e``.

    The kernels are called directly (bypassing the thresholds in ``bpfast.layers``), the two
    thread counts interleaved as in :func:`measure`.

    Returns
    -------
    str
        Markdown: per kernel and dtype, the ratio time(1 thread) / time(n threads) at each
        size, the crossover size and the current ``_PAR_*`` constant.
    """
    sizes = [1 << e for e in exponents]
    head = ("| kernel | dtype | " + " | ".join(f"2^{e}" for e in exponents)
            + " | crossover | constant (now) |")
    load_before = os.getloadavg()[0]
    lines = [
        f"Ratio = median time at 1 thread / median time at {n_threads} threads "
        "(> 1: threads pay). Crossover = smallest size from which the threaded call is faster "
        "at every larger size.",
        "",
        head,
        "|" + "---|" * (len(sizes) + 4),
    ]
    rng = np.random.default_rng(seed)
    gc.collect()
    gc.freeze()  # see run_cases
    try:
        rows = _sweep_rows(sizes, n_threads, dtypes, rng,
                           {"repeat": repeat, "warmup": warmup, "min_time": min_time}, progress)
    finally:
        gc.unfreeze()
    load = (f"Load average (1 min) before / after: {load_before:.2f} / "
            f"{os.getloadavg()[0]:.2f}: above 1 on two cores, a neighbour holds a core and "
            "every threaded call waits for it (see benchmarks/README.md, hazard 3).")
    return "\n".join([load, ""] + lines + rows) + "\n"


def _sweep_rows(sizes, n_threads, dtypes, rng, opts, progress):
    from bpfast import layers

    lines = []
    for name, const, setup in _sweep_kernels():
        for dname in dtypes:
            dtype = DTYPES[dname]
            serial, parallel = [], []
            for n in sizes:
                call = setup(n, dtype, rng)

                def runner(nt, call=call):
                    def run(loops):
                        for _ in range(loops):
                            call(nt)

                    return Runner(run)

                st = measure({"1": runner(1), "n": runner(n_threads)}, **opts)
                serial.append(st["1"].median)
                parallel.append(st["n"].median)
            x = crossover(sizes, serial, parallel)
            cross = "never" if x is None else f"2^{x.bit_length() - 1} = {x:,}"
            now = getattr(layers, const, None)
            now_txt = f"{const} = {now:,}" if isinstance(now, int) else f"{const} (not found)"
            ratios = " | ".join(_fmt_speedup(a / b) for a, b in zip(serial, parallel))
            lines.append(f"| {name} | {dname} | {ratios} | {cross} | {now_txt} |")
            _log(f"sweep {name} {dname}: crossover {cross}", progress)
    return lines


# -------------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------------
def _positive_int(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return n


def build_parser(prog="python -m bpfast.bench"):
    """The argument parser of the benchmark command."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time the book's NumPy layers (bpfast.reference) against bpfast, "
        "interleaved in one process, and PyTorch eager if installed; print a markdown table.",
    )
    p.add_argument("--quick", action="store_true",
                   help="few samples (3 after 1 warm-up, 0.5 ms each): a smoke run, not numbers")
    p.add_argument("--filter", action="append", metavar="PATTERN", default=[],
                   help="run only cases whose id (layer/pass/shape/dtype, e.g. "
                   "'Relu/fwd+bwd/1000x4096/f64') matches the shell-style pattern anywhere, "
                   "case-insensitive; repeatable")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    p.add_argument("--tiny", action="store_true",
                   help="shrink every shape 64-fold: a test of the harness itself, numbers "
                   "meaningless (the pytest smoke test uses it)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="bpfast.set_num_threads(N) (default: bpfast's own default)")
    p.add_argument("--blas-threads", type=_positive_int, metavar="N",
                   help="NumPy BLAS threads for both NumPy sides (default: bpfast's thread count)")
    p.add_argument("--torch-threads", type=_positive_int, default=2, metavar="N",
                   help="torch.set_num_threads for the PyTorch column (default 2)")
    p.add_argument("--repeat", type=_positive_int, metavar="N",
                   help="samples kept per side (default 21; --quick: 3)")
    p.add_argument("--warmup", type=int, metavar="N", help="warm-up samples (default 3)")
    p.add_argument("--min-time", type=float, metavar="SECONDS",
                   help="minimum duration of a sample (default 0.005)")
    p.add_argument("--quiesce", type=float, default=0.0, metavar="SECONDS",
                   help="sleep this long before every sample (untimed) so that the previous "
                   "side's thread pools have stopped spinning (default 0: back to back, as in "
                   "a training loop)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    p.add_argument("--output", metavar="FILE",
                   help="also write the report (header, targets, tables) to FILE, "
                   "e.g. BENCHMARKS.md")
    p.add_argument("--notes", metavar="FILE",
                   help="markdown file appended to the --output report (hand-written analysis)")
    p.add_argument("--threshold-sweep", action="store_true",
                   help="instead of the cases: time each elementwise kernel at 1 vs N threads "
                   "over 2^10..2^22 elements and print the crossover sizes")
    p.add_argument("--sweep-max", type=int, default=22, metavar="E",
                   help="largest size of the sweep is 2^E (default 22)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv=None, prog="python -m bpfast.bench"):
    """Run the benchmark command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).
    prog : str
        How the command was invoked; shown in ``--help`` and recorded in the report header.

    Returns
    -------
    int
        Exit status.
    """
    env = environment_snapshot()  # before anything could change it
    args = build_parser(prog).parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    progress = None if args.quiet else sys.stderr
    quick = args.quick
    repeat = args.repeat or (3 if quick else 21)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    min_time = args.min_time if args.min_time is not None else (0.0005 if quick else 0.005)
    previous_threads = bpfast.set_num_threads(args.threads) if args.threads is not None else None
    try:
        return _run(args, argv, env, prog, progress, quick, repeat, warmup, min_time)
    finally:
        if args.threads is not None:  # leave the process as we found it (tests call main())
            bpfast.set_num_threads(previous_threads)


def _run(args, argv, env, prog, progress, quick, repeat, warmup, min_time):
    if args.threshold_sweep:
        if not bpfast.openmp_enabled():
            print("bpfast was built without OpenMP: every kernel is serial, nothing to sweep.")
            return 0
        n = max(2, bpfast.get_num_threads())
        print(threshold_sweep(
            exponents=range(10, args.sweep_max + 1), n_threads=n,
            repeat=args.repeat or (3 if quick else 9),
            warmup=args.warmup if args.warmup is not None else (1 if quick else 2),
            min_time=args.min_time if args.min_time is not None else (0.0005 if quick else 0.002),
            seed=args.seed, progress=progress))
        return 0

    cases = select(build_cases(tiny=args.tiny), args.filter)
    if args.list:
        for case in cases:
            print(case.id + (f"  [skipped: {case.skip}]" if case.skip else ""))
        return 0
    if not cases:
        print(f"{prog}: no case matches {args.filter}", file=sys.stderr)
        return 2
    if args.notes and not os.path.isfile(args.notes):
        print(f"{prog}: --notes: no such file: {args.notes}", file=sys.stderr)
        return 2

    use_torch = not args.no_torch
    torch_version = _version("torch")
    if not use_torch:
        torch_txt = "not timed (--no-torch)"
    elif torch_version == "not installed":
        torch_txt = "not installed"
        use_torch = False
    else:
        torch_txt = (f"{torch_version}, eager autograd, {args.torch_threads} threads, "
                     "timed after the NumPy cases")
    bp_threads = bpfast.get_num_threads()
    blas_threads = args.blas_threads or bp_threads
    load_before = os.getloadavg()[0]
    if load_before > BUSY_LOAD:
        _log(f"warning: load average {load_before:.1f} on {os.cpu_count()} cores: other "
             "processes are running, multi-threaded timings will be noisy", sys.stderr)
    copy_bw = copy_bandwidth()
    results = run_cases(cases, repeat=repeat, warmup=warmup, min_time=min_time,
                        quiesce=args.quiesce, seed=args.seed, torch_threads=args.torch_threads,
                        use_torch=use_torch, blas_threads=blas_threads, progress=progress)
    load_after = os.getloadavg()[0]
    if use_torch and not any("torch" in res.stats for res in results):
        torch_txt = (f"{torch_version}: not timed (it did not import, or no selected case "
                     "has a torch version)")
    settings = {
        "bpfast_threads": bp_threads, "blas_threads": blas_threads, "torch": torch_txt,
        "repeat": repeat, "warmup": warmup, "min_time": min_time, "seed": args.seed,
        "quiesce": args.quiesce,
        "git": _git_revision(),
    }
    command = " ".join([prog, shlex.join(argv)]).rstrip()
    header = render_header(command=command, env=env, settings=settings, copy_bw=copy_bw,
                           load_before=load_before, load_after=load_after)
    tables = render_table(results, copy_bw)
    targets = render_targets(results)
    print(header)
    print("## Targets\n\n" + targets)
    print("## All cases\n\n" + tables)
    if args.output:
        parts = ["# bpfast benchmarks\n", header, METHOD_NOTE, "## Targets (issue 3)\n",
                 targets, "## All cases\n", tables]
        if args.notes:
            with open(args.notes, encoding="utf-8") as fh:
                parts += ["## Notes\n", fh.read()]
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write("\n".join(p.rstrip("\n") + "\n" for p in parts))
        _log(f"wrote {args.output}", progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
