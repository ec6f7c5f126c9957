"""Where dataset files come from: local directories, the cache, Debian, or verified downloads.

For a named dataset (``"mnist"``, ``"fashion-mnist"``) each of its four IDX files is looked
for, in order, in

1. the directory the user names: the ``data_dir`` argument, else the ``BPFAST_DATA``
   environment variable (both ``DIR/<name>/`` and ``DIR/`` are searched, so one
   ``BPFAST_DATA`` can hold several datasets in sub-folders);
2. the cache, ``$BPFAST_CACHE/<name>/``, else ``$XDG_CACHE_HOME/bpfast/<name>/``, else
   ``~/.cache/bpfast/<name>/``;
3. system directories (:data:`SYSTEM_DIRS`: Debian's ``dataset-fashion-mnist`` package
   installs Fashion-MNIST under ``/usr/share/datasets/fashion-mnist/``);

and, if found nowhere, downloaded into the cache from the mirrors in :data:`MIRRORS` (or the
``BPFAST_MIRRORS`` environment variable: base URLs separated by spaces or commas).

Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``).  Every file is checked against MD5 checksums: the one published
for the ``.gz`` file as distributed, or the one of its decompressed content, so a
re-compressed copy (Debian's Fashion-MNIST is one) is accepted too.  MNIST's authors publish
no checksum of the decompressed files, so a local uncompressed or re-compressed MNIST file is
checked by its exact shape only; downloads must always match a checksum.

A download goes to a temporary file in the target directory and is renamed into place only
after its checksum matched, so an interrupted or corrupt download leaves nothing behind.
"""

import contextlib
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from bpfast.datasets.idx import decompress, parse_idx

try:  # optional: a progress bar for downloads
    from tqdm import tqdm
except ImportError:  # pragma: no cover - depends on the environment
    tqdm = None

__all__ = [
    "DatasetNotFoundError",
    "IdxFile",
    "Dataset",
    "DATASETS",
    "MIRRORS",
    "SYSTEM_DIRS",
    "cache_dir",
    "load_files",
    "load_directory",
]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are in none of the places searched and could not be downloaded.

    The message lists where the files were looked for, what each download attempt gave, and
    where to put the files.
    """


@dataclass(frozen=True)
class IdxFile:
    """One IDX file of a dataset and what it must look like.

    Attributes
    ----------
    filename : str
        The name as distributed, e.g. ``"train-images-idx3-ubyte.gz"``.
    shape : tuple of int or None
        The exact array shape, e.g. ``(60000, 28, 28)``; ``None`` accepts any.
    md5 : str or None
        MD5 of the ``.gz`` file as its authors distribute it.
    content_md5 : str or None
        MD5 of the decompressed IDX content (unchanged by re-compression).
    """

    filename: str
    shape: tuple = None
    md5: str = None
    content_md5: str = None

    @property
    def raw_name(self):
        """The uncompressed file's name (the ``.gz`` suffix dropped)."""
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class Dataset:
    """A dataset of four IDX files (the keys are those of the book's ``key_file``)."""

    name: str
    train_img: IdxFile
    train_label: IdxFile
    test_img: IdxFile
    test_label: IdxFile

    def files(self):
        """``{"train_img": IdxFile, "train_label": ..., "test_img": ..., "test_label": ...}``."""
        return {k: getattr(self, k) for k in ("train_img", "train_label", "test_img", "test_label")}


#: The book's four file names (``dataset/mnist.py``'s ``key_file``), shared by Fashion-MNIST.
FILENAMES = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}


def _mnist_like(name, n_train, n_test, md5, content_md5):
    shapes = {
        "train_img": (n_train, 28, 28),
        "train_label": (n_train,),
        "test_img": (n_test, 28, 28),
        "test_label": (n_test,),
    }
    return Dataset(
        name,
        **{k: IdxFile(FILENAMES[k], shapes[k], md5[k], content_md5.get(k)) for k in FILENAMES},
    )


