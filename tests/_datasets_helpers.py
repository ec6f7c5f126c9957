"""Helpers for test_datasets.py: an IDX writer, tiny datasets, and a local HTTP server.

The IDX writer is written from the format description with ``struct``, independently of
``bpfast.datasets.idx``, so a round trip checks the reader against the spec.
"""

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np

from bpfast.datasets import sources

TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array):
    """The uncompressed IDX encoding of ``array`` (big-endian header and values)."""
    array = np.asarray(array)
    code = TYPE_CODES[array.dtype.kind + str(array.dtype.itemsize)]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def gz(data, level=9):
    """Deterministic gzip bytes (no timestamp), at a chosen compression level."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def md5(data):
    return hashlib.md5(data).hexdigest()


def tiny_arrays(seed=0, n_train=12, n_test=6, shape=(28, 28)):
    """Random ``uint8`` images and labels 0-9, keyed like the book's ``key_file``."""
    rng = np.random.default_rng(seed)
    return {
        "train_img": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train_label": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_img": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "test_label": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


class TinyDataset:
    """A small MNIST-like dataset registered in ``sources.DATASETS`` under ``name``.

    ``files[key]`` is the published ``.gz`` bytes of each file; checksums of both forms are
    registered, as for Fashion-MNIST.
    """

    def __init__(self, name="tiny", seed=0, with_content_md5=True, **kw):
        self.name = name
        self.arrays = tiny_arrays(seed, **kw)
        self.raw = {k: idx_bytes(a) for k, a in self.arrays.items()}
        self.files = {k: gz(b) for k, b in self.raw.items()}
        self.dataset = sources.Dataset(
            name,
            **{
                k: sources.IdxFile(
                    sources.FILENAMES[k],
                    self.arrays[k].shape,
                    md5(self.files[k]),
                    md5(self.raw[k]) if with_content_md5 else None,
                )
                for k in sources.FILENAMES
            },
        )

    def register(self, monkeypatch):
        monkeypatch.setitem(sources.DATASETS, self.name, self.dataset)
        return self

    def write(self, directory, form="gz"):
        """Write the four files into ``directory`` as ``gz`` (published), ``raw`` or
        ``regz`` (re-compressed: other bytes, same content)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for key, name in sources.FILENAMES.items():
            if form == "raw":
                (directory / name.removesuffix(".gz")).write_bytes(self.raw[key])
            else:
                data = self.files[key] if form == "gz" else gz(self.raw[key], level=1)
                (directory / name).write_bytes(data)
        return directory


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("User-Agent")))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        status, body, mode = route
        if status != 200:
            self.send_error(status)
            return
        self.send_response(200)
        if mode != "no-length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # "cut": the server closes the connection halfway (HTTP/1.0 closes after a reply).
        self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)

    def log_message(self, *args):
        pass


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 serving ``routes``: path -> (status, body, mode)."""

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = self.routes = {}
        self.httpd.requests = self.requests = []
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def base(self, mirror):
        return f"http://127.0.0.1:{self.httpd.server_port}/{mirror}/"

    def serve(self, mirror, filename, body=b"", status=200, mode="full"):
        self.routes[f"/{mirror}/{filename}"] = (status, body, mode)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
