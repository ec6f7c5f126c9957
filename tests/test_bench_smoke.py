"""Smoke tests of the benchmark harness (bpfast.bench): it runs, and it times the right thing.

Nothing here looks at a timing: performance targets live in the benchmark report, never in
tests.  The suite is run with tiny shapes (``--tiny``), one sample per side.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpfast
from bpfast import bench, reference

SMOKE = ["--tiny", "--repeat", "1", "--warmup", "0", "--min-time", "0", "--threads", "1",
         "--blas-threads", "1", "--quiet"]


def test_every_case_runs_once_and_the_report_is_written(tmp_path, capsys):
    out = tmp_path / "BENCH.md"
    notes = tmp_path / "notes.md"
    notes.write_text("hand-written analysis\n")
    assert bench.main([*SMOKE, "--no-torch", "--quiesce", "0.0001", "--output", str(out),
                       "--notes", str(notes)]) == 0
    printed = capsys.readouterr().out
    report = out.read_text()
    for case in bench.build_cases(tiny=True):
        row = f"| {case.layer} | {case.pass_} | {case.shape} | {case.dtype} | "
        assert row in printed and row in report, case.id
        if not case.skip:
            line = next(l for l in report.splitlines() if l.startswith(row))
            ref, bp, ratio = (c.strip() for c in line.split("|")[5:8])
            assert ref and bp and float(ratio) > 0, line
    for needle in ("Command: `python -m bpfast.bench --tiny", "Machine:", "NumPy", "Cython",
                   "openmp_enabled()", "simd_dispatch()", "NumPy BLAS", "OPENBLAS_CORETYPE",
                   "Copy bandwidth", "0.1 ms of sleep", "## Targets", "hand-written analysis"):
        assert needle in report, needle


def test_torch_column_when_torch_is_installed(capsys):
    pytest.importorskip("torch")
    assert bench.main([*SMOKE, "--torch-threads", "1", "--filter", "Relu/fwd+bwd/2x2/f64",
                       "--filter", "NetStep", "--filter", "SoftmaxWithLoss(one-hot)/bwd"]) == 0
    rows = [l for l in capsys.readouterr().out.splitlines()
            if l.startswith(("| Relu |", "| NetStep |", "| SoftmaxWithLoss(one-hot) |"))]
    assert len(rows) == 1 + 4 + 6
    for line in rows:
        torch_us, torch_ratio = (c.strip() for c in line.split("|")[8:10])
        assert torch_us and float(torch_ratio) > 0, line


def test_every_target_names_a_real_case():
    ids = {case.id for case in bench.build_cases()}
    for key in bench.TARGETS:
        if "*" not in key:
            assert key in ids, key
    # Every issue-3 target row, the network-level ones included, is attached to a case.
    with_target = [c for c in bench.build_cases() if c.target is not None]
    assert len(with_target) == len(bench.TARGETS)


def test_filter_matches_ids_as_shell_patterns():
    cases = bench.build_cases()
    picked = bench.select(cases, ["relu/fwd+bwd/1000x4096"])
    assert [c.id for c in picked] == ["Relu/fwd+bwd/1000x4096/f64", "Relu/fwd+bwd/1000x4096/f32"]
    assert {c.layer for c in bench.select(cases, ["softmax*one-hot"])} == {
        "SoftmaxWithLoss(one-hot)"}
    assert bench.select(cases, []) == cases


def test_measure_interleaves_sides_and_keeps_preparation_out_of_the_samples():
    log = []

    def side(name):
        return bench.Runner(run=lambda loops: log.append((name, "run", loops)),
                            prepare=lambda: log.append((name, "prepare")))

    stats = bench.measure({"a": side("a"), "b": side("b")}, repeat=4, warmup=2, min_time=0)
    assert [len(s.samples) for s in stats.values()] == [4, 4]
    runs = [entry[0] for entry in log if entry[1] == "run"]
    # one calibration call per side, then the samples alternate a,b / b,a
    assert runs == ["a", "b"] + ["a", "b", "b", "a"] * 3
    for i, entry in enumerate(log):
        if entry[1] == "run":
            assert log[i - 1] == (entry[0], "prepare")


class _Spy:
    """Layer classes of `reference` that count their calls and the inputs they saw."""

    def __init__(self):
        self.calls = {"forward": 0, "backward": 0}
        self.inputs = []
        spy = self

        class Relu(reference.Relu):
            def forward(self, x):
                spy.calls["forward"] += 1
                spy.inputs.append(id(x))
                return super().forward(x)

            def backward(self, dout):
                spy.calls["backward"] += 1
                return super().backward(dout)

        self.Relu = Relu


def _relu_case(pass_):
    return next(c for c in bench.build_cases(tiny=True)
                if c.layer == "Relu" and c.pass_ == pass_ and c.dtype == "f64")


def test_backward_samples_call_only_backward():
    spy = _Spy()
    case = _relu_case("bwd")
    data = case.make_data(np.random.default_rng(0))
    runner = bench._unary_runner(spy, "Relu", "bwd")(data)
    spy.calls.update(forward=0, backward=0)  # the set-up forwards happened above
    runner.prepare()
    runner.run(5)
    assert spy.calls == {"forward": 0, "backward": 5}


def test_relu_cycles_through_distinct_inputs_and_restores_dout():
    spy = _Spy()
    case = _relu_case("fwd+bwd")
    data = case.make_data(np.random.default_rng(0))
    assert len(data["x"]) == bench.N_INPUTS
    assert len({x.tobytes() for x in data["x"]}) == bench.N_INPUTS
    runner = bench._unary_runner(spy, "Relu", "fwd+bwd")(data)
    runner.prepare()
    runner.run(bench.N_INPUTS)
    assert len(set(spy.inputs)) == bench.N_INPUTS
    # Relu.backward zeroed the side's private dout copies, never the shared pristine ones...
    assert all((d != 0).all() for d in data["dout"])
    # ...and prepare() restores the copies before the next sample.
    runner.prepare()
    runner.run(1)


def test_drop_in_net_steps_agree_between_reference_and_bpfast():
    case = next(c for c in bench.build_cases(tiny=True) if c.layer == "NetStep"
                and c.dtype == "f64")
    data = case.make_data(np.random.default_rng(0))
    grads = []
    for impl in (reference, bpfast):
        params = {k: v.copy() for k, v in data["params"].items()}
        grads.append(bench.BookTwoLayerNet(impl, params).gradient(data["x"][0], data["t"][0]))
    for key in bench.PARAM_KEYS:
        np.testing.assert_allclose(grads[0][key], grads[1][key], rtol=1e-10, atol=1e-12)


class _BookApiNet:
    """A stand-in with the book's TwoLayerNet API (issue 4's classes may not be merged)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        self.params = {
            "W1": np.zeros((input_size, hidden_size)), "b1": np.zeros(hidden_size),
            "W2": np.zeros((hidden_size, output_size)), "b2": np.zeros(output_size),
        }
        self._net = bench.BookTwoLayerNet(reference, self.params)
        self.steps = 0

    def gradient(self, x, t):
        return self._net.gradient(x, t)

    def train_step(self, x, t, lr):
        self.steps += 1
        self._net.step(x, t, lr)