#: Known datasets.  Checksums: MNIST's are the widely used ones for the files on LeCun's
#: page (torchvision's); Fashion-MNIST's ``.gz`` ones are from its authors' README, the
#: decompressed ones were computed from Debian's re-compressed copy.
DATASETS = {
    "mnist": _mnist_like(
        "mnist",
        60000,
        10000,
        md5={
            "train_img": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_label": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_img": "9fb629c4189551a2d022fa330f9573f3",
            "test_label": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        content_md5={},
    ),
    "fashion-mnist": _mnist_like(
        "fashion-mnist",
        60000,
        10000,
        md5={
            "train_img": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_label": "25c81989df183df01b3e8a0aad5dffbe",
            "test_img": "bef4ecab320f06d8554ea6380940ec79",
            "test_label": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        content_md5={
            "train_img": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train_label": "9018921c3c673c538a1fc5bad174d6f9",
            "test_img": "8181f5470baa50b63fa0f6fddb340f0a",
            "test_label": "15d484375f8d13e6eb1aabb0c3f46965",
        },
    ),
}

#: Base URLs tried in order for each dataset (a file's URL is base + file name).  The
#: ``BPFAST_MIRRORS`` environment variable, if set, replaces the list for every dataset.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the book's URL since 2024
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

#: Read-only directories searched after the cache (installed by system packages).
SYSTEM_DIRS = {
    "fashion-mnist": ["/usr/share/datasets/fashion-mnist"],
}

#: Some servers answer 403 to urllib's default User-Agent (the book's issue #55).
USER_AGENT = "Mozilla/5.0 (compatible; bpfast; +https://pypi.org/project/bpfast/)"
TIMEOUT = 30  # seconds without data before a mirror counts as failed
_CHUNK = 1 << 16


def _md5(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def cache_dir(name=None):
    """The download cache: ``$BPFAST_CACHE``, ``$XDG_CACHE_HOME/bpfast`` or ``~/.cache/bpfast``.

    Parameters
    ----------
    name : str, optional
        A dataset name; if given, its sub-directory is returned.

    Returns
    -------
    pathlib.Path
        The directory (not created here).
    """
    root = os.environ.get("BPFAST_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
        base = (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "bpfast"
    return base / name if name else base


def mirrors(name):
    """The base URLs to download dataset ``name`` from, in order (see :data:`MIRRORS`)."""
    env = os.environ.get("BPFAST_MIRRORS")
    bases = env.replace(",", " ").split() if env else MIRRORS.get(name, [])
    return [b if b.endswith("/") else b + "/" for b in bases]


def _search_dirs(name, data_dir):
    """``[(directory, why it is searched), ...]`` in lookup order."""
    dirs = []
    user = data_dir if data_dir is not None else os.environ.get("BPFAST_DATA") or None
    if user is not None:
        why = "data_dir argument" if data_dir is not None else "BPFAST_DATA"
        user = Path(user).expanduser()
        if not user.is_dir():
            raise DatasetNotFoundError(f"{user} ({why}) is not a directory")
        dirs += [(user / name, why), (user, why)]
    dirs.append((cache_dir(name), "cache"))
    dirs += [(Path(d), "system") for d in SYSTEM_DIRS.get(name, [])]
    return dirs


def _find(directory, spec):
    """The file for ``spec`` in ``directory`` (``.gz`` or uncompressed), or ``None``."""
    for fname in (spec.filename, spec.raw_name):
        path = directory / fname
        if path.is_file():
            return path
    return None


def _known_digests():
    return {
        digest: (ds.name, f.filename)
        for ds in DATASETS.values()
        for f in ds.files().values()
        for digest in (f.md5, f.content_md5)
        if digest
    }


def _check(path, data, content, spec, dataset):
    """Return ``None`` if the bytes match ``spec``'s checksums, else the reason they don't.

    A file matches if its own MD5 is the published ``.gz`` one, or its content's MD5 is the
    published decompressed one.  With no published checksum for the decompressed content
    (MNIST), a file that is not the distributed ``.gz`` passes unless it is recognisably
    another dataset's file; the caller then checks its shape.
    """
    if spec.md5 is None and spec.content_md5 is None:
        return None
    file_md5 = _md5(data)
    if file_md5 == spec.md5:
        return None
    content_md5 = file_md5 if content is data else _md5(content)
    if content_md5 == spec.content_md5:
        return None
    known = _known_digests()
    other = known.get(file_md5) or known.get(content_md5)
    if other is not None:
        return f"it is {other[0]}'s {other[1]}, not {dataset}'s {spec.filename}"
    if spec.content_md5 is None:
        return None
    expected = " or ".join(
        f"{d} ({what})"
        for d, what in ((spec.md5, "the .gz as distributed"), (spec.content_md5, "decompressed"))
        if d
    )
    return (
        f"MD5 {file_md5} (decompressed {content_md5}) does not match {expected}: the file is "
        f"corrupt or not the expected one"
    )


def _read_verified(path, spec, dataset):
    """Read, checksum and decode one file of a named dataset; ``ValueError`` if it is wrong."""
    data = path.read_bytes()
    content = decompress(data, path)
    problem = _check(path, data, content, spec, dataset)
    if problem is not None:
        raise ValueError(f"{path}: wrong file for {dataset}: {problem}; delete or replace it")
    array = parse_idx(content, path)
    if spec.shape is not None and (array.shape != spec.shape or array.dtype != "u1"):
        raise ValueError(
            f"{path}: {dataset}'s {spec.filename} must hold uint8 values of shape "
            f"{spec.shape}, found {array.dtype} {array.shape}"
        )
    return array


class _Progress:
    """A tqdm bar on an interactive stderr, else nothing (tqdm is optional)."""

    def __init__(self, total, desc):
        self._bar = None
        isatty = getattr(sys.stderr, "isatty", None)
        if tqdm is not None and isatty is not None and isatty():
            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)

    def update(self, n):
        if self._bar is not None:
            self._bar.update(n)

    def close(self):
        if self._bar is not None:
            self._bar.close()


def _fetch(url, tmp, tmp_path, spec):
    """Stream ``url`` into the open file ``tmp`` (at ``tmp_path``).

    Raises ``ValueError`` if the body is incomplete or fails the checksum, ``OSError`` or
    ``HTTPException`` if the transfer fails.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    md5 = hashlib.md5(usedforsecurity=False)
    received = 0
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _Progress(total, spec.filename)
        try:
            while chunk := response.read(_CHUNK):
                tmp.write(chunk)
                md5.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
    # http.client returns a short body without error when the server closes early.
    if total is not None and received != total:
        raise ValueError(f"connection closed after {received} of {total} bytes")
    if md5.hexdigest() == spec.md5:
        return
    tmp.flush()
    data = Path(tmp_path).read_bytes()
    try:
        content_md5 = _md5(decompress(data, url))
    except ValueError as exc:
        raise ValueError(f"MD5 mismatch ({exc})") from None
    if spec.content_md5 is None or content_md5 != spec.content_md5:
        raise ValueError(f"MD5 mismatch: got {md5.hexdigest()}")


def _download(dataset, spec, target_dir):
    """Download ``spec`` into ``target_dir`` from the first mirror that gives a good file.

    Returns
    -------
    path : pathlib.Path or None
        The downloaded file, or ``None`` if every mirror failed.
    failures : list of str
        One line per failed attempt.
    """
    failures = []
    urls = [base + spec.filename for base in mirrors(dataset)]
    if urls:
        target_dir.mkdir(parents=True, exist_ok=True)
    for url in urls:
        print(f"bpfast: downloading {url}", file=sys.stderr)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=target_dir)
        try:
            with os.fdopen(fd, "wb") as tmp:
                _fetch(url, tmp, tmp_name, spec)
            target = target_dir / spec.filename
            os.replace(tmp_name, target)
            tmp_name = None
            return target, failures
        except (OSError, HTTPException, ValueError) as exc:  # URLError/HTTPError are OSErrors
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
                exc.close()  # it holds the open response
            elif isinstance(exc, urllib.error.URLError):
                reason = str(exc.reason)
            failures.append(f"{url}: {reason}")
            print(f"bpfast: {url} failed: {reason}", file=sys.stderr)
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
    if urls:
        with contextlib.suppress(OSError):  # rmdir only removes it if empty
            target_dir.rmdir()  # leave no trace of a failed download
    return None, failures


def _not_found_message(dataset, spec, dirs, failures):
    ds = DATASETS[dataset]
    names = ", ".join(f.filename for f in ds.files().values())
    looked = "\n".join(f"  {d} ({why})" for d, why in dirs)
    tried = "\n".join(f"  {line}" for line in failures) or "  no mirrors configured"
    return (
        f"{dataset}: {spec.filename} was not found and could not be downloaded.\n"
        f"Looked in:\n{looked}\nDownloads tried:\n{tried}\n"
        f"Put the four files {names} (gzip-compressed or not) in {cache_dir(dataset)}, or in "
        f"a directory passed as data_dir= or set in BPFAST_DATA; or use the 5,000 MNIST "
        f"digits shipped with bpfast, which need no network: load_dataset('embedded')."
    )


def load_files(dataset, data_dir=None):
    """Locate (or download), verify and decode the four files of a named dataset.

    Parameters
    ----------
    dataset : str
        A key of :data:`DATASETS`, e.g. ``"mnist"``.
    data_dir : str or os.PathLike, optional
        A directory searched first (default: ``$BPFAST_DATA`` if set).

    Returns
    -------
    dict of str to numpy.ndarray
        ``train_img`` ``(N, 28, 28)``, ``train_label`` ``(N,)``, ``test_img``
        ``(M, 28, 28)``, ``test_label`` ``(M,)``, all fresh writable ``uint8`` arrays.

    Raises
    ------
    DatasetNotFoundError
        If a file is nowhere and cannot be downloaded, or ``data_dir`` is not a directory.
    ValueError
        If a file found locally is corrupt or fails its checksum.
    """
    dirs = _search_dirs(dataset, data_dir)
    arrays = {}
    for key, spec in DATASETS[dataset].files().items():
        path = next((p for d, _ in dirs if (p := _find(d, spec)) is not None), None)
        if path is None:
            path, failures = _download(dataset, spec, cache_dir(dataset))
            if path is None:
                raise DatasetNotFoundError(_not_found_message(dataset, spec, dirs, failures))
        arrays[key] = _read_verified(path, spec, dataset)
    return arrays


def load_directory(directory):
    """Read the four IDX files of any MNIST-like dataset from one directory.

    Parameters
    ----------
    directory : str or os.PathLike
        Holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each ``.gz`` or not.

    Returns
    -------
    dict of str to numpy.ndarray
        ``train_img`` ``(N, H, W)``, ``train_label`` ``(N,)``, ``test_img`` ``(M, H, W)``,
        ``test_label`` ``(M,)``.

    Raises
    ------
    DatasetNotFoundError
        If the directory or one of the files is missing.
    ValueError
        If a file is corrupt, or the files do not form a dataset (image and label counts
        differ, images are not 3-D, labels are not non-negative integers).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DatasetNotFoundError(f"{directory} is not a directory")
    specs = {k: IdxFile(name) for k, name in FILENAMES.items()}
    missing = [s.filename for s in specs.values() if _find(directory, s) is None]
    if missing:
        raise DatasetNotFoundError(
            f"{directory} lacks {', '.join(missing)} (gzip-compressed or not); an IDX dataset "
            f"directory holds {', '.join(FILENAMES.values())}"
        )
    arrays = {}
    for key, spec in specs.items():
        path = _find(directory, spec)
        arrays[key] = parse_idx(decompress(path.read_bytes(), path), path)
    for part in ("train", "test"):
        img, lab = arrays[f"{part}_img"], arrays[f"{part}_label"]
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise ValueError(
                f"{directory}: {part} images must be (N, rows, cols) and labels (N,), found "
                f"{img.shape} and {lab.shape}"
            )
        if lab.dtype.kind not in "iu" or (lab.size and lab.min() < 0):
            raise ValueError(f"{directory}: {part} labels must be non-negative integers")
    if arrays["train_img"].shape[1:] != arrays["test_img"].shape[1:]:
        raise ValueError(
            f"{directory}: train and test images differ in size: "
            f"{arrays['train_img'].shape[1:]} and {arrays['test_img'].shape[1:]}"
        )
    return arrays
