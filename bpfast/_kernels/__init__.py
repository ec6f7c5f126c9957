"""Compiled kernels, one extension module per layer (see the docstring of each).

Every kernel takes ``n_threads`` as an ordinary trailing parameter, not a keyword-only one:
Cython 3.3 reports a wrong ``__signature__`` for fused ``def`` functions with keyword-only
defaults (the default moves onto the previous parameter), which breaks ``mypy.stubtest``
against the ``.pyi`` stubs.  Callers still pass it by keyword.
"""
