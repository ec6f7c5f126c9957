"""``load_mnist`` with the book's signature, and ``load_dataset`` for the ``bpfast`` command.

Same return value, shapes and dtypes as the book's ``dataset/mnist.py``, with these changes:
files are searched in a data directory, a cache and system directories before being
downloaded from a list of mirrors (see :mod:`bpfast.datasets.sources`); every file is
checksummed and validated; every returned array is a fresh writable array (the book's
``uint8`` arrays come back read-only); and an embedded subset of 5,000 real MNIST digits
works with no network at all.

The embedded split
------------------
The 5,000 digits (500 per class) are split into 4,000 training and 1,000 test digits, 400
and 100 of each class.  The split is fixed: a ``numpy.random.default_rng`` seeded with
:data:`EMBEDDED_SEED` permutes each class's indices (classes in order 0-9); its first 400
go to training, the rest to test; then the same generator shuffles the training set and the
test set so they are not sorted by label.  NumPy's global random state is not used, so
loading data does not change a user's seeded run.  (NumPy may change ``Generator`` streams
between feature releases, which would change which digits are in which set, never the
class counts.)
"""

import os
from importlib import resources

import numpy as np

from bpfast.datasets import sources
from bpfast.datasets.idx import decompress, parse_idx
from bpfast.datasets.sources import DatasetNotFoundError, IdxFile

__all__ = ["load_mnist", "load_dataset", "embedded_split", "EMBEDDED_SEED"]

#: Seed of the embedded train/test split (any fixed value would do; it must never change).
EMBEDDED_SEED = 20160924
EMBEDDED_TRAIN_PER_CLASS = 400
EMBEDDED_FILES = {
    "img": IdxFile(
        "mnist5k-images-idx3-ubyte.gz", (5000, 28, 28), "53ef53b96490c9a8e7f6c6b5a75d22a7"
    ),
    "label": IdxFile("mnist5k-labels-idx1-ubyte.gz", (5000,), "87b3188bcaed629a5639fdc01ceff13c"),
}
#: Names accepted by :func:`load_dataset` and ``load_mnist(name=...)``.
DATASET_NAMES = ("embedded", *sources.DATASETS)


