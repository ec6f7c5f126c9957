"""Interleaved timings of the chapter 6-7 layers: the book's NumPy code vs bpfast.

Usage::

    python tools/bench_conv.py [--repeat 41] [--case NAME ...]

Each repetition runs the reference and then bpfast on the same inputs, so both see the same
machine state; the table shows the median of each and their ratio (reference / bpfast).
Thread counts are the environment's (``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``); the
reference's ``np.dot`` and bpfast's ``np.matmul`` use the same BLAS.  The cases are the
targets of issue 5.  Not a test: timings on a shared machine are noisy; the benchmark suite
(``benchmarks/``) is the reference for reported numbers.
"""

import argparse
import time

import numpy as np

import bpfast
import bpfast.reference as ref
import bpfast.reference.util as ref_util
import bpfast.util as util


def _im2col_col2im(mod):
    x = np.random.default_rng(0).standard_normal((100, 1, 28, 28))
    col = ref_util.im2col(x, 5, 5)

    def run():
        mod.im2col(x, 5, 5)
        mod.col2im(col, x.shape, 5, 5)

    return run


def _pooling(mod):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 30, 24, 24))
    dout = rng.standard_normal((100, 30, 12, 12))
    layer = mod.Pooling(2, 2, stride=2)

    def run():
        layer.forward(x)
        layer.backward(dout)

    return run


def _batchnorm(shape):
    def make(mod):
        rng = np.random.default_rng(2)
        x = rng.standard_normal(shape)
        dout = rng.standard_normal(shape)
        d = x[0].size
        layer = mod.BatchNormalization(np.ones(d), np.zeros(d))

        def run():
            layer.forward(x, train_flg=True)
            layer.backward(dout)

        return run

    return make


def _convolution(mod):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 1, 28, 28))
    W = 0.01 * rng.standard_normal((30, 1, 5, 5))
    b = np.zeros(30)
    dout = rng.standard_normal((100, 30, 24, 24))
    layer = mod.Convolution(W, b, stride=1, pad=0)

    def run():
        layer.forward(x)
        layer.backward(dout)

    return run


def _dropout(mod):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 100))
    layer = mod.Dropout(0.5)

    def run():
        layer.forward(x, train_flg=True)
        layer.backward(x)

    return run


def _simple_convnet(mod):
    """The layer chain of the book's SimpleConvNet gradient (ch07/simple_convnet.py), batch
    100: conv 30x5x5 - relu - pool 2x2/2 - affine 4320x100 - relu - affine 100x10 - softmax
    loss; forward then backward, as in ``gradient``."""
    rng = np.random.default_rng(5)
    x = rng.random((100, 1, 28, 28))
    t = rng.integers(0, 10, 100)
    W1, b1 = 0.01 * rng.standard_normal((30, 1, 5, 5)), np.zeros(30)
    W2, b2 = 0.01 * rng.standard_normal((4320, 100)), np.zeros(100)
    W3, b3 = 0.01 * rng.standard_normal((100, 10)), np.zeros(10)
    layers = [mod.Convolution(W1, b1, 1, 0), mod.Relu(), mod.Pooling(2, 2, stride=2),
              mod.Affine(W2, b2), mod.Relu(), mod.Affine(W3, b3)]
    last = mod.SoftmaxWithLoss()

    def run():
        y = x
        for layer in layers:
            y = layer.forward(y)
        last.forward(y, t)
        dout = last.backward(1)
        for layer in reversed(layers):
            dout = layer.backward(dout)

    return run


CASES = {
    "im2col+col2im 100x1x28x28 f5x5": (_im2col_col2im, (ref_util, util)),
    "Pooling 2x2/2 fwd+bwd 100x30x24x24": (_pooling, (ref, bpfast)),
    "BatchNorm fwd+bwd 100x100": (_batchnorm((100, 100)), (ref, bpfast)),
    "BatchNorm fwd+bwd 100x30x24x24": (_batchnorm((100, 30, 24, 24)), (ref, bpfast)),
    "Convolution fwd+bwd 100x1x28x28 30x5x5": (_convolution, (ref, bpfast)),
    "Dropout fwd+bwd 100x100": (_dropout, (ref, bpfast)),
    "SimpleConvNet layer chain fwd+bwd b100": (_simple_convnet, (ref, bpfast)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41)
    parser.add_argument("--case", action="append", choices=sorted(CASES), default=None)
    args = parser.parse_args()
    print(f"bpfast threads: {bpfast.get_num_threads()}, OpenMP: {bpfast.openmp_enabled()}")
    print(f"{'case':42s} {'reference ms':>13s} {'bpfast ms':>10s} {'ratio':>7s}")
    for name in args.case or CASES:
        make, (ref_mod, fast_mod) = CASES[name]
        runs = (make(ref_mod), make(fast_mod))
        for run in runs:  # warm-up: allocations, first-call dispatch
            run()
        times = ([], [])
        for _ in range(args.repeat):
            for run, acc in zip(runs, times):
                t0 = time.perf_counter()
                run()
                acc.append(time.perf_counter() - t0)
        r, f = (1e3 * float(np.median(t)) for t in times)
        print(f"{name:42s} {r:13.3f} {f:10.3f} {r / f:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
