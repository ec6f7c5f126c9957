"""How bpfast's OpenMP threads and NumPy's OpenBLAS threads get in each other's way.

    python tools/bench_omp_blas.py [--repeat N]

Each variant runs in a fresh process (libgomp reads its environment once, when it loads) and
times, interleaved in a loop:

* ``region``: a two-thread bpfast kernel call on a small array (the cost of waking the
  OpenMP team: what a passive wait policy makes worse);
* ``gemm after region``: ``np.dot`` of a (100, 784) x (784, 50) product (TwoLayerNet's first
  layer) right after such a call, with OpenBLAS at 2 threads (what spinning OpenMP threads make
  worse: they hold the cores OpenBLAS's threads want);
* ``gemm alone``: the same product with no OpenMP region in between.

Variants: libgomp's default, ``GOMP_SPINCOUNT`` at a few values, ``OMP_WAIT_POLICY=passive``.
Medians in microseconds; the machine's load average is printed because on a shared 2-core
machine a busy neighbour dominates every threaded figure.
"""

import argparse
import json
import os
import subprocess
import sys

VARIANTS = [
    ("libgomp default", {}),
    ("GOMP_SPINCOUNT=0", {"GOMP_SPINCOUNT": "0"}),
    ("GOMP_SPINCOUNT=1000", {"GOMP_SPINCOUNT": "1000"}),
    ("GOMP_SPINCOUNT=10000", {"GOMP_SPINCOUNT": "10000"}),
    ("GOMP_SPINCOUNT=100000", {"GOMP_SPINCOUNT": "100000"}),
    ("OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"}),
]

CHILD = r"""
import json, statistics, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from bpfast._kernels import relu
repeat = int(sys.argv[1])
threadpool_limits(2, user_api="blas")
k = relu.relu_forward["double"]
rng = np.random.default_rng(0)
x = rng.standard_normal(1 << 14)
out, mask = np.empty_like(x), np.empty(x.size, np.uint8)
a, w = rng.random((100, 784)), rng.standard_normal((784, 50))
y = np.empty((100, 50))
ns = time.perf_counter_ns
res = {"region": [], "gemm after region": [], "gemm alone": []}
for i in range(repeat + 20):
    t0 = ns(); k(x, out, mask, 2); t1 = ns(); np.dot(a, w, out=y); t2 = ns()
    time.sleep(0.001)
    t3 = ns(); np.dot(a, w, out=y); t4 = ns()
    time.sleep(0.001)
    if i >= 20:
        res["region"].append(t1 - t0)
        res["gemm after region"].append(t2 - t1)
        res["gemm alone"].append(t4 - t3)
print(json.dumps({k: statistics.median(v) / 1000 for k, v in res.items()}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3,
                        help="every variant runs this many times, variants interleaved")
    args = parser.parse_args(argv)
    base = {k: v for k, v in os.environ.items()
            if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    results = {name: [] for name, _ in VARIANTS}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, extra in VARIANTS:
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.repeat)],
                                 env={**base, **extra}, check=True, capture_output=True, text=True)
            results[name].append(json.loads(out.stdout))
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print("| variant | region µs | gemm after region µs | gemm alone µs |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        cells = []
        for key in ("region", "gemm after region", "gemm alone"):
            vals = sorted(r[key] for r in runs)
            cells.append(f"{vals[len(vals) // 2]:,.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