def _canonical(name):
    key = str(name).strip().lower().replace("_", "-")
    return {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist"}.get(key, key)


def embedded_split(labels):
    """The fixed stratified split of the embedded digits (see the module docstring).

    Parameters
    ----------
    labels : numpy.ndarray, shape (5000,)
        The embedded labels, 500 of each class 0-9.

    Returns
    -------
    train_index : numpy.ndarray of intp, shape (4000,)
    test_index : numpy.ndarray of intp, shape (1000,)
        Disjoint indices into ``labels``: 400 and 100 of each class, in shuffled order.
    """
    rng = np.random.default_rng(EMBEDDED_SEED)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        train.append(members[:EMBEDDED_TRAIN_PER_CLASS])
        test.append(members[EMBEDDED_TRAIN_PER_CLASS:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _load_embedded():
    """The embedded digits, split: a dict like :func:`sources.load_files` returns."""
    folder = resources.files("bpfast.datasets").joinpath("data")
    arrays = {}
    for key, spec in EMBEDDED_FILES.items():
        data = folder.joinpath(spec.filename).read_bytes()
        where = f"bpfast/datasets/data/{spec.filename}"
        if sources._md5(data) != spec.md5:
            raise ValueError(f"{where}: checksum mismatch, the bpfast installation is damaged")
        arrays[key] = parse_idx(decompress(data, where), where)
    train, test = embedded_split(arrays["label"])
    return {
        "train_img": arrays["img"][train],
        "train_label": arrays["label"][train],
        "test_img": arrays["img"][test],
        "test_label": arrays["label"][test],
    }


def _one_hot(labels, n_classes):
    # Same values and dtype as the book's _change_one_hot_label, without its Python loop.
    out = np.zeros((labels.size, n_classes))
    out[np.arange(labels.size), labels] = 1
    return out


def _convert(arrays, normalize, flatten, one_hot_label):
    """Apply the book's options: ``((x_train, t_train), (x_test, t_test))`` from decoded arrays."""
    labels = (arrays["train_label"], arrays["test_label"])
    n_classes = max([10] + [int(t.max()) + 1 for t in labels if t.size])
    result = []
    for part in ("train", "test"):
        x, t = arrays[f"{part}_img"], arrays[f"{part}_label"]
        n, pixels = x.shape[0], x.shape[1:]
        x = x.reshape(n, int(np.prod(pixels))) if flatten else x.reshape(n, 1, *pixels)
        if normalize:
            x = x.astype(np.float32)
            x /= 255.0  # in float32, as the book does
        if one_hot_label:
            t = _one_hot(t, n_classes)
        result.append((x, t))
    return tuple(result)


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None, name="mnist"):
    """Load MNIST (or Fashion-MNIST, or the embedded subset) like the book's ``load_mnist``.

    Parameters
    ----------
    normalize : bool, default True
        Scale pixels to ``[0.0, 1.0]`` as ``float32``; if False keep ``uint8`` 0-255.
    flatten : bool, default True
        Images as rows of 784 values; if False as ``(1, 28, 28)`` (channel, height, width).
    one_hot_label : bool, default False
        Labels as one-hot ``float64`` rows of 10; if False as ``uint8`` class indices.
    data_dir : str or os.PathLike, optional
        A directory to search first, directly or in its ``<name>`` sub-folder (default: the
        ``BPFAST_DATA`` environment variable).  Files not found anywhere are downloaded into
        the cache (``~/.cache/bpfast/<name>``), never into ``data_dir``.
    name : {"mnist", "fashion-mnist", "embedded"}, default "mnist"
        Which dataset.  ``"embedded"`` is the 5,000 MNIST digits shipped with bpfast.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuples of numpy.ndarray
        ``x_*``: ``(N, 784)`` if ``flatten`` else ``(N, 1, 28, 28)``; ``float32`` if
        ``normalize`` else ``uint8``.  ``t_*``: ``(N, 10)`` ``float64`` if ``one_hot_label``
        else ``(N,)`` ``uint8``.  N is 60000/10000 for MNIST and Fashion-MNIST, 4000/1000
        for the embedded subset.  Every array is a fresh writable array.

    Raises
    ------
    DatasetNotFoundError
        If the files are nowhere and cannot be downloaded (the message says where to put
        them), or ``data_dir`` is not a directory.
    ValueError
        If ``name`` is unknown, or a file is corrupt or fails its checksum.
    """
    key = _canonical(name)
    if key == "embedded":
        if data_dir is not None:
            raise ValueError("data_dir does not apply to the embedded dataset")
        arrays = _load_embedded()
    elif key in sources.DATASETS:
        arrays = sources.load_files(key, data_dir)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    return _convert(arrays, normalize, flatten, one_hot_label)


def load_dataset(name_or_dir="embedded", *, normalize=True, flatten=True, one_hot_label=False):
    """Load a dataset by name or from a directory of IDX files (``bpfast train --data``).

    Parameters
    ----------
    name_or_dir : str or os.PathLike, default "embedded"
        ``"embedded"`` (5,000 MNIST digits shipped with bpfast: 4,000 train, 1,000 test, no
        network), ``"mnist"``, ``"fashion-mnist"``, or a directory holding the four files
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
        ``t10k-labels-idx1-ubyte`` (each ``.gz`` or not).  A name wins over a directory of
        the same name; write ``./mnist`` for the directory.
    normalize, flatten, one_hot_label : bool
        As in :func:`load_mnist`.  For a directory of other-sized images, ``flatten`` gives
        ``(N, rows * cols)`` and no flatten ``(N, 1, rows, cols)``; one-hot rows have
        ``max(10, largest label + 1)`` columns.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuples of numpy.ndarray
        As :func:`load_mnist` returns.

    Raises
    ------
    DatasetNotFoundError
        If ``name_or_dir`` is neither a known name nor a directory, or files are missing.
    ValueError
        If a file is corrupt or the files do not form a dataset.
    """
    if isinstance(name_or_dir, str) and _canonical(name_or_dir) in DATASET_NAMES:
        return load_mnist(normalize, flatten, one_hot_label, name=name_or_dir)
    directory = os.fspath(name_or_dir)
    if not os.path.isdir(directory):
        raise DatasetNotFoundError(
            f"{directory!r} is neither a dataset name ({', '.join(DATASET_NAMES)}) nor a directory"
        )
    return _convert(sources.load_directory(directory), normalize, flatten, one_hot_label)
