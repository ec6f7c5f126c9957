"""Time the network-level training step: the book's TwoLayerNet against bpfast's.

One step is what ``ch05/train_neuralnet.py`` does per iteration minus the bookkeeping:
``grads = net.gradient(x, t)`` then ``params[key] -= lr * grads[key]`` for the four keys.
bpfast is timed three ways: ``train_step(x, t, lr)`` (fused SGD), ``gradient`` + the book's
update loop, and ``gradient`` alone.  All variants run in the same process, interleaved
round by round, cycling through 16 different synthetic MNIST-like batches (so that the
reference's Relu mask assignment does not profit from a branch predictor that learned one
mask), with warm-up; the table shows medians and ratios reference / bpfast.

Usage::

    python tools/bench_train_step.py [--rounds 200] [--case b100] [--case b1000] [--float32]
    python tools/bench_train_step.py --kernel-threads   # the step's kernels, 1 vs 2 threads

``--kernel-threads`` times the elementwise kernels of the step at batch 1000 x hidden 1000,
each with 1 and with 2 OpenMP threads, right after a GEMM as in the step (why
``bpfast/two_layer_net.py`` keeps them single-threaded below ``_PAR_ELEMENTWISE``).

The benchmark suite of issue 3 (``benchmarks/``) is the authoritative measurement; this
script is the development check of the TwoLayerNet targets (>= 2x at batch 100, 784-50-10;
>= 1.8x at batch 1000, 784-1000-10).
"""

import argparse
import os
import platform
import statistics
import time

import numpy as np

import bpfast
from bpfast import reference as ref

CASES = {"b100": (100, 784, 50, 10), "b1000": (1000, 784, 1000, 10)}
LR = 0.1


def batches(n, d, c, count, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = (rng.random((n, d)) * (rng.random((n, d)) < 0.2)).astype(np.float32)
        t = rng.integers(0, c, n)
        out.append((x, t))
    return out


def book_step(net, x, t):
    grads = net.gradient(x, t)
    for key in ("W1", "b1", "W2", "b2"):
        net.params[key] -= LR * grads[key]


def run_case(name, rounds, dtype):
    n, d, h, c = CASES[name]
    data = batches(n, d, c, 16)
    np.random.seed(0)
    net_ref = ref.TwoLayerNet(d, h, c)
    np.random.seed(0)
    net_fast = bpfast.TwoLayerNet(d, h, c, dtype=dtype)
    if dtype == np.float32:  # the book's code on float32 weights (re-bound in layers too)
        for key, layer in (("W1", "Affine1"), ("W2", "Affine2")):
            net_ref.params[key] = net_ref.params[key].astype(np.float32)
            net_ref.layers[layer].W = net_ref.params[key]
        for key, layer in (("b1", "Affine1"), ("b2", "Affine2")):
            net_ref.params[key] = net_ref.params[key].astype(np.float32)
            net_ref.layers[layer].b = net_ref.params[key]
    variants = {
        "reference step": lambda x, t: book_step(net_ref, x, t),
        "bpfast train_step": lambda x, t: net_fast.train_step(x, t, LR),
        "bpfast gradient + update": lambda x, t: book_step(net_fast, x, t),
        "bpfast gradient only": lambda x, t: net_fast.gradient(x, t),
    }
    times = {k: [] for k in variants}
    keys = list(variants)
    for r in range(rounds + 10):
        x, t = data[r % len(data)]
        # Rotate the order every round: no variant always runs right after the reference.
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = variants[key]
            t0 = time.perf_counter()
            fn(x, t)
            dt = time.perf_counter() - t0
            if r >= 10:  # warm-up
                times[key].append(dt)
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    base = med["reference step"]
    print(f"\n{name}: batch {n}, {d}-{h}-{c}, {np.dtype(dtype).name} weights, float32 input, "
          f"{rounds} rounds")
    print("| variant | median µs | reference / variant |")
    print("|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:,.0f} | {base / v:.2f}x |")


def kernel_threads(rounds):
    from bpfast._kernels import two_layer_net as k

    rng = np.random.default_rng(1)
    n, d, h = 1000, 784, 1000
    x = rng.random((n, d))
    W = rng.standard_normal((d, h)) * 0.01
    a = np.empty((n, h))
    b = rng.standard_normal(h) * 0.01
    mask = np.empty((n, h), np.uint8)
    dh = np.empty((n, h))
    db = np.empty(h)
    kernels = {
        "bias_relu_forward": lambda nt: k.bias_relu_forward["double"](a, b, mask, n_threads=nt),
        "relu_backward_colsum": lambda nt: k.relu_backward_colsum["double"](dh, mask, db,
                                                                            n_threads=nt),
    }
    times = {(name, nt): [] for name in kernels for nt in (1, 2)}
    for r in range(rounds + 3):
        for (name, nt), acc in times.items():
            np.dot(x, W, out=a)  # as in the step: the kernel follows a (threaded) GEMM
            dh[...] = a
            t0 = time.perf_counter()
            kernels[name](nt)
            if r >= 3:
                acc.append(time.perf_counter() - t0)
    print("\nstep kernels at 1000 x 1000 float64, each right after a 1000x784x1000 GEMM")
    print("| kernel | 1 thread median µs | 2 threads median µs |")
    print("|---|---:|---:|")
    for name in kernels:
        one, two = (statistics.median(times[name, nt]) * 1e6 for nt in (1, 2))
        print(f"| {name} | {one:,.0f} | {two:,.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    ap.add_argument("--float32", action="store_true", help="float32 weights (dtype option)")
    ap.add_argument("--kernel-threads", action="store_true",
                    help="time the step's kernels with 1 and 2 threads instead")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP"))}
    print(f"python {platform.python_version()}, numpy {np.__version__}, bpfast "
          f"{bpfast.__version__}, OpenMP {bpfast.openmp_enabled()} "
          f"({bpfast.get_num_threads()} threads), env {env or '{}'}")
    if args.kernel_threads:
        kernel_threads(min(args.rounds, 50))
        return
    for name in args.case or ["b100", "b1000"]:
        run_case(name, args.rounds, np.float32 if args.float32 else np.float64)


if __name__ == "__main__":
    main()
