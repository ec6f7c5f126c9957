"""The IDX file format of MNIST and Fashion-MNIST: reading and validating.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
unsigned 32-bit dimensions, then the values in row-major order, big-endian (the format is
described on the MNIST page).  The distributed files are gzip-compressed; both forms are read
here, told apart by their content (the gzip magic bytes), not by the file name, because a
browser that transparently decompresses a download keeps the ``.gz`` name.

Unlike the book's ``dataset/mnist.py``, which slices past a fixed header offset, every header
field and the payload length are checked: a truncated, corrupt or padded file raises a
``ValueError`` naming the file rather than giving a short or misshapen array.
"""

import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["read_idx", "parse_idx", "decompress"]

#: IDX type code -> big-endian dtype of the values.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def decompress(data, source):
    """The IDX content of a file's bytes: gunzipped if they are gzip data, else as they are.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    source : str or os.PathLike
        Where the bytes came from, for error messages.

    Returns
    -------
    bytes
        The uncompressed IDX content.

    Raises
    ------
    ValueError
        If the bytes start like gzip data but are not a complete, intact gzip stream
        (truncated, bad CRC, trailing garbage).
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(f"{os.fspath(source)}: corrupt or truncated gzip data ({exc})") from None


def parse_idx(content, source="<bytes>"):
    """Decode uncompressed IDX content into a fresh, writable, native-endian array.

    Parameters
    ----------
    content : bytes or bytearray
        The whole uncompressed file: header and values.
    source : str or os.PathLike, optional
        Where the content came from, for error messages.

    Returns
    -------
    numpy.ndarray
        Shape ``(d0, d1, ..., d_{ndim-1})`` from the header; dtype from the type code
        (``uint8`` for MNIST images and labels), in native byte order.

    Raises
    ------
    ValueError
        If the magic number is not an IDX magic number (zero bytes, a known type code, at
        least one dimension), the header is cut short, or the payload is not exactly the
        size the dimensions say.
    """
    where = os.fspath(source)
    if len(content) < 4:
        raise ValueError(f"{where}: not an IDX file (only {len(content)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", content[:4])
    if zero != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{where}: not an IDX file (magic number 0x{content[:4].hex()}; expected "
            f"0x0000TTNN with type code TT in {{08,09,0b,0c,0d,0e}} and NN >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(content) < header:
        raise ValueError(f"{where}: IDX header cut short ({len(content)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = dtype.itemsize * int(np.prod(shape, dtype=object))
    actual = len(content) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing data"
        raise ValueError(
            f"{where}: IDX payload {kind}: dimensions {shape} of {dtype.itemsize}-byte values "
            f"need {expected} bytes after the {header}-byte header, found {actual}"
        )
    values = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    # astype copies: the result owns writable, native-endian memory, never a view of `content`.
    return values.astype(dtype.newbyteorder("="))


def read_idx(path):
    """Read an IDX file, gzip-compressed or raw, with full validation.

    Parameters
    ----------
    path : str or os.PathLike
        The file, e.g. ``train-images-idx3-ubyte.gz`` or ``train-images-idx3-ubyte``.

    Returns
    -------
    numpy.ndarray
        A fresh writable array with the header's shape, e.g. ``(60000, 28, 28)`` ``uint8``
        for MNIST training images and ``(60000,)`` ``uint8`` for its labels.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a valid IDX file (see :func:`parse_idx`) or its gzip data is
        corrupt or truncated; the message names the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_idx(decompress(data, path), path)
