"""Build configuration of bpfast's compiled kernels (all metadata lives in pyproject.toml).

Environment switches (unset or "0" is off):

* ``BPFAST_DISABLE_OPENMP=1``  build serial kernels even if the compiler has OpenMP;
* ``BPFAST_REQUIRE_OPENMP=1``  fail the build if OpenMP cannot be compiled *and* linked;
* ``BPFAST_CYTHON_DEBUG=1``    bounds, wraparound and initialisation checks back on, so an
  out-of-range index inside a kernel raises IndexError instead of corrupting memory;
* ``BPFAST_ANNOTATE=1``        write ``cython -a`` HTML next to each ``.pyx``.

The extension uses only typed memoryviews (the buffer protocol), never NumPy's C API.
"""

import glob
import os
import sys
import tempfile

from setuptools import Extension, setup  # before Cython, as Cython's docs ask
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0")


DEBUG = _flag("BPFAST_CYTHON_DEBUG")
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": False,
    "cdivision": True,
    "embedsignature": True,
    "freethreading_compatible": True,
}
KERNEL_DIR = os.path.join("bpfast", "_kernels")
OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
SIMD_PROBE = "int main(void) { int s = 0;\n#pragma omp simd reduction(+:s)\nfor (int i = 0; i < 8; i++) s += i;\nreturn s == 28 ? 0 : 1; }\n"


def _compiles(compiler, source, flags, link):
    """Compile (and optionally link) a probe program; False on any failure."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(source)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            if link:
                compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # one compiler per core: the kernel modules are independent
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        omp_flag = "/openmp" if msvc else "-fopenmp"
        use_omp = not _flag("BPFAST_DISABLE_OPENMP") and _compiles(
            self.compiler, OPENMP_PROBE, [omp_flag], link=True
        )
        if _flag("BPFAST_REQUIRE_OPENMP") and not use_omp:
            raise RuntimeError("BPFAST_REQUIRE_OPENMP=1 but OpenMP cannot be compiled and linked")
        # `#pragma omp simd` (vectorised reductions in simd.h) needs no OpenMP runtime.
        simd = [] if (msvc or use_omp) else ["-fopenmp-simd"]
        if simd and not _compiles(self.compiler, SIMD_PROBE, simd, link=False):
            simd = []
        print(
            f"bpfast: OpenMP {'enabled' if use_omp else 'DISABLED (serial kernels)'}; "
            f"bounds checks {'on' if DEBUG else 'off'}",
            file=sys.stderr,
        )
        for ext in self.extensions:
            if not msvc:
                # -fno-trapping-math lets GCC turn the clamps and selects of simd.h's exp
                # into vector blends (with it on, only AVX-512's masked code vectorised).  It
                # only drops the promise to keep FP exception *flags* exact, which nothing
                # here reads; NaN/inf semantics are untouched (unlike -ffast-math).
                ext.extra_compile_args += ["-O3", "-fno-trapping-math"] + simd
            if simd:
                ext.define_macros.append(("BPFAST_OMP_SIMD", "1"))
            if use_omp:
                ext.extra_compile_args.append(omp_flag)
                if not msvc:
                    ext.extra_link_args.append(omp_flag)
        super().build_extensions()


# Cython's memoryview machinery is compiled once, into this module, instead of into every
# kernel module (Cython >= 3.1): a third of the build time and of the installed size.
SHARED_UTILITY = "bpfast._kernels._cyutility"

extensions = [Extension(SHARED_UTILITY, sources=[])] + [
    Extension(
        "bpfast._kernels." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[KERNEL_DIR],
        depends=[os.path.join(KERNEL_DIR, "simd.h")],
    )
    for path in sorted(glob.glob(os.path.join(KERNEL_DIR, "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        annotate=_flag("BPFAST_ANNOTATE"),
        # Directives are not part of Cython's dependency tracking: a debug build must not
        # reuse C generated for a release build, or the reverse.
        force=True,
        shared_utility_qualified_name=SHARED_UTILITY,
    ),
    cmdclass={"build_ext": BuildExt},
)
