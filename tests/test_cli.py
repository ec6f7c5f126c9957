"""The ``bpfast`` command (bpfast/cli.py) and its training loop (bpfast/train.py).

Most tests call ``bpfast.cli.main([...])`` in-process and read what it printed; a few run the
real command (``python -m bpfast`` and the ``bpfast`` console script) in a subprocess.
Nothing here looks at a timing.
"""

import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import bpfast
from bpfast import cli, reference
from bpfast import train as training
from bpfast.train import DEFAULT_ITERS, OPTIMIZERS, load_data, relu_kinks, resolve_iters

from _datasets_helpers import TinyDataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK = ["--iters", "30", "--quiet"]


@pytest.fixture(scope="module")
def embedded():
    return load_data("embedded")


def run(capsys, *argv):
    """``main(argv)`` in-process: (exit status, stdout, stderr)."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def final_acc(out, backend="bpfast"):
    m = re.search(rf"^{backend}: final train acc (\S+)  test acc (\S+)$", out, re.M)
    assert m, out
    return float(m.group(1)), float(m.group(2))


def assert_one_line_error(status, out, err, *needles):
    assert status != 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bpfast: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert out == ""  # failed before anything was trained or printed


def child_env(drop=()):
    """Environment of a child process that imports the very bpfast the tests import.

    Children run from a temporary directory with bpfast's parent directory first on
    PYTHONPATH (as ``_helpers.run_snippet``), so a source tree without compiled kernels in the
    working directory cannot shadow the installed package.
    """
    env = {k: v for k, v in os.environ.items() if k not in drop}
    root = os.path.dirname(os.path.dirname(os.path.abspath(bpfast.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def run_process(*args, cwd=None, timeout=300, code=None):
    """The real command in a fresh process: ``python -m bpfast ARGS`` or ``python -c CODE``."""
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "bpfast", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.gettempdir() if cwd is None else cwd, env=child_env())


# ------------------------------------------------------------------------------- bpfast train


def test_default_train_reaches_88_percent_and_reports_every_epoch(capsys):
    status, out, err = run(capsys, "train")
    assert status == 0, err
    train_acc, test_acc = final_acc(out)
    assert test_acc >= 0.88
    assert train_acc >= test_acc - 0.05  # sanity: it fits what it trains on
    # One accuracy line before training and one per epoch (40 steps of the 4,000 digits).
    iters, per_epoch = resolve_iters(4000, 100)
    assert iters == DEFAULT_ITERS
    epochs = [int(m) for m in re.findall(r"^epoch\s+(\d+)\s+step", out, re.M)]
    assert epochs == list(range(iters // per_epoch + 1))
    last = re.findall(r"^epoch .* test acc (\S+)$", out, re.M)[-1]
    assert float(last) == test_acc
    assert re.search(r"^bpfast: wall time \d+\.\d+ s \(training .*\); [\d,]+ steps/s$", out, re.M)


def test_train_returns_histories(embedded):
    r = training.train(embedded, iters=45, seed=3)
    assert r.loss.shape == (45,) and np.all(np.isfinite(r.loss))
    assert r.loss[-10:].mean() < r.loss[:10].mean()  # it learns
    # Evaluated before training, after each 40-step epoch and after the last step.
    assert r.eval_steps.tolist() == [0, 40, 45]
    assert r.eval_epochs.tolist() == [0, 1, 45 / 40]
    assert r.train_acc.shape == r.test_acc.shape == (3,)
    assert r.wall_time >= r.eval_time >= 0 and r.steps_per_second > 0
    assert type(r.network) is bpfast.TwoLayerNet


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_backends_give_the_same_loss_history(embedded, optimizer):
    # Same seed -> same initial weights and the same batches; the losses can only agree
    # step after step if both backends saw identical batches.
    iters = 200 if optimizer == "sgd" else 40
    fast = training.train(embedded, backend="bpfast", optimizer=optimizer, iters=iters, seed=7)
    ref = training.train(embedded, backend="reference", optimizer=optimizer, iters=iters, seed=7)
    assert type(ref.network) is reference.TwoLayerNet
    assert type(fast.network) is bpfast.TwoLayerNet
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(fast.test_acc, ref.test_acc)
    # A different seed gives other batches, hence other losses.
    other = training.train(embedded, backend="bpfast", optimizer=optimizer, iters=iters, seed=8)
    assert not np.allclose(other.loss, fast.loss)


@pytest.fixture(scope="module")
def small(embedded):
    """200 training and 100 test digits: enough for a few steps of the bigger networks."""
    return training.Dataset("small", embedded.x_train[:200], embedded.t_train[:200],
                            embedded.x_test[:100], embedded.t_test[:100])


@pytest.fixture(scope="module")
def small_images(small):
    """The same digits as (1, 28, 28) images, for the convolutional network."""
    return training.Dataset("small", small.x_train.reshape(-1, 1, 28, 28), small.t_train,
                            small.x_test.reshape(-1, 1, 28, 28), small.t_test)


@pytest.mark.parametrize("model, options, cls", [
    ("mlp", {}, "MultiLayerNet"),
    ("mlp", {"weight_decay": 0.1}, "MultiLayerNet"),
    ("mlp-extend", {"batchnorm": True, "dropout": 0.3}, "MultiLayerNetExtend"),
    ("convnet", {}, "SimpleConvNet"),
])
def test_other_models_match_the_book_from_the_same_seed(small, small_images, model, options,
                                                         cls):
    # Dropout draws its masks from the global RNG between the batch draws: the histories
    # can only agree if both backends draw the same numbers in the same order.
    data = small_images if model == "convnet" else small
    kw = dict(model=model, hidden=(20, 10) if model.startswith("mlp") else 10, iters=12,
              batch_size=10, seed=4, model_options=options, optimizer="momentum")
    fast = training.train(data, backend="bpfast", **kw)
    ref = training.train(data, backend="reference", **kw)
    assert type(fast.network) is getattr(bpfast, cls)
    assert type(ref.network) is getattr(reference, cls)
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(fast.test_acc, ref.test_acc)
    assert fast.loss[-3:].mean() < fast.loss[:3].mean()


@pytest.mark.parametrize("model, options", [("two-layer", {}),
                                            ("mlp-extend", {"dropout": 0.4})])
def test_compare_interleaves_without_changing_any_number(small, model, options):
    # Turns of 7 steps with 20 steps per epoch: turns and evaluations cross each other.
    kw = dict(model=model, iters=45, batch_size=10, seed=11, model_options=options,
              hidden=(9, 8) if model == "mlp-extend" else 9)
    alone = [training.train(small, backend=b, **kw) for b in training.BACKENDS]
    together = training.compare(small, chunk=7, **kw)
    assert [r.backend for r in together] == list(training.BACKENDS)
    for a, t in zip(alone, together):
        np.testing.assert_array_equal(t.loss, a.loss)
        np.testing.assert_array_equal(t.eval_steps, a.eval_steps)
        np.testing.assert_array_equal(t.test_acc, a.test_acc)
        assert t.wall_time >= t.eval_time > 0
        assert t.network is not a.network
    assert together[0].network is not together[1].network


def test_model_options_reach_the_network(small):
    r = training.train(small, model="mlp-extend", hidden=[7, 6, 5], iters=2, batch_size=4,
                       model_options={"batchnorm": True, "dropout": 0.25, "weight_decay": 0.5})
    net = r.network
    assert [net.params[f"W{i}"].shape[1] for i in (1, 2, 3)] == [7, 6, 5]
    assert net.use_batchnorm and net.use_dropout and net.weight_decay_lambda == 0.5
    assert net.layers["Dropout1"].dropout_ratio == 0.25
    with pytest.raises(ValueError, match="mlp takes no option batchnorm"):
        training.make_network("mlp", "bpfast", (784,), 10, batchnorm=True)
    with pytest.raises(ValueError, match="one hidden layer size"):
        training.make_network("two-layer", "bpfast", (784,), 10, [5, 5])
    with pytest.raises(ValueError, match="channels, height, width"):
        training.make_network("convnet", "bpfast", (784,), 10)
    with pytest.raises(ValueError, match="float64, not float32"):
        training.make_network("convnet", "bpfast", (1, 28, 28), 10, dtype="float32")


def test_convnet_from_the_command_line(capsys, tmp_path):
    directory = TinyDataset(n_train=12, n_test=6).write(tmp_path / "tiny")
    status, out, err = run(capsys, "train", "--model", "convnet", "--data", str(directory),
                           "--iters", "3", "--batch-size", "4", "--hidden", "8", "--quiet")
    assert status == 0, err
    assert "12 training and 6 test images of 1x28x28" in out
    assert "model: convnet (hidden 8)" in out


def test_float32_training_on_both_backends(embedded):
    fast = training.train(embedded, iters=40, dtype="float32", seed=1)
    ref = training.train(embedded, backend="reference", iters=40, dtype="float32", seed=1)
    for r in (fast, ref):
        assert r.dtype == "float32"
        for key, layer, attr in (("W1", "Affine1", "W"), ("b2", "Affine2", "b")):
            assert r.network.params[key].dtype == np.float32
            assert getattr(r.network.layers[layer], attr) is r.network.params[key]
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-4)


def test_compare_prints_both_backends_and_the_speedup(capsys):
    status, out, err = run(capsys, "train", "--compare", *QUICK)
    assert status == 0, err
    assert final_acc(out, "bpfast") == final_acc(out, "reference")
    for backend in ("bpfast", "reference"):
        assert re.search(rf"^{backend}: wall time .* steps/s$", out, re.M)
    assert re.search(r"^speedup \(bpfast vs reference\): training steps \d+\.\d+x, "
                     r"wall time \d+\.\d+x$", out, re.M)
    diff = re.search(r"largest relative difference (\S+) over 30 steps", out)
    assert diff and float(diff.group(1)) < 1e-10


def test_backend_reference_runs_the_book_code(capsys, monkeypatch):
    calls = []
    original = reference.TwoLayerNet.gradient

    def spy(self, x, t):
        calls.append(x.shape)
        return original(self, x, t)

    monkeypatch.setattr(reference.TwoLayerNet, "gradient", spy)
    status, out, err = run(capsys, "train", "--backend", "reference", "--iters", "7",
                           "--batch-size", "13", "--quiet")
    assert status == 0, err
    assert calls == [(13, 784)] * 7
    assert re.search(r"^reference: final train acc", out, re.M)


def test_epochs_option_and_other_settings(capsys):
    status, out, err = run(capsys, "train", "--epochs", "0.5", "--batch-size", "50",
                           "--hidden", "20", "--optimizer", "ADAM", "--dtype", "float32",
                           "--threads", "1", "--quiet")
    assert status == 0, err
    iters, per_epoch = resolve_iters(4000, 50, epochs=0.5)
    assert f"{iters:,} steps = 0.5 epochs of {per_epoch:,} steps" in out
    assert "adam lr 0.001, batch 50, float32" in out
    assert bpfast.get_num_threads() >= 1  # restored, no exception


def test_threads_setting_is_restored(capsys):
    before = bpfast.set_num_threads(None)
    bpfast.set_num_threads(before)
    status, _, err = run(capsys, "train", "--threads", "1", "--iters", "3", "--quiet")
    assert status == 0, err
    assert bpfast.set_num_threads(before) == before


def test_threads_also_limit_blas_with_threadpoolctl(capsys, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []
    original = training.train

    def spy(*args, **kwargs):
        seen.append([i["num_threads"] for i in threadpoolctl.threadpool_info()
                     if i["user_api"] == "blas"])
        seen.append(bpfast.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    status, _, err = run(capsys, "train", "--threads", "1", "--iters", "2", "--quiet")
    assert status == 0, err
    blas, kernels = seen
    assert kernels == 1 and all(n == 1 for n in blas)


def test_plot_writes_a_png(capsys, tmp_path):
    png = tmp_path / "curve.png"
    status, out, err = run(capsys, "train", "--plot", str(png), *QUICK)
    assert status == 0, err
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert f"plot: {png}" in out


def test_plot_of_a_comparison_and_other_formats(capsys, tmp_path):
    svg = tmp_path / "curve.svg"
    status, _, err = run(capsys, "train", "--compare", "--plot", str(svg), *QUICK)
    assert status == 0, err
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_save_params(capsys, tmp_path):
    npz, pkl = tmp_path / "p.npz", tmp_path / "p.pkl"
    for path in (npz, pkl):
        status, _, err = run(capsys, "train", "--hidden", "7", "--save-params", str(path),
                             *QUICK)
        assert status == 0, err
    with np.load(npz) as saved:
        shapes = {k: saved[k].shape for k in saved.files}
        assert shapes == {"W1": (784, 7), "b1": (7,), "W2": (7, 10), "b2": (10,)}
        from_npz = {k: saved[k] for k in saved.files}
    with open(pkl, "rb") as f:
        from_pickle = pickle.load(f)
    assert from_pickle.keys() == from_npz.keys()
    for key in from_npz:  # same seed, same run, same weights
        np.testing.assert_array_equal(from_pickle[key], from_npz[key])
    assert np.any(from_npz["b1"] != 0)  # trained, not the initial zeros
    net = bpfast.TwoLayerNet(784, 7, 10)
    net.load_params(pkl)  # the book's format, checked by load_params
    np.testing.assert_array_equal(net.params["W2"], from_npz["W2"])


def test_data_directory_with_tiny_idx_files(capsys, tmp_path):
    tiny = TinyDataset(n_train=12, n_test=6)
    directory = tiny.write(tmp_path / "tiny", form="raw")
    status, out, err = run(capsys, "train", "--data", str(directory), "--iters", "5",
                           "--batch-size", "4")
    assert status == 0, err
    assert f"data: {directory}: 12 training and 6 test images of 784, 10 classes" in out
    # An epoch is ceil(12 / 4) = 3 steps: evaluated at 0, 3 and after the last step (5).
    assert [int(s) for s in re.findall(r"step\s+(\d+)\s+train acc", out)] == [0, 3, 5]


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--iters", "0"], "--iters: expected a positive integer, got '0'"),
        (["train", "--batch-size", "many"], "--batch-size: expected a positive integer"),
        (["train", "--lr", "-1"], "--lr: expected a positive number"),
        (["train", "--optimizer", "adamw"], "invalid choice: 'adamw'"),
        (["train", "--backend", "torch"], "invalid choice: 'torch'"),
        (["train", "--iters", "5", "--epochs", "1"], "not allowed with argument"),
        (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["fly"], "invalid choice: 'fly'"),
        (["gradcheck", "--batch", "0"], "--batch: expected a positive integer"),
        (["train", "--hidden", "10,0"], "--hidden: expected a positive integer or a comma"),
        (["train", "--hidden", "10,10"], "model two-layer has one hidden layer size, got 2"),
        (["train", "--model", "mlp", "--dtype", "float32"], "trains in float64, not float32"),
        (["train", "--batchnorm"], "model two-layer takes no option batchnorm (model mlp-extend does)"),
        (["train", "--model", "mlp", "--dropout", "0.5"], "model mlp takes no option dropout"),
        (["train", "--model", "mlp-extend", "--dropout", "1"], "expected a ratio in [0, 1)"),
        (["train", "--model", "resnet"], "invalid choice: 'resnet'"),
    ],
)
def test_bad_arguments_give_one_line(capsys, argv, needle):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(status, out, err, needle)


def test_missing_dataset_gives_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    status, out, err = run(capsys, "train", "--data", str(missing))
    assert_one_line_error(status, out, err, str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    status, out, err = run(capsys, "train", "--data", str(empty))
    assert_one_line_error(status, out, err, "train-images-idx3-ubyte")
    status, out, err = run(capsys, "gradcheck", "--data", str(missing))
    assert_one_line_error(status, out, err, str(missing))


def test_corrupt_dataset_gives_one_line(capsys, tmp_path):
    directory = TinyDataset().write(tmp_path / "bad", form="raw")
    images = directory / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    status, out, err = run(capsys, "train", "--data", str(directory))
    assert_one_line_error(status, out, err, "train-images-idx3-ubyte")


def test_unwritable_outputs_fail_before_training(capsys, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "train", no_training)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for option, path, needle in [
        ("--plot", tmp_path / "missing" / "c.png", "No such file or directory"),
        ("--plot", not_a_dir / "c.png", "Not a directory"),
        ("--plot", tmp_path, "is a directory"),
        ("--plot", tmp_path / "curve.xyz", "unknown image format 'xyz'"),
        ("--save-params", tmp_path / "missing" / "p.npz", "No such file or directory"),
    ]:
        status, out, err = run(capsys, "train", option, str(path))
        assert_one_line_error(status, out, err, option, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing left behind


def test_existing_output_file_is_kept_until_written(capsys, tmp_path):
    png = tmp_path / "old.png"
    png.write_bytes(b"old")
    status, _, err = run(capsys, "train", "--plot", str(png), *QUICK)
    assert status == 0, err
    assert png.read_bytes().startswith(PNG_SIGNATURE)


def test_ctrl_c_exits_130(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    status, _, err = run(capsys, "train")
    assert status == 130
    assert err == "bpfast: interrupted\n"


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_sigint_during_training_exits_130_without_traceback():
    # A process started in the background by a non-interactive shell ignores SIGINT, and its
    # children inherit that; a handler (not SIG_IGN) here makes the child start with SIG_DFL,
    # so that Python in the child installs its KeyboardInterrupt handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # No PYTHONUNBUFFERED: the epoch lines must come through the pipe on their own.
        proc = subprocess.Popen(
            [sys.executable, "-m", "bpfast", "train", "--iters", "10000000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=tempfile.gettempdir(), env=child_env(drop=("PYTHONUNBUFFERED",)))
    finally:
        signal.signal(signal.SIGINT, previous)
    with proc:  # closes the pipes and reaps the child whatever happens
        try:
            for line in proc.stdout:
                if line.startswith("epoch"):  # the first evaluation: the loop is running
                    break
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "bpfast: interrupted"
    assert "Traceback" not in err


def test_missing_matplotlib_is_a_clear_one_line_error(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from bpfast.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = run_process("train", "--plot", "curve.png", cwd=tmp_path, code=code)
    assert proc.returncode != 0
    assert proc.stdout == ""  # checked before loading data or training
    assert proc.stderr.splitlines() == [
        'bpfast: error: --plot needs matplotlib, which is not installed: '
        'pip install "bpfast[plot]"'
    ]
    assert not (tmp_path / "curve.png").exists()
    # Without --plot matplotlib is not needed at all.
    proc = run_process("train", "--iters", "3", "--quiet", cwd=tmp_path, code=code)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------- gradcheck


def _seed(embedded, hidden, want_kinks):
    """A seed whose initial TwoLayerNet has (or has no) pre-activation near the ReLU kink."""
    x = embedded.x_train[:3]
    for seed in range(1000):
        np.random.seed(seed)
        net = bpfast.TwoLayerNet(784, hidden, 10)
        if (relu_kinks(net, x) > 0) == want_kinks:
            return seed
    pytest.fail("no such seed in 1000")


def _diffs(out):
    return {k: float(v) for k, v in re.findall(r"^(W1|b1|W2|b2):(\S+)$", out, re.M)}


@pytest.mark.parametrize("backend", ["bpfast", "reference"])
def test_gradcheck_differences_are_tiny(capsys, embedded, backend):
    seed = _seed(embedded, 10, want_kinks=False)
    status, out, err = run(capsys, "gradcheck", "--hidden", "10", "--seed", str(seed),
                           "--backend", backend)
    assert status == 0, err
    diffs = _diffs(out)
    assert list(diffs) == ["W1", "b1", "W2", "b2"]
    assert all(0 <= d < 1e-6 for d in diffs.values()), diffs
    n_params = 784 * 10 + 10 + 10 * 10 + 10
    assert f"{2 * n_params:,} loss evaluations for {n_params:,} parameters" in out
    assert re.search(r"^backpropagation is [\d,]+x faster$", out, re.M)
    assert "note:" not in out


def test_gradcheck_explains_a_relu_kink(capsys, embedded):
    seed = _seed(embedded, 10, want_kinks=True)
    status, out, err = run(capsys, "gradcheck", "--hidden", "10", "--seed", str(seed))
    assert status == 0, err
    assert "within h=1e-4 of the ReLU kink" in out


def test_gradcheck_catches_a_wrong_gradient(embedded, capsys):
    # The check must be able to fail: a network whose backprop is off gives large differences.
    class Broken(reference.TwoLayerNet):
        def gradient(self, x, t):
            grads = super().gradient(x, t)
            grads["b2"] = grads["b2"] * 1.01
            return grads

    np.random.seed(1)
    net = Broken(784, 5, 10)
    t = np.eye(10)[embedded.t_train[:3]]
    r = training.gradient_check_timed(net, embedded.x_train[:3], t, repeat=1)
    assert r.diffs["b2"] > 1e-5 and r.diffs["W2"] < 1e-6
    assert r.numerical_time > 0 and r.backprop_time > 0 and r.n_params == 784 * 5 + 5 + 50 + 10


# ------------------------------------------------------------------------------- bench, help


def test_bench_is_forwarded(capsys):
    status, out, err = run(capsys, "bench", "--tiny", "--filter", "Relu/fwd/2x2/f64",
                           "--repeat", "1", "--warmup", "0", "--min-time", "0", "--no-torch",
                           "--quiet")
    assert status == 0, err
    assert "| Relu | fwd | 2x2 | f64 |" in out
    status, out, err = run(capsys, "bench", "--help")
    assert status == 0 and out.startswith("usage: bpfast bench")


def test_help_texts(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("train", "gradcheck", "bench"):
        assert command in out
    status, out, _ = run(capsys, "train", "--help")
    assert status == 0
    for option in ("--data", "--plot", "--compare", "--backend", "--optimizer", "--epochs"):
        assert option in out
    status, out, _ = run(capsys)
    assert status == 2 and "usage: bpfast" in out


# ------------------------------------------------------------------------------- real processes


def test_python_dash_m_bpfast():
    proc = run_process("train", "--iters", "20", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^bpfast: final train acc", proc.stdout, re.M)
    proc = run_process("train", "--data", "/nonexistent/bpfast-data")
    assert proc.returncode == 1
    assert proc.stderr.startswith("bpfast: error: --data /nonexistent/bpfast-data")
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


def test_console_script():
    script = Path(sys.executable).with_name("bpfast")
    if not script.exists():
        pytest.skip("the bpfast console script is not installed next to this Python")
    kw = dict(capture_output=True, text=True, cwd=tempfile.gettempdir(), env=child_env())
    proc = subprocess.run([str(script), "--version"], timeout=120, **kw)
    assert proc.returncode == 0 and proc.stdout.strip() == f"bpfast {bpfast.__version__}"
    proc = subprocess.run([str(script), "train", "--iters", "5", "--quiet"], timeout=300, **kw)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(script), "train", "--optimizer", "nope"], timeout=120, **kw)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