@pytest.mark.parametrize("fused", [False, True], ids=["gradient+SGD", "train_step"])
def test_network_level_runner_drives_a_book_api_class(fused):
    case = next(c for c in bench.build_cases(tiny=True) if c.layer == "NetStep"
                and c.dtype == "f64")
    data = case.make_data(np.random.default_rng(0))
    runner = bench._net_level_runner(_BookApiNet, fused)(data)
    runner.prepare()
    runner.run(3)


def test_network_level_rows_are_skipped_with_a_note_when_classes_are_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "bpfast.reference.two_layer_net", None)
    cases = bench._net_level_cases(bench.NET_SHAPES)
    assert cases and all("not importable" in c.skip for c in cases)
    # With bpfast.TwoLayerNet.train_step the targets sit on the train_step rows only.
    assert {c.target for c in cases} - {None} == {2.0, 1.8}


def test_report_row_ratios_and_targets():
    case = bench.Case("Relu", "fwd+bwd", "1000x4096", "f64", target=8.0, bytes_moved=10**9)
    res = bench.Result(case, {"reference": bench.Stats([900e3, 1000e3, 1100e3], 1),
                              "bpfast": bench.Stats([100e3], 1),
                              "torch": bench.Stats([50e3], 1)})
    cells = [c.strip() for c in bench.result_row(res, copy_bw=20e9).split("|")[1:-1]]
    assert cells[4:] == ["1,000 (10%)", "100", "10.00", "50.0", "0.50", "≥ 8", "yes",
                         "10000.0 (50000%)"]
    res.stats["bpfast"] = bench.Stats([200e3], 1)
    assert "| **no** |" in bench.result_row(res, copy_bw=None)


