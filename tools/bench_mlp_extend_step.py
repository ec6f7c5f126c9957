"""Where the time of the MultiLayerNetExtend benchmark step goes (interleaved medians).

Usage::

    python tools/bench_mlp_extend_step.py [--rounds 60]

The benchmark row "MultiLayerNetExtend step" (bpfast/bench.py) is ``gradient`` +
``SGD.update`` at batch 100, 784-5x100-10 with BatchNorm and Dropout, float64.  This script
times, interleaved round by round on one thread (BLAS pinned by environment variables set
before NumPy is imported):

* ``gemm floor``: the 17 matrix products of the step alone, into preallocated arrays;
* ``gemm + draws floor``: the same plus the five Dropout draws (``np.random`` stream);
* ``bpfast gradient`` / ``bpfast step`` / ``reference step``;
* ``bpfast SGD.update`` / ``reference SGD.update`` on one set of gradients.

Everything above the floors is what bpfast's step spends beyond what both sides must pay.
"""

import argparse
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

import bpfast  # noqa: E402
import bpfast.optimizers  # noqa: E402
from bpfast import reference  # noqa: E402

BATCH, D, HIDDEN, C = 100, 784, [100] * 5, 10


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args()
    bpfast.set_num_threads(1)
    rng = np.random.default_rng(0)
    xs = [rng.random((BATCH, D)) for _ in range(4)]
    ts = [rng.integers(0, C, BATCH) for _ in range(4)]

    def build(cls):
        np.random.seed(1)
        return cls(D, HIDDEN, C, use_dropout=True, dropout_ration=0.5, use_batchnorm=True)

    ref_net, bp_net = build(reference.MultiLayerNetExtend), build(bpfast.MultiLayerNetExtend)
    ref_sgd, bp_sgd = reference.SGD(0.01), bpfast.optimizers.SGD(0.01)
    Ws = [bp_net.params[f"W{i}"].copy() for i in range(1, len(HIDDEN) + 2)]
    hs = [np.empty((BATCH, h)) for h in HIDDEN]
    s = np.empty((BATCH, C))
    dh = np.empty((BATCH, max(HIDDEN)))
    dWs = [np.empty(W.shape) for W in Ws]
    u = np.empty((BATCH, max(HIDDEN)))

    def gemms(i, draws):
        x = xs[i % 4]
        h = x
        for k in range(len(HIDDEN)):
            np.dot(h, Ws[k], out=hs[k])
            if draws:
                u[...] = np.random.rand(*u.shape)
            h = hs[k]
        np.dot(h, Ws[-1], out=s)
        d = s
        for k in range(len(HIDDEN), 0, -1):
            np.dot(hs[k - 1].T, d, out=dWs[k])
            np.dot(d, Ws[k].T, out=dh)
            d = dh
        np.dot(x.T, d, out=dWs[0])

    g_bp = {k: v.copy() for k, v in bp_net.gradient(xs[0], ts[0]).items()}
    g_ref = {k: v.copy() for k, v in g_bp.items()}
    p_bp = {k: v.copy() for k, v in bp_net.params.items()}
    p_ref = {k: v.copy() for k, v in bp_net.params.items()}
    cases = {
        "gemm floor": lambda i: gemms(i, False),
        "gemm + draws floor": lambda i: gemms(i, True),
        "bpfast gradient": lambda i: bp_net.gradient(xs[i % 4], ts[i % 4]),
        "bpfast step": lambda i: bp_sgd.update(bp_net.params,
                                               bp_net.gradient(xs[i % 4], ts[i % 4])),
        "reference step": lambda i: ref_sgd.update(ref_net.params,
                                                   ref_net.gradient(xs[i % 4], ts[i % 4])),
        "bpfast SGD.update": lambda i: bp_sgd.update(p_bp, g_bp),
        "reference SGD.update": lambda i: ref_sgd.update(p_ref, g_ref),
    }
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            for i in range(3):
                fn(i)
            times[name].append((time.perf_counter() - t0) / 3 * 1e6)
    for name, v in times.items():
        print(f"{name:22s} median {np.median(v):8.0f} us   q1 {np.percentile(v, 25):8.0f} us")
    ratio = np.median(times["reference step"]) / np.median(times["bpfast step"])
    print(f"reference step / bpfast step: {ratio:.2f}")


if __name__ == "__main__":
    main()
