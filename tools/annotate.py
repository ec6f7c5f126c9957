"""Report where the compiled kernels still touch Python (``cython -a`` with release directives).

Usage::

    python tools/annotate.py            # list every line Cython scores as Python-interacting
    python tools/annotate.py --check    # exit 1 if such a line is inside a loop body
    python tools/annotate.py --html DIR # also keep the annotated HTML files in DIR

Each ``bpfast/_kernels/*.pyx`` is annotated in a temporary directory with the same directives
as the release build (bounds checks off), so the report matches the shipped code.  Lines with
a non-zero score at a ``def`` signature, a ``raise``, a ``return``, ``with nogil`` or a
``prange`` header are expected (argument unpacking, error paths, GIL hand-over); a scored line
anywhere else -- a loop body, a primitive -- is a hot loop calling into Python.
"""

import argparse
import glob
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "bpfast", "_kernels")
DIRECTIVES = ["boundscheck=False", "wraparound=False", "initializedcheck=False", "cdivision=True"]
# Signature lines, `except -1` checkers, error messages continued over several lines, returns,
# module-level imports (run once at import), and the GIL hand-over of `with nogil` / `prange`.
EXPECTED = re.compile(
    r"^\s*(def |cdef int _check\w*\(|raise |return\b|with nogil|for \w+ in prange"
    r"|\*, |f\"|\+ f\"|\"\"\")|^(from|import) "
)


def signature_lines(pyx):
    """Numbers of the continuation lines of multi-line ``def`` signatures (argument parsing)."""
    inside, numbers = False, set()
    with open(pyx) as fh:
        for number, line in enumerate(fh, 1):
            if inside:
                numbers.add(number)
            if line.lstrip().startswith("def "):
                inside = True
            if inside and line.rstrip().endswith(":"):
                inside = False
    return numbers
LINE = re.compile(r'<pre class="cython line score-(\d+)"[^>]*>.*?<span class="">(\d+)</span>: (.*?)</pre>')


def annotate(pyx, workdir):
    subprocess.run(
        [sys.executable, "-m", "cython", "-3", "-a", "-I", ROOT,
         *[a for d in DIRECTIVES for a in ("-X", d)], pyx],
        cwd=workdir, check=True, capture_output=True,
    )
    with open(os.path.join(workdir, os.path.basename(pyx)[:-4] + ".html")) as fh:
        return fh.read()


def scored_lines(report):
    for score, number, code in LINE.findall(report):
        if int(score):
            yield int(number), int(score), html.unescape(re.sub("<[^>]+>", "", code)).rstrip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on unexpected scored lines")
    parser.add_argument("--html", metavar="DIR", help="keep the HTML reports here")
    args = parser.parse_args(argv)
    unexpected = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(KERNELS):
            if name.endswith((".pyx", ".pxd", ".h")):
                shutil.copy(os.path.join(KERNELS, name), tmp)
        for pyx in sorted(glob.glob(os.path.join(tmp, "*.pyx"))):
            report = annotate(pyx, tmp)
            lines = list(scored_lines(report))
            signature = signature_lines(pyx)
            print(f"{os.path.basename(pyx)}: {len(lines)} scored lines, "
                  f"total score {sum(s for _, s, _ in lines)}")
            for number, score, code in lines:
                if number == 1 or number in signature or EXPECTED.match(code):
                    continue
                unexpected += 1
                print(f"  UNEXPECTED line {number} (score {score}): {code.strip()}")
            if args.html:
                os.makedirs(args.html, exist_ok=True)
                shutil.copy(pyx[:-4] + ".html", args.html)
    print(f"{unexpected} scored line(s) outside signatures, error paths and GIL hand-over")
    return 1 if (args.check and unexpected) else 0


if __name__ == "__main__":
    sys.exit(main())