def test_crossover_is_the_start_of_the_last_run_where_threads_pay():
    sizes = [1, 2, 4, 8, 16]
    assert bench.crossover(sizes, [1, 1, 1, 1, 1], [2, 0.5, 2, 0.5, 0.5]) == 8
    assert bench.crossover(sizes, [1] * 5, [0.5] * 5) == 1
    assert bench.crossover(sizes, [1] * 5, [0.5, 0.5, 0.5, 0.5, 2]) is None


@pytest.mark.skipif(not bpfast.openmp_enabled(), reason="built without OpenMP")
def test_threshold_sweep_runs(capsys):
    assert bench.main(["--threshold-sweep", "--repeat", "1", "--warmup", "0", "--min-time",
                       "0", "--sweep-max", "11", "--quiet"]) == 0
    table = capsys.readouterr().out
    for name, constant, _ in bench._sweep_kernels():
        assert f"| {name} | f64 |" in table and f"| {name} | f32 |" in table
        assert f"{constant} = " in table  # the constant still exists in bpfast.layers


def test_run_script_is_a_thin_wrapper():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    if not script.exists():
        pytest.skip("benchmarks/ is not shipped with the installed package")
    done = subprocess.run([sys.executable, str(script), "--list", "--filter", "Affine/fwd/"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Affine/fwd/100x784x50/f64", "Affine/fwd/100x784x50/f32",
                                   "Affine/fwd/1000x1024x1024/f64",
                                   "Affine/fwd/1000x1024x1024/f32"]


# --- chapters 6-8 networks (issue 5) --------------------------------------------------------
NETWORK_IDS = ["SimpleConvNet/gradient/b100 1x28x28 30x5x5-100-10/f64",
               "MultiLayerNetExtend/step/b100 784-5x100-10 BN+Dropout/f64"]


def test_network_rows_exist_with_their_targets_and_filter_names():
    cases = bench.build_cases()
    for case_id, target in zip(NETWORK_IDS, (3.0, 2.0)):
        (case,) = [c for c in cases if c.id == case_id]
        assert case.target == target == bench.TARGETS[case_id]
        assert set(case.sides) == {"reference", "bpfast"}
    assert [c.id for c in bench.select(cases, ["SimpleConvNet"])] == NETWORK_IDS[:1]
    assert [c.id for c in bench.select(cases, ["MultiLayerNetExtend"])] == NETWORK_IDS[1:]


def test_convnet_sides_compute_the_same_gradient():
    (case,) = [c for c in bench.build_cases(tiny=True) if c.layer == "SimpleConvNet"]
    data = case.make_data(np.random.default_rng(0))
    made = {}
    for side, cls in (("reference", reference.SimpleConvNet), ("bpfast", bpfast.SimpleConvNet)):
        class Recording(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made[side] = self

        runner = bench._convnet_runner(Recording, bench.CONVNET_TINY)(data)
        runner.prepare()
        runner.run(1)  # the first batch on both sides
    for layer in ("Conv1", "Affine1", "Affine2"):
        for attr in ("dW", "db"):
            np.testing.assert_allclose(getattr(made["bpfast"].layers[layer], attr),
                                       getattr(made["reference"].layers[layer], attr),
                                       rtol=1e-10, atol=1e-14, err_msg=(layer, attr))


def test_network_step_updates_the_same_parameters_on_both_sides(monkeypatch):
    (case,) = [c for c in bench.build_cases(tiny=True) if c.layer == "MultiLayerNetExtend"]
    data = case.make_data(np.random.default_rng(0))
    made = {}
    for side, cls in (("reference", reference.MultiLayerNetExtend),
                      ("bpfast", bpfast.MultiLayerNetExtend)):
        class Recording(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made[side] = self

        factory = bench._mlp_extend_runner(
            Recording, reference.SGD if side == "reference" else bpfast.optimizers.SGD,
            bench.MLP_EXTEND_TINY)
        runner = factory(data)
        runner.prepare()
        np.random.seed(11)  # the same dropout masks on both sides
        runner.run(3)
    assert list(made["reference"].params) == list(made["bpfast"].params)
    for key, value in made["reference"].params.items():
        np.testing.assert_allclose(made["bpfast"].params[key], value, rtol=1e-10, atol=1e-13,
                                   err_msg=key)
