"""``python -m bpfast``: the ``bpfast`` command (see :mod:`bpfast.cli`)."""

import sys

from bpfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
