"""Compiled kernels, one extension module per layer (see the docstring of each)."""
