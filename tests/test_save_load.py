"""save_params / load_params of every network: round trip, the book's file format, checks,
atomicity."""

import os
import pickle

import numpy as np
import pytest

import bpfast
import bpfast._network
from bpfast import reference as ref

NETS = {
    "TwoLayerNet": lambda mod: mod.TwoLayerNet(6, 5, 3, weight_init_std=0.5),
    "MultiLayerNet": lambda mod: mod.MultiLayerNet(6, [5, 4], 3),
    "MultiLayerNetExtend": lambda mod: mod.MultiLayerNetExtend(6, [5, 4], 3,
                                                               use_batchnorm=True),
    "SimpleConvNet": lambda mod: mod.SimpleConvNet(
        input_dim=(1, 6, 6), conv_param={"filter_num": 2, "filter_size": 3, "pad": 0,
                                         "stride": 1}, hidden_size=4, output_size=3),
}


def _input(name, rng):
    if name == "SimpleConvNet":
        return rng.random((4, 1, 6, 6)), rng.integers(0, 3, 4)
    return rng.random((4, 6)), rng.integers(0, 3, 4)


def _snapshot(net):
    return {k: v.copy() for k, v in net.params.items()}


@pytest.mark.parametrize("name", NETS)
def test_round_trip_rebinds_params_and_layers(tmp_path, rng, name):
    np.random.seed(1)
    src = NETS[name](bpfast)
    np.random.seed(2)
    dst = NETS[name](bpfast)
    x, t = _input(name, rng)
    path = tmp_path / "params.pkl"
    src.save_params(path)
    assert not np.array_equal(dst.predict(x), src.predict(x))
    dst.load_params(str(path))
    assert list(dst.params) == list(src.params)
    for key in src.params:
        np.testing.assert_array_equal(dst.params[key], src.params[key])
    # The layers hold the loaded arrays: the loaded network computes what the saved one does.
    np.testing.assert_array_equal(dst.predict(x), src.predict(x))
    assert dst.loss(x, t) == src.loss(x, t)
    for layer in dst.layers.values():
        for attr in ("W", "b", "gamma", "beta"):
            value = getattr(layer, attr, None)
            if value is not None:
                assert any(value is p for p in dst.params.values()), (layer, attr)
    assert sorted(os.listdir(tmp_path)) == ["params.pkl"]  # no temporary file left


@pytest.mark.parametrize("name", NETS)
def test_files_of_the_book_and_of_bpfast_are_interchangeable(tmp_path, name):
    np.random.seed(3)
    book = NETS[name](ref)
    np.random.seed(4)
    fast = NETS[name](bpfast)
    # The book's own writer (SimpleConvNet.save_params: open + pickle.dump of the dict).
    with open(tmp_path / "book.pkl", "wb") as f:
        pickle.dump(dict(book.params), f)
    fast.load_params(tmp_path / "book.pkl")
    for key in book.params:
        np.testing.assert_array_equal(fast.params[key], book.params[key])
    np.random.seed(5)
    fast2 = NETS[name](bpfast)
    fast2.save_params(tmp_path / "fast.pkl")
    with open(tmp_path / "fast.pkl", "rb") as f:
        loaded = pickle.load(f)
    assert type(loaded) is dict and list(loaded) == list(fast2.params)
    if hasattr(book, "load_params"):  # the book's loader (SimpleConvNet) reads bpfast's file
        book.load_params(str(tmp_path / "fast.pkl"))
        for key in book.params:
            np.testing.assert_array_equal(book.params[key], fast2.params[key])


def _corrupt(params, how):
    params = dict(params)
    if how == "shape":
        params["W1"] = np.zeros(params["W1"].shape[:-1] + (params["W1"].shape[-1] + 1,))
    elif how == "dtype":
        params["b1"] = params["b1"].astype(np.float32)
    elif how == "missing":
        del params["b2"]
    elif how == "extra":
        params["W99"] = np.zeros(3)
    elif how == "not_array":
        params["b1"] = list(params["b1"])
    elif how == "not_dict":
        params = list(params.values())
    return params


@pytest.mark.parametrize("how", ["shape", "dtype", "missing", "extra", "not_array",
                                 "not_dict"])
@pytest.mark.parametrize("name", NETS)
def test_mismatched_file_is_rejected_and_the_network_untouched(tmp_path, name, how):
    np.random.seed(6)
    net = NETS[name](bpfast)
    before = _snapshot(net)
    ids = {k: id(v) for k, v in net.params.items()}
    layer_ids = [id(getattr(layer, "W", None)) for layer in net.layers.values()]
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as f:
        pickle.dump(_corrupt(net.params, how), f)
    with pytest.raises(ValueError) as info:
        net.load_params(path)
    message = str(info.value)
    assert "bad.pkl" in message
    if how == "shape":
        assert "'W1'" in message and str(net.params["W1"].shape) in message
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])
    assert {k: id(v) for k, v in net.params.items()} == ids
    assert [id(getattr(layer, "W", None)) for layer in net.layers.values()] == layer_ids


class _Boom(Exception):
    pass


def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    net = NETS["MultiLayerNet"](bpfast)
    path = tmp_path / "params.pkl"
    net.save_params(path)
    good = path.read_bytes()
    mode = os.stat(path).st_mode

    def dump_half_then_fail(obj, f, *args, **kwargs):
        f.write(pickle.dumps(obj)[:100])  # a partial write, then the failure
        raise _Boom("disk full")

    monkeypatch.setattr(bpfast._network.pickle, "dump", dump_half_then_fail)
    for key in net.params:
        net.params[key] += 1.0
    with pytest.raises(_Boom):
        net.save_params(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["params.pkl"]  # the temporary file is gone
    monkeypatch.undo()
    net.save_params(path)  # a successful save replaces the file
    assert path.read_bytes() != good
    assert os.stat(path).st_mode == mode


def test_save_into_a_missing_directory_fails_cleanly(tmp_path):
    net = NETS["MultiLayerNet"](bpfast)
    with pytest.raises(FileNotFoundError):
        net.save_params(tmp_path / "nope" / "params.pkl")
    assert os.listdir(tmp_path) == []
