"""Run the benchmark suite: ``python benchmarks/run.py --help``.

A thin wrapper: the harness lives in :mod:`bpfast.bench` (so that the installed package's
``python -m bpfast.bench`` and ``bpfast bench`` run the same code).  Run it against an
installed bpfast; see benchmarks/README.md.
"""

import sys

from bpfast.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/run.py"))
