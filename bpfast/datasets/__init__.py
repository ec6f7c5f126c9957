"""Datasets for training: the book's ``load_mnist``, Fashion-MNIST, and embedded digits.

::

    from dataset.mnist import load_mnist          # the book
    from bpfast.datasets import load_mnist        # same signature and return value

    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)
    load_dataset("embedded")        # 5,000 real MNIST digits shipped with bpfast, no network
    load_dataset("fashion-mnist")   # or "mnist", or a directory of the four IDX files

Modules: :mod:`~bpfast.datasets.idx` (the IDX file format), :mod:`~bpfast.datasets.sources`
(where files are found, checksums, downloads, the cache) and :mod:`~bpfast.datasets.mnist`
(the loaders and the embedded train/test split).
"""

from bpfast.datasets.idx import read_idx
from bpfast.datasets.mnist import load_dataset, load_mnist
from bpfast.datasets.sources import DatasetNotFoundError, cache_dir

__all__ = ["load_mnist", "load_dataset", "read_idx", "DatasetNotFoundError", "cache_dir"]
